package scale

// Gathering for the request-slot sources (the LLM gateway and the control
// plane): their learned service time, and the demand it sizes a saturated
// version from. Their only load signal is a latency sum, whose rate is the
// requests in flight by Little's law: the demand while nothing waits, an
// over-estimate without bound once a queue builds (it counts the waiting
// requests and the time they wait). So the service time is learned while
// nothing waits, and while saturated the version is sized from its
// arrivals x that service time (see policy.DemandFromArrivals).

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// slotStep is one step of a request-slot source: the rate window ending
// at at.
type slotStep struct {
	at                                     time.Time
	utilization, rate, inFlight, instances float64
}

// slotSteps joins a request-slot source's per-step series, oldest first,
// at the steps where both the request rate and the requests in flight are
// known (utilization and instances NaN where unknown). A newest step
// whose rate and in-flight repeat the step before it exactly is dropped:
// VictoriaMetrics answers a step too close to the query time (inside
// -search.latencyOffset, 30 s by default) with the previous step's values,
// its newest samples being possibly incomplete, and read as a real window
// the repeat says that nothing changed: no latency growth (the gateway's
// arrivals read as its completions), and a steady rate that was not seen.
// Counters of real traffic never repeat a window's rate and latency sum to
// the last digit.
func slotSteps(utilization, rates, inFlights, instances []tsdb.Sample) []slotStep {
	byTime := func(ss []tsdb.Sample) map[int64]float64 {
		out := make(map[int64]float64, len(ss))
		for _, s := range ss {
			out[s.At.UnixMilli()] = s.Value
		}
		return out
	}
	util, flight, inst := byTime(utilization), byTime(inFlights), byTime(instances)
	var out []slotStep
	for _, r := range rates {
		ms := r.At.UnixMilli()
		n, ok := flight[ms]
		if !ok || !finite(r.Value) || !finite(n) {
			continue
		}
		st := slotStep{at: r.At, rate: r.Value, inFlight: n, utilization: math.NaN(), instances: math.NaN()}
		if u, ok := util[ms]; ok {
			st.utilization = u
		}
		if c, ok := inst[ms]; ok {
			st.instances = c
		}
		out = append(out, st)
	}
	if k := len(out); k >= 2 && out[k-1].rate == out[k-2].rate && out[k-1].inFlight == out[k-2].inFlight {
		out = out[:k-1]
	}
	return out
}

// serviceWindow returns the latency seconds and requests (over the rate
// window) of the window before the newest one, its end and its
// utilization, when that window can measure the service time: the latency
// of a request is its service time only when it did not wait. Like the
// worker source's cost (measuresCost) it needs
//   - that window and the newest one below saturation: a queue builds a
//     step or two before utilization reads saturated, and a window that
//     holds waiting requests would teach a service time that includes the
//     wait;
//   - a steady request rate, within steadyRequests, from the step before
//     it to the newest: in a window in which the load stepped, the
//     requests counted and the latency summed are not the same requests;
//   - the same instance count from its start to the newest step: right
//     after instances come, they serve a backlog queued before, and a
//     window's average utilization can read below saturation while part
//     of it queued.
func serviceWindow(steps []slotStep, step, window time.Duration) (at time.Time, seconds, requests, util float64, ok bool) {
	n := len(steps)
	if n < 3 {
		return at, 0, 0, 0, false
	}
	before, settled, newest := steps[n-3], steps[n-2], steps[n-1]
	if !newest.at.Equal(settled.at.Add(step)) || !settled.at.Equal(before.at.Add(step)) {
		return at, 0, 0, 0, false
	}
	if !(settled.utilization < policy.SaturatedUtilization) || !(newest.utilization < policy.SaturatedUtilization) {
		return at, 0, 0, 0, false
	}
	lo, hi := math.Inf(1), 0.0
	for _, st := range []slotStep{before, settled, newest} {
		if st.rate <= 0 {
			return at, 0, 0, 0, false
		}
		lo, hi = math.Min(lo, st.rate), math.Max(hi, st.rate)
	}
	if hi > steadyRequests*lo || settled.inFlight < 0 {
		return at, 0, 0, 0, false
	}
	from := settled.at.Add(-window)
	for _, st := range steps {
		if !st.at.Before(from) && !(st.instances > 0 && st.instances == newest.instances) {
			return at, 0, 0, 0, false
		}
	}
	w := window.Seconds()
	return settled.at, settled.inFlight * w, settled.rate * w, settled.utilization, true
}

