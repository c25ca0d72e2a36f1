package main

import (
	"math"
	"time"

	"function/shared/policy"
)

// Contender is one way of scaling a version: a policy and how often and
// with which inputs it is asked.
type Contender struct {
	Name string
	// Policy is handed to the real policy.Decide.
	Policy policy.Policy
	// Loop is the decision period; Phase where inside the minute the
	// decisions fall.
	Loop, Phase time.Duration
	// Reference reads as the reference autoscaler does: a version without
	// worker series has 0 instances (known), and there are no activation
	// events (a version at zero waits for a loop round).
	Reference bool
	// Demand feeds the inputs of issue 13 as the scale function computes
	// them: a Fresh sample ending at the decision, and Demand from the
	// request rate and the cost learned from unsaturated windows.
	Demand bool
	// TiledEvidence reads invocations with step windows that tile time
	// (see invokedInSteps) instead of the rate window.
	TiledEvidence bool
	// ZeroKnown reads a version with no worker series whose last write was
	// 0 as Current 0, known, so that Decide can pre-warm it: without it a
	// version at zero holds with its count unknown until an activation.
	ZeroKnown bool
	// Source is the metric source the world is read through (sim.go's
	// source names); "" is worker.
	Source string
	// Oracle ignores Policy: it knows each minute's load in advance and
	// runs exactly the instances that keep it at overloadUtilization,
	// ready at once. Nothing can use fewer instance-minutes without
	// overloading.
	Oracle bool
}

// Minute is one minute of a run, in the unit the load is given in: busy
// instances (how many instances one second of the load would keep busy).
type Minute struct {
	Minute      int     `json:"minute"`
	Demand      float64 `json:"demand"`      // offered load, mean over the minute
	Capacity    float64 `json:"capacity"`    // serving instances, mean
	Instances   float64 `json:"instances"`   // serving + provisioning, mean: what is paid for
	Queued      float64 `json:"queued"`      // requests waiting at the minute's end
	Utilization float64 `json:"utilization"` // share of the serving threads' time spent busy
	Overloaded  bool    `json:"overloaded"`
}

// Result is one contender on one trace.
type Result struct {
	Trace     string `json:"trace"`
	Contender string `json:"contender"`
	// OverloadedMinutes counts minutes over overloadUtilization busy or
	// with queued work.
	OverloadedMinutes    int     `json:"overloadedMinutes"`
	InstanceMinutes      float64 `json:"instanceMinutes"`
	QueuedRequestMinutes float64 `json:"queuedRequestMinutes"`
	// ScaleEvents counts NVCF writes that changed the requested count.
	ScaleEvents int `json:"scaleEvents"`
	// PeakInstances is the most instances allocated (serving and
	// provisioning) in any second: against the oracle's, how far a climb
	// overshot.
	PeakInstances int `json:"peakInstances"`
	// ReactionSeconds is from the trace's 10x step to serving capacity at
	// the contender's own target (TargetUtilization, or UpThreshold in
	// nvcf mode, where it stops scaling up); Reaction90Seconds to capacity
	// that is no longer overloaded. -1: never; both 0 without a step.
	ReactionSeconds   float64 `json:"reactionSeconds"`
	Reaction90Seconds float64 `json:"reaction90Seconds"`
	// Conservation of requests over the measured span:
	// QueuedAtStart + Arrived = Served + QueuedAtEnd.
	Arrived       float64  `json:"arrived"`
	Served        float64  `json:"served"`
	QueuedAtStart float64  `json:"queuedAtStart"`
	QueuedAtEnd   float64  `json:"queuedAtEnd"`
	Minutes       []Minute `json:"minutes,omitempty"`
}

// reactionTarget is the utilization (0..1) the contender aims for once
// it has caught up with a step.
func (c Contender) reactionTarget() float64 {
	switch {
	case c.Oracle:
		return overloadUtilization
	case c.Policy.Mode == policy.ModeTarget:
		return c.Policy.TargetUtilization / 100
	default:
		return c.Policy.UpThreshold / 100
	}
}

