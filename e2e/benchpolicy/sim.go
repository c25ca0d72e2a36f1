package main

import (
	"math"
	"time"

	"function/shared/policy"
)

// Production timings the replay models. The loop runs in virtual seconds,
// so a day of load takes a fraction of a second of CPU.
const (
	// cycle is the PingSource tick: one decision per version per minute.
	cycle = 60 * time.Second
	// decisionLatency is tick to decision: discovery, the bucket event and
	// the batched queries.
	decisionLatency = 5 * time.Second
	// referenceLoop is the reference autoscaler's scaling loop, and
	// referencePhase where inside the minute its rounds fall.
	referenceLoop  = 15 * time.Second
	referencePhase = 7 * time.Second
	// scrapeInterval is how often Prometheus (or vmagent) scrapes workers
	// and the invocation plane; scrapeOffset where in the minute, so the
	// newest scrape is never taken at the instant a decision reads it.
	scrapeInterval = 30 * time.Second
	scrapeOffset   = 10 * time.Second
	// step, window and lookback are UTILIZATION_STEP, UTILIZATION_WINDOW
	// and UTILIZATION_LOOKBACK (the reference's 60 s, 70 s and 600 s).
	step     = 60 * time.Second
	window   = 70 * time.Second
	lookback = 600 * time.Second
	// provisioningDelay is from an NVCF write to a new instance serving.
	provisioningDelay = 2 * time.Minute
	// warmup runs the trace's first load level before measuring, so every
	// contender starts from a settled state with a full lookback of data.
	warmup = 15 * time.Minute
	// overloadUtilization: a minute busier than this (or with queued work)
	// is overloaded. Latency climbs steeply past it for GPU inference.
	overloadUtilization = 0.9
)

// epoch is the virtual time of second 0 (minute-aligned, as the TSDB's
// steps are).
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// scrape is what one scrape of the workers and the invocation plane
// recorded, summed over the version's series.
type scrape struct {
	at        int     // virtual second
	busy      float64 // worker busy seconds, cumulative
	requests  float64 // requests routed to the version, cumulative; queued ones count on arrival
	instances int     // worker series, or the control plane's count: instances that are serving
	// completed is the LLM gateway's request counter, cumulative: it
	// counts a request when it answers it.
	completed float64
	// inSystem is the latency sum the control plane and the gateway
	// export, cumulative: request-seconds in service or waiting, whose
	// rate is the requests in flight (Little's law).
	inSystem float64
	// durations is the gateway's duration sum as its summary counts it,
	// cumulative: each answered request's latency (waiting included),
	// added when it is answered.
	durations float64
}

// cohort is the requests that arrived in one second, in arrival order.
type cohort struct {
	at int
	n  float64
}

// The metric sources the world can be read through (see the README's
// metric-sources table): what differs for deciding is how invocations
// are counted, how utilization is measured, and whether a version at zero
// shows a count of 0 or no series at all.
const (
	sourceWorker       = "worker"
	sourceControlPlane = "control_plane"
	sourceGateway      = "gateway"
)

// pending is a batch of instances asked for and not yet serving.
type pending struct{ readyAt, count int }

// world is one function version's data plane: instances, the request
// queue in front of them and the metrics they expose. Requests are a
// fluid: each second's arrivals join the queue, capacity serves from it,
// and what is left waits (nothing is dropped), so a backlog builds while
// capacity is short and drains once it is not.
type world struct {
	tr      Trace
	ready   int
	pending []pending
	queue   float64 // requests waiting

	arrived, served, busy float64 // cumulative
	queuedSeconds         float64 // request-seconds spent waiting

	scrapes []scrape

	lastRequested      int
	lastRequestedKnown bool
	writes             int

	// upFromZeroAt is the second of the last write above zero while
	// nothing was allocated (-1: none since the last cold start was
	// learned); releasedAt the second of the last write to zero (-1:
	// none). Learned keep-alive reads both, as the scale function keeps
	// them in the version's state.
	upFromZeroAt, releasedAt int

	// source is the metric source the world is read through; "" is
	// worker.
	source string
	// second counts serve's calls (the virtual second being served);
	// waiting holds the queued requests by arrival second, so each
	// answered request's latency is known (served in arrival order).
	second    int
	waiting   []cohort
	durations float64
}

func newWorld(tr Trace, instances int) *world {
	return &world{tr: tr, ready: instances, lastRequested: instances, lastRequestedKnown: true, upFromZeroAt: -1, releasedAt: -1}
}