// slotFlow is what a request-slot source says about the window before
// its newest real step (steps[len-2]), per second: the requests that
// arrived and the request slots busy. ok is false when it cannot say.
type slotFlow func(steps []slotStep, service policy.Cost) (arrivals, busySlots float64, ok bool)

// controlPlaneFlow: the invocation service counts arrivals; the slots busy
// are the requests in flight up to the slots there are (beyond them they
// wait).
func controlPlaneFlow(concurrency float64) slotFlow {
	return func(steps []slotStep, _ policy.Cost) (float64, float64, bool) {
		w := steps[len(steps)-2]
		slots := w.instances * concurrency
		if !(slots >= 0) || concurrency <= 0 {
			return 0, 0, false
		}
		return w.rate, math.Min(w.inFlight, slots), true
	}
}

// gatewayFlow: arrivals are estimated from the completions (see
// gatewayDemand); each completion held a slot for the service time.
func gatewayFlow(steps []slotStep, service policy.Cost) (float64, float64, bool) {
	n := len(steps)
	prev, w := steps[n-3], steps[n-2]
	c := func(st slotStep) policy.Completions {
		return policy.Completions{At: st.at, Rate: st.rate, InFlight: st.inFlight}
	}
	arrivals, _, ok := policy.ArrivalsFromCompletions(c(prev), c(w), service)
	return arrivals, w.rate * service.SecondsPerRequest, ok
}