// due reports whether the contender decides at virtual second s.
func (c Contender) due(s int) bool {
	loop, phase := int(c.Loop/time.Second), int(c.Phase/time.Second)
	return loop > 0 && s%loop == phase%loop
}

// Run replays the trace through the contender in one-second steps after a
// warm-up at the trace's starting load.
func Run(tr Trace, c Contender) Result {
	ws := int(warmup / time.Second)
	if tr.New {
		ws = 0
	}
	total := ws + tr.Minutes*60
	w := newWorld(tr, max(1, int(math.Ceil(tr.demandAt(0)/overloadUtilization))))
	ctl := &controller{c: c, lastInvoked: -1}
	res := Result{Trace: tr.Name, Contender: c.Name, ReactionSeconds: -1, Reaction90Seconds: -1}
	if tr.StepAt < 0 {
		res.ReactionSeconds, res.Reaction90Seconds = 0, 0
	}
	stepAt := tr.StepAt * 60
	var cur Minute
	var busy, threadSeconds, instanceSeconds float64
	writesAtStart := 0
	for s := range total {
		t := s - ws
		demand := tr.demandAt(t)
		if c.Oracle {
			if s%60 == 0 {
				if n := oracleInstances(tr, t); n != w.ready {
					w.ready = n
					w.writes++
				}
			}
		} else {
			w.promote(s)
		}
		w.record(s)
		if !c.Oracle {
			if c.due(s) {
				ctl.decide(w, s)
			}
			if !c.Reference && d0(w, demand) {
				// function.activate: the invocation plane's event takes a
				// version at zero to max(min, 1) at its first request.
				w.resize(s, max(1, c.Policy.MinInstances))
			}
		}
		if t == 0 {
			res.QueuedAtStart, writesAtStart = w.queue, w.writes
		}
		arrived, served := w.serve(demand)
		if t < 0 {
			continue
		}
		res.Arrived += arrived
		res.Served += served
		res.QueuedRequestMinutes += w.queue / 60
		res.InstanceMinutes += float64(w.allocated()) / 60
		res.PeakInstances = max(res.PeakInstances, w.allocated())
		if tr.StepAt >= 0 && t >= stepAt {
			if res.ReactionSeconds < 0 && float64(w.ready)*c.reactionTarget() >= demand {
				res.ReactionSeconds = float64(t - stepAt)
			}
			if res.Reaction90Seconds < 0 && float64(w.ready)*overloadUtilization >= demand {
				res.Reaction90Seconds = float64(t - stepAt)
			}
		}
		cur.Demand += demand / 60
		cur.Capacity += float64(w.ready) / 60
		instanceSeconds += float64(w.allocated())
		busy += served * tr.CostSeconds
		threadSeconds += float64(w.ready * tr.Threads)
		if w.queue > 0 {
			cur.Overloaded = true
		}
		if (t+1)%60 == 0 {
			cur.Minute = t / 60
			cur.Instances = instanceSeconds / 60
			cur.Queued = w.queue
			if threadSeconds > 0 {
				cur.Utilization = busy / threadSeconds
			}
			if cur.Utilization > overloadUtilization {
				cur.Overloaded = true
			}
			if cur.Overloaded {
				res.OverloadedMinutes++
			}
			res.Minutes = append(res.Minutes, cur)
			cur, busy, threadSeconds, instanceSeconds = Minute{}, 0, 0, 0
		}
	}
	res.QueuedAtEnd = w.queue
	res.ScaleEvents = w.writes - writesAtStart
	return res
}

// d0 reports a request arriving at a version with nothing allocated.
func d0(w *world, demand float64) bool { return demand > 0 && w.allocated() == 0 }

// oracleInstances is the fewest instances that keep minute t/60 (known in
// advance) at or under overloadUtilization.
func oracleInstances(tr Trace, t int) int {
	start := t / 60 * 60
	if t < 0 {
		start = t
	}
	peak := 0.0
	for s := start; s < start+60; s++ {
		peak = math.Max(peak, tr.demandAt(s))
	}
	return int(math.Ceil(peak/overloadUtilization - 1e-9))
}