// reportsZero: the control plane reports a version's instances, 0
// included, where a worker version at zero has no series at all.
func (w *world) reportsZero() bool {
	return w.source == sourceControlPlane || w.source == sourceGateway
}

// invocations is the counter invocations are read from: routed requests
// (the invocation service's counter, on arrival) except behind the LLM
// gateway, whose counter counts a request when it is answered, so a
// request that waits for a cold start shows only when it is served.
func (w *world) invocations(s scrape) float64 {
	if w.source == sourceGateway {
		return s.completed
	}
	return s.requests
}

// allocated is what the version pays for: serving plus provisioning.
func (w *world) allocated() int {
	n := w.ready
	for _, p := range w.pending {
		n += p.count
	}
	return n
}

// promote starts serving the batches whose provisioning is over.
func (w *world) promote(now int) {
	for len(w.pending) > 0 && w.pending[0].readyAt <= now {
		w.ready += w.pending[0].count
		w.pending = w.pending[1:]
	}
}

// resize applies an NVCF write: more instances provision; fewer cancel the
// newest provisioning ones first, then stop serving ones.
func (w *world) resize(now, n int) {
	if w.lastRequestedKnown && n == w.lastRequested {
		return
	}
	w.writes++
	w.lastRequested, w.lastRequestedKnown = n, true
	switch have := w.allocated(); {
	case have == 0 && n > 0:
		w.upFromZeroAt = now
	case have > 0 && n == 0:
		w.releasedAt = now
	}
	if have := w.allocated(); n > have {
		w.pending = append(w.pending, pending{readyAt: now + int(provisioningDelay/time.Second), count: n - have})
		return
	}
	drop := w.allocated() - n
	for drop > 0 && len(w.pending) > 0 {
		last := &w.pending[len(w.pending)-1]
		k := min(drop, last.count)
		last.count -= k
		drop -= k
		if last.count == 0 {
			w.pending = w.pending[:len(w.pending)-1]
		}
	}
	w.ready -= drop
}

// serve runs one second of load: arrivals join the queue, the serving
// threads take what they can. It returns the requests that arrived and
// were served, for the caller's per-minute figures.
func (w *world) serve(demand float64) (arrived, served float64) {
	rate := demand * float64(w.tr.Threads) / w.tr.CostSeconds // requests per second
	w.queue += rate
	w.arrived += rate
	capacity := float64(w.ready*w.tr.Threads) / w.tr.CostSeconds
	served = math.Min(w.queue, capacity)
	w.queue -= served
	if rate > 0 {
		w.waiting = append(w.waiting, cohort{at: w.second, n: rate})
	}
	for left := served; left > 1e-12 && len(w.waiting) > 0; {
		c := &w.waiting[0]
		take := math.Min(left, c.n)
		w.durations += take * (float64(w.second-c.at) + w.tr.CostSeconds)
		c.n -= take
		left -= take
		if c.n <= 1e-12 {
			w.waiting = w.waiting[1:]
		}
	}
	w.second++
	w.served += served
	w.busy += served * w.tr.CostSeconds
	w.queuedSeconds += w.queue
	return rate, served
}

// record takes a scrape at now when one is due.
func (w *world) record(now int) {
	if (now-int(scrapeOffset/time.Second))%int(scrapeInterval/time.Second) != 0 {
		return
	}
	w.scrapes = append(w.scrapes, scrape{at: now, busy: w.busy, requests: w.arrived, instances: w.ready,
		completed: w.served, inSystem: w.busy + w.queuedSeconds, durations: w.durations})
}

// scrapeIndex is the index of the last scrape at or before t, or -1.
func (w *world) scrapeIndex(t int) int {
	iv, off := int(scrapeInterval/time.Second), int(scrapeOffset/time.Second)
	if t < off {
		return -1
	}
	return min((t-off)/iv, len(w.scrapes)-1)
}

// slope is the per-second rate of a counter over the scrapes inside
// (t-window, t], as Prometheus's rate() extrapolates it: the slope between
// the first and the last of them. Fewer than two scrapes: no point.
func (w *world) slope(t int, counter func(scrape) float64) (float64, bool) {
	last := w.scrapeIndex(t)
	first := w.scrapeIndex(t-int(window/time.Second)) + 1
	if last < 0 || first >= last {
		return 0, false
	}
	a, b := w.scrapes[first], w.scrapes[last]
	return (counter(b) - counter(a)) / float64(b.at-a.at), true
}