// observeSlots folds the window before the newest real step into a
// request-slot version's estimated queue (policy.Backlog, as the worker
// source keeps it: arrivals in, busy slot-seconds / service time out) and,
// when that window can teach it and no queue from before is being served
// in it, into its learned service time. It returns both, stored under key.
//
// The backlog is what lets the policy tell, while utilization reads
// saturated, the queue built during a climb draining (hold at the demand
// size) from a service time gone stale (keep climbing): without it a
// version sized right to 7 for 5 req/s doubled to 14 and 28 while 7
// served the queue of the climb.
//
// The service time it returns, and folds the queue with, is the learned
// one once known, and until then the latency bound of the lookback's
// windows without a queue (policy.LatencyBound; completions says the
// source counts requests as they complete): a version whose first real
// load is a step has served only a few requests, too few to learn from,
// and was sized by Little's law, which counts every waiting request.
func (h *Handler) observeSlots(ctx context.Context, log *slog.Logger, v store.ActiveVersion, learned policy.Cost, backlog policy.Backlog,
	steps []slotStep, flow slotFlow, completions bool) (policy.Cost, policy.Backlog) {
	s := h.d.Settings.Scale
	seen, seenRequests, seenEnd := latencyWithoutQueue(steps, s.Step, s.Window, completions)
	if kept, ok := keptBound(learned, seen, seenRequests, seenEnd); ok {
		c := store.Cost{SecondsPerRequest: kept.SecondsPerRequest, Weight: kept.Weight, WindowEnd: kept.UpdatedAt}
		if err := h.saveState(ctx, v.VersionKey, func(u *store.StateUpdate) { u.Cost(c) }); err != nil {
			log.Warn("save latency bound", "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID, "error", err.Error())
		}
		learned = kept
	}
	bound := func(c policy.Cost) policy.Cost { return policy.LatencyBound(c, seen, seenRequests) }
	service := bound(learned)
	n := len(steps)
	if n < 3 {
		return service, backlog
	}
	at := steps[n-2].at
	_, seconds, requests, util, steady := serviceWindow(steps, s.Step, s.Window)
	next, learn := backlog, steady
	if arrivals, busy, ok := flow(steps, service); ok {
		share := h.unfolded(at, backlog.UpdatedAt) * s.Window.Seconds()
		next, learn = backlog.Observe(at, share*arrivals, share*busy, service, steady)
	} else if steady {
		next = backlog.Empty(at)
	} else {
		next = policy.Backlog{}
	}
	next = waitingFloor(next, steps, service)
	o := observation{backlog: backlog}
	h.saveBacklog(ctx, log, v, &o, next)
	if learn && steady {
		learned = h.foldCost(ctx, log, v.VersionKey, learned, at, seconds, requests, util)
	}
	return bound(learned), o.backlog
}

// keptBound is the partial estimate to keep in a version's row when the
// lookback's windows without a queue (seconds and requests, the newest
// ending at end) bound its service time with more requests than the row
// has: those windows leave the lookback while the version stays
// saturated, and with them the bound, which then sized by Little's law
// again (the demo's llm-chat, held at 7 for a need of 7, asked 38 when
// its 7 requests' windows aged out). Kept with end as the last window
// folded, so learning later counts none of them again. ok is false when
// there is nothing to keep: a learned service time, no more evidence than
// the row's, or as much as a learned one needs (CostMinRequests): kept,
// windows that did not pass the learning test (serviceWindow) would make
// a learned service time; this is for the few requests before a step.
func keptBound(learned policy.Cost, seconds, requests float64, end time.Time) (policy.Cost, bool) {
	b := policy.LatencyBound(learned, seconds, requests)
	if learned.Known() || !b.Known() || !(b.Weight > learned.Weight) || b.Weight >= policy.CostMinRequests || !end.After(learned.UpdatedAt) {
		return learned, false
	}
	return policy.Cost{SecondsPerRequest: b.SecondsPerRequest, Weight: b.Weight, UpdatedAt: end}, true
}

// latencyWithoutQueue sums the latency seconds and the requests of the
// lookback's windows in which no request waited, each request counted
// once (consecutive windows overlap by window - step), for
// policy.LatencyBound, and the end of the newest of them. A source that
// counts a request when it completes
// (completions: the gateway) sums the latency of the very requests it
// counts, so any window below saturation will do: its mean latency is at
// most a little waiting above its requests' service time. The control
// plane counts a request on arrival and sums its latency on completion,
// which agree only over a steady rate (in the window a load steps up, the
// new arrivals are counted before any of their latency is): it takes the
// windows serviceWindow would learn from.
func latencyWithoutQueue(steps []slotStep, step, window time.Duration, completions bool) (seconds, requests float64, end time.Time) {
	own := math.Min(step.Seconds(), window.Seconds())
	for i, st := range steps {
		if !(st.rate > 0) || !(st.inFlight >= 0) {
			continue
		}
		if completions && !(st.utilization < policy.SaturatedUtilization) {
			continue
		}
		if !completions {
			if i+2 > len(steps) {
				continue
			}
			if _, _, _, _, ok := serviceWindow(steps[:i+2], step, window); !ok {
				continue
			}
		}
		seconds += st.inFlight * own
		requests += st.rate * own
		end = st.at
	}
	return seconds, requests, end
}

// waitingFloor raises an estimated queue to the requests Little's law
// says are waiting at the newest step (in flight beyond those the
// completions or arrivals keep in service: rate x service time) while
// that number shrinks. The saturation reading lags the queue it comes
// from: a request's latency is summed when it leaves, so the requests of
// a drained queue keep the reading saturated for up to a window and a
// latency after the last of them was served. Conservation alone ran out
// first and a BYOC version held right at 7 doubled to 14 and 28 while
// that tail passed. A growing number is a queue building, which the
// floor leaves to conservation: a service time gone stale still shows.
func waitingFloor(b policy.Backlog, steps []slotStep, service policy.Cost) policy.Backlog {
	n := len(steps)
	if !b.Known() || !service.Known() || n < 2 {
		return b
	}
	waiting := func(st slotStep) float64 { return st.inFlight - st.rate*service.SecondsPerRequest }
	if now := waiting(steps[n-1]); now < waiting(steps[n-2]) && now > b.Requests {
		b.Requests = now
	}
	return b
}

// foldCost folds one settled window (latency seconds and requests over
// the rate window ending at at, and its utilization) into a version's
// learned service time, saves the result when it is worth a write, and
// returns it, as the worker source does with busy seconds (observe).
func (h *Handler) foldCost(ctx context.Context, log *slog.Logger, key store.VersionKey, stored policy.Cost, at time.Time,
	seconds, requests, utilization float64) policy.Cost {
	// Overlapping windows: fold only the share not yet folded (see observe).
	share := h.unfolded(at, stored.UpdatedAt)
	learned := stored.Learn(at, share*seconds, share*requests, utilization)
	if costWorthSaving(stored, learned, h.d.Settings.Scale.Step) {
		c := store.Cost{SecondsPerRequest: learned.SecondsPerRequest, Weight: learned.Weight, WindowEnd: learned.UpdatedAt}
		if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.Cost(c) }); err != nil {
			// Used this cycle all the same; the next one folds its window
			// into the older stored estimate, never counting one twice.
			log.Warn("save learned service time", "function_id", key.FunctionID, "function_version_id", key.FunctionVersionID, "error", err.Error())
		}
	}
	return learned
}