// controller is the autoscaler side for one version: it gathers what the
// TSDB shows, asks policy.Decide and writes the answer, keeping the state
// the scale function keeps in Cassandra (recommendation history, newest
// invocation seen).
type controller struct {
	c           Contender
	recent      []policy.Recommendation
	lastInvoked int // newest step point with requests, -1 for none
	cost        policy.Cost
	backlog     policy.Backlog
	// idle and coldStart are learned keep-alive's state, learned from the
	// same evidence the decisions read (see learnKeepAlive).
	idle      policy.IdleHistogram
	coldStart policy.ColdStart
	// applied is the reason of the last decision that changed the count.
	applied policy.Reason
}

func (k *controller) decide(w *world, s int) {
	o := w.gather(s)
	k.learnKeepAlive(w, s)
	p := k.c.Policy
	now := at(s)
	in := policy.Input{
		Now:                now,
		LastRequested:      w.lastRequested,
		LastRequestedKnown: w.lastRequestedKnown,
		Utilization:        o.samples,
		MetricsOK:          true,
		Current:            o.current,
		CurrentKnown:       o.known,
		// The replay watched the version from its first second, so the
		// absence of invocations is known since then.
		InvocationsSince: epoch,
	}
	if k.c.Demand {
		k.demandInputs(w, s, o, &in)
	}
	if k.c.Reference {
		// The reference counts series: none is 0 instances, once the TSDB
		// has data at all.
		in.CurrentKnown = w.scrapeIndex(o.newest-int(step/time.Second)) >= 0
	}
	if k.c.ZeroKnown && !in.CurrentKnown && w.lastRequestedKnown && w.lastRequested == 0 && w.scrapeIndex(o.newest-int(step/time.Second)) >= 0 {
		in.Current, in.CurrentKnown = 0, true
	}
	if k.lastInvoked >= 0 {
		in.LastInvokedAt = at(k.lastInvoked)
	}
	in.Idle, in.ColdStart = k.idle, k.coldStart
	if w.releasedAt >= 0 {
		in.ReleasedAt = at(w.releasedAt)
	}
	if len(k.recent) == 0 && in.CurrentKnown {
		// As the scale function seeds a version's history on first sight.
		k.recent = append(k.recent, policy.Recommendation{At: now, Count: max(in.Current, w.lastRequested)})
	}
	k.recent = inWindow(k.recent, now, p.RecommendationWindow())
	in.Recent = k.recent
	d := policy.Decide(p, in)
	if !d.Valid {
		return
	}
	k.recent = append(k.recent, policy.Recommendation{At: now, Count: d.Recommendation})
	if d.Desired != w.lastRequested {
		w.resize(s, d.Desired)
		k.applied = d.Reason
	}
}

// learnKeepAlive updates the newest invocation and learns from the
// evidence as the scale function does: an invocation at a step point more
// than one step after the previous one ends an idle gap (invocations in
// consecutive steps are one burst), and the first scrape with a worker
// after a write above zero from nothing ends a cold start.
func (k *controller) learnKeepAlive(w *world, s int) {
	invoked := w.invokedAt
	if k.c.TiledEvidence {
		invoked = w.invokedInSteps
	}
	if ia := invoked(s); ia > k.lastInvoked {
		if k.lastInvoked >= 0 && ia-k.lastInvoked > int(step/time.Second) {
			k.idle = k.idle.Observe(at(ia), time.Duration(ia-k.lastInvoked)*time.Second)
		}
		k.lastInvoked = ia
	}
	if w.upFromZeroAt < 0 {
		return
	}
	for i := max(w.scrapeIndex(w.upFromZeroAt), 0); i <= w.scrapeIndex(s); i++ {
		if sc := w.scrapes[i]; sc.at >= w.upFromZeroAt && sc.instances > 0 {
			k.coldStart = k.coldStart.Learn(at(sc.at), time.Duration(sc.at-w.upFromZeroAt)*time.Second)
			w.upFromZeroAt = -1
			return
		}
	}
}