// utilization is the worker-reported busy percent at t: busy seconds over
// the window divided by the thread-seconds of the instances reporting at
// t, capped at 100 as a worker can never report more than fully busy.
func (w *world) utilization(t int) (float64, bool) {
	i := w.scrapeIndex(t)
	if i < 0 || w.scrapes[i].instances == 0 {
		return 0, false
	}
	busy, ok := w.slope(t, func(s scrape) float64 { return s.busy })
	if !ok {
		return 0, false
	}
	return math.Min(100, 100*busy/float64(w.scrapes[i].instances*w.tr.Threads)), true
}

// sourceUtilization is the utilization the version's source reports at
// t: the worker's busy percent, or for the control plane and the gateway
// Little's law over the latency sum (requests in flight, waiting ones
// included, per instance slot), capped at 100 as the scale function caps
// it. A version with no instance serving has no utilization.
func (w *world) sourceUtilization(t int) (float64, bool) {
	if !w.reportsZero() {
		return w.utilization(t)
	}
	i := w.scrapeIndex(t)
	if i < 0 || w.scrapes[i].instances == 0 {
		return 0, false
	}
	inFlight, ok := w.slope(t, func(s scrape) float64 { return s.inSystem })
	if !ok {
		return 0, false
	}
	return math.Min(100, 100*inFlight/float64(w.scrapes[i].instances*w.tr.Threads)), true
}

// requestRate is the invocation plane's request rate at t (queued
// requests included: they are counted when routed).
func (w *world) requestRate(t int) (float64, bool) {
	return w.slope(t, func(s scrape) float64 { return s.requests })
}

// observed is what one gathering of the metrics returns, as the scale
// function's batched queries return it.
type observed struct {
	samples   []policy.Sample
	current   int
	known     bool // worker series at the settled minute
	newest    int  // the newest step point (now rounded down to the step)
	freshUtil float64
	freshOK   bool
}

// gather reads the TSDB as the scale function does at now: utilization
// points at the 60 s step ending at now rounded down to the step, the
// instance count at the settled minute (one step earlier), and the
// partial-window sample ending at now.
func (w *world) gather(now int) observed {
	st := int(step / time.Second)
	end := now / st * st
	o := observed{newest: end}
	for p := end - int(lookback/time.Second) + st; p <= end; p += st {
		if u, ok := w.sourceUtilization(p); ok {
			o.samples = append(o.samples, policy.Sample{At: at(p), Value: u})
		}
	}
	if i := w.scrapeIndex(end - st); i >= 0 && (w.scrapes[i].instances > 0 || w.reportsZero()) {
		o.current, o.known = w.scrapes[i].instances, true
	}
	o.freshUtil, o.freshOK = w.sourceUtilization(now)
	return o
}

// invokedAt is the newest step point at or before t whose request
// increase is positive, or -1.
func (w *world) invokedAt(t int) int {
	st := int(step / time.Second)
	for p := t / st * st; p > t-int(lookback/time.Second); p -= st {
		if r, ok := w.slope(p, w.invocations); ok && r > 0 {
			return p
		}
	}
	return -1
}

// invokedInSteps is invokedAt with step windows that tile time: the
// newest step point at or before t whose requests counter, at the last
// scrape at or before it, grew since the last scrape at or before the
// step point before. A 70 s rate window over 30 s scrapes holds two
// scrapes 30 s apart and so misses a lone request that arrives between
// two windows' scrapes; a window of step + scrape interval (90 s) does
// not. Sparse invocation traces need every request seen.
//
// Behind the gateway a step's answered requests are moved back by their
// mean latency (duration sum over count, whole steps), as the scale
// function reads them (gatewayArrivals): to the step they arrived in.
func (w *world) invokedInSteps(t int) int {
	st := int(step / time.Second)
	newest := -1
	for p := t / st * st; p > t-int(lookback/time.Second); p -= st {
		i, j := w.scrapeIndex(p), w.scrapeIndex(p-st)
		if i < 0 {
			continue
		}
		var before scrape
		if j >= 0 {
			before = w.scrapes[j]
		}
		n := w.invocations(w.scrapes[i]) - w.invocations(before)
		if n <= 0 {
			continue
		}
		at := p
		if w.source == sourceGateway {
			latency := (w.scrapes[i].durations - before.durations) / n
			at -= int(latency) / st * st
		}
		if w.source != sourceGateway {
			return p
		}
		newest = max(newest, at)
	}
	return newest
}

// at is the wall time of virtual second s.
func at(s int) time.Time { return epoch.Add(time.Duration(s) * time.Second) }