// slotUtilization is the utilization the policy decides from: a
// Little's-law utilization, capped at 100 %. Over 100 % it counts waiting
// requests as busy slots, and how far over says how long the queue has
// been building, not how much capacity the load needs: the policy reads
// utilization as the share of capacity in use (saturated at 100 %) and
// takes the load beyond it from the demand estimate. Below 100 % it is
// unchanged, so nvcf mode's thresholds read the same.
func slotUtilization(samples []tsdb.Sample) []tsdb.Sample {
	out := make([]tsdb.Sample, len(samples))
	for i, s := range samples {
		out[i] = s
		if s.Value > 100 { // +Inf too: load on no instances is saturated
			out[i].Value = 100
		}
	}
	return out
}

// overLittle notes, for the detail, the newest Little's-law utilization
// when it was over 100 % (requests waiting).
func overLittle(samples []tsdb.Sample) string {
	if n := len(samples); n > 0 && samples[n-1].Value > 100 {
		return fmt.Sprintf("; little's law read %.0f %% (waiting requests included), decided as 100 %%", samples[n-1].Value)
	}
	return ""
}

// controlPlaneDemand is a control-plane version's demand: arrivals (the
// invocation service counts a request when it routes it, queued ones
// included) x the learned service time, or its latency bound until one is
// learned (see observeSlots); without either, Little's law.
func controlPlaneDemand(m tsdb.ControlPlaneMetrics, service policy.Cost) *policy.Demand {
	if m.Concurrency <= 0 {
		return nil
	}
	if n := len(m.RequestRates); n > 0 && service.Known() {
		d := policy.DemandFromArrivals(service, m.RequestRates[n-1].Value, m.Concurrency, "counted on arrival")
		return &d
	}
	if m.InFlightKnown {
		d := policy.DemandFromConcurrency(m.InFlight, m.Concurrency)
		return &d
	}
	return nil
}