// demandInputs fills Fresh and Demand as the scale function's gathering
// does, but for one thing: the cost is learned here from the settled
// window (the step before the newest), where the scale function learns it
// a step later, from the window before that (functions/scale costWindow),
// because a real TSDB's fresh window may still lack its newest scrapes.
// This bench's scrapes arrive at once, so its fresh window cannot hide a
// step and the settled window is safe to learn from; the learned cost
// leads the scale function's by one step. The fresh utilization and
// request rate are windows ending at the decision, and demand is the
// fresh request rate (the newest step's when the fresh window has none)
// times the learned cost.
func (k *controller) demandInputs(w *world, s int, o observed, in *policy.Input) {
	secs := window.Seconds()
	settled := o.newest - int(step/time.Second)
	busy, busyOK := w.slope(settled, func(sc scrape) float64 { return sc.busy })
	reqs, reqsOK := w.requestRate(settled)
	u, uOK := w.utilization(settled)
	if busyOK && reqsOK {
		// Consecutive 70 s windows every 60 s overlap: like the scale
		// function, fold only the share not folded yet.
		share := unfolded(settled, k.backlog.UpdatedAt)
		var learn bool
		k.backlog, learn = k.backlog.Observe(at(settled), share*reqs*secs, share*busy*secs, policy.EarlyCost(k.cost), uOK && steady(w, s, o, settled))
		if learn {
			share = unfolded(settled, k.cost.UpdatedAt)
			k.cost = k.cost.Learn(at(settled), share*busy*secs, share*reqs*secs, u)
		}
	}
	in.Backlog = k.backlog
	if o.freshOK {
		in.Fresh = policy.Sample{At: at(s), Value: o.freshUtil}
	}
	rate, ok := w.requestRate(s)
	if !ok {
		rate, ok = w.requestRate(o.newest)
	}
	if ok {
		in.Demand = policy.DemandFromRequests(policy.EarlyCost(k.cost), rate, float64(w.tr.Threads))
	}
}

// unfolded is the share of the window ending at step point t that a fold
// ending at last has not counted yet.
func unfolded(t int, last time.Time) float64 {
	if last.IsZero() {
		return 1
	}
	return min(1, at(t).Sub(last).Seconds()/window.Seconds())
}

// steady is the scale function's rule for a window that may teach the
// cost: neither the newest point nor the fresh window saturated, requests
// at the steps around the settled one within 1.5x of each other, and the
// same worker count from the window's start to the newest step.
func steady(w *world, s int, o observed, settled int) bool {
	st, win := int(step/time.Second), int(window/time.Second)
	if u, ok := w.utilization(o.newest); !ok || u >= policy.SaturatedUtilization {
		return false
	}
	if o.freshOK && o.freshUtil >= policy.SaturatedUtilization {
		return false
	}
	lo, hi := math.Inf(1), 0.0
	for _, p := range []int{settled - st, settled, settled + st} {
		r, ok := w.requestRate(p)
		if !ok || r <= 0 {
			return false
		}
		lo, hi = math.Min(lo, r), math.Max(hi, r)
	}
	if hi > 1.5*lo {
		return false
	}
	first := w.scrapeIndex(settled - win)
	for p := settled - win; p <= o.newest; p += st {
		if i := w.scrapeIndex(p); i < 0 || first < 0 || w.scrapes[i].instances != w.scrapes[first].instances {
			return false
		}
	}
	return true
}

// inWindow keeps the recommendations made inside the window.
func inWindow(rs []policy.Recommendation, now time.Time, win time.Duration) []policy.Recommendation {
	from := now.Add(-win)
	i := 0
	for i < len(rs) && !rs[i].At.After(from) {
		i++
	}
	return rs[i:]
}