// gatewayDemand is a gateway function's demand. The gateway counts a
// request when it answers it, so while saturated its counter shows the
// capacity, not the arrivals: those are estimated from the completions
// and their latencies, and sized with the learned service time, or its
// latency bound until one is learned. The estimate is the curve of the
// scrape intervals over the newest pair's span
// (policy.ArrivalsFromCurve: each interval's completions at their own
// arrival time); where the raw samples give fewer than three intervals
// that completed anything (a TSDB that keeps no raw samples that old,
// scrapes as far apart as the span), the two newest windows' rates
// (policy.ArrivalsFromCompletions). Without either, or without two steps
// of completions, Little's law.
//
// The windows' estimate over-reads while instances come up; while the
// instance count changes over the newest pair's windows, the
// newest pair may read at most steadyRequests times what the pair before
// (the settled one) reads. New instances start completing the queue's
// oldest requests, so the completion rate jumps and the mean latency of
// what completes moves for reasons other than the arrivals; the estimate
// divides by 1 - latency growth, near 0 while a queue builds, and a small
// error there multiplies it. In the demo (4 s requests, 8 s windows) the
// newest pair read 17.2 req/s for 5 as new instances began completing,
// and asked 23 instances for 7. With the same instances throughout (the
// windows serviceWindow would learn from ask the same) a rise is followed
// at once: taking the settled pair's reading there lags a step behind,
// a minute in production, while the load climbs.
func gatewayDemand(m tsdb.GatewayMetrics, steps []slotStep, service policy.Cost, window time.Duration) policy.Demand {
	conc := m.Concurrency()
	if conc <= 0 {
		return policy.Demand{}
	}
	completions := func(st slotStep) policy.Completions {
		return policy.Completions{At: st.at, Rate: st.rate, InFlight: st.inFlight}
	}
	if n := len(steps); n >= 2 {
		// The scrape intervals of the newest pair's span, when the raw
		// samples came: each interval's completions have their own time
		// there, which the windows' rates blur.
		last := steps[n-1]
		from := last.at.Add(-window - last.at.Sub(steps[n-2].at))
		if arrivals, how, ok := policy.ArrivalsFromCurve(intervalsIn(m.Completions, from, last.at), last.inFlight, service); ok {
			return policy.DemandFromArrivals(service, arrivals, conc, how)
		}
		arrivals, how, ok := policy.ArrivalsFromCompletions(completions(steps[n-2]), completions(steps[n-1]), service)
		if n >= 3 && ok && capacityChanged(steps, window) {
			if settled, _, sok := policy.ArrivalsFromCompletions(completions(steps[n-3]), completions(steps[n-2]), service); sok && arrivals > steadyRequests*settled {
				arrivals, how = steadyRequests*settled, how+fmt.Sprintf(", capped at %g x the %.1f req/s of the pair before", steadyRequests, settled)
			}
		}
		if ok {
			return policy.DemandFromArrivals(service, arrivals, conc, how)
		}
	}
	if m.InFlightKnown {
		return policy.DemandFromConcurrency(m.InFlight, conc)
	}
	return policy.Demand{}
}

// intervalsIn returns the scrape intervals inside [from, to], as the
// policy takes them.
func intervalsIn(ivs []tsdb.CompletionInterval, from, to time.Time) []policy.CompletionInterval {
	var out []policy.CompletionInterval
	for _, iv := range ivs {
		if !iv.From.Before(from) && !iv.To.After(to) {
			out = append(out, policy.CompletionInterval{From: iv.From, To: iv.To, Completed: iv.Completed, LatencySum: iv.LatencySum})
		}
	}
	return out
}

// capacityChanged reports whether the instance count was not the same
// known count throughout the windows of the newest pair of steps.
func capacityChanged(steps []slotStep, window time.Duration) bool {
	n := len(steps)
	from, now := steps[n-2].at.Add(-window), steps[n-1].instances
	for _, st := range steps {
		if !st.at.Before(from) && !(st.instances == now) { // NaN: unknown, not the same
			return true
		}
	}
	return false
}

// newestSlots is the service time and backlog kept for a gateway
// function: its decisions are written to one target version, whose row
// keeps them, and the target can change, so the newest of any of its
// versions.
func newestSlots(states map[string]store.ScalingState) (policy.Cost, policy.Backlog) {
	var c policy.Cost
	var b policy.Backlog
	for _, st := range states {
		if sc := storedCost(st.Cost); sc.UpdatedAt.After(c.UpdatedAt) {
			c = sc
		}
		if sb := storedBacklog(st.Backlog); sb.UpdatedAt.After(b.UpdatedAt) {
			b = sb
		}
	}
	return c, b
}
