package policy

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Demand is offered load in busy instances: how many instances would be
// 100 % busy serving it. It matters when a version is saturated: then
// utilization is capped at 100 % and says only "at least the current
// capacity", while the invocation plane still counts every request routed
// to the version, queued ones included.
type Demand struct {
	// Instances is finite and >= 0 when the estimate is known.
	Instances float64
	// Method names the estimate, e.g. "requests x learned cost".
	Method string
	// Detail gives its numbers, for the decision detail.
	Detail string
}

// Known reports whether the estimate can be used. The zero value is
// unknown, so callers that do not estimate demand are unchanged.
func (d Demand) Known() bool {
	return d.Method != "" && finite(d.Instances) && d.Instances >= 0
}

// String reads "demand=8.4 busy instances (method: detail)", or
// "demand unknown".
func (d Demand) String() string {
	if !d.Known() {
		return "demand unknown"
	}
	return fmt.Sprintf("demand=%.1f busy instances (%s: %s)", d.Instances, d.Method, d.Detail)
}

// Estimate methods, as they appear in Demand.Method.
const (
	MethodRequestsLearnedCost = "requests x learned cost"
	// MethodRequestsEarlyCost sizes a worker version from its requests and
	// the cost of its first few, before one is learned (see EarlyCost).
	MethodRequestsEarlyCost = "requests x early cost"
	MethodLittlesLaw        = "little's law"
	// MethodArrivalsServiceTime sizes a request-slot source (the LLM
	// gateway, the control plane) from its arrivals and the service time
	// it learned while it had no queue.
	MethodArrivalsServiceTime = "arrivals x learned service time"
	// MethodArrivalsLatencyBound sizes it from its arrivals and the
	// latency its requests had without a queue, before a service time is
	// learned (see LatencyBound).
	MethodArrivalsLatencyBound = "arrivals x latency bound"
)

// CostHalfLife is how many observations (scaling windows with requests,
// not wall time) it takes for an old observation's weight to halve. Ten
// one-minute windows average out the edge effect of a single window (a
// request counted in one window may be busy in the next, which biases one
// window's busy/requests ratio by up to a request's length) while still
// following a change in the workload's cost (a new model, longer prompts)
// within about ten minutes of unsaturated traffic. It counts observations
// rather than time because the cost of a request does not change while a
// version is idle or saturated: a version that bursts after an hour at
// rest should still know its cost.
const CostHalfLife = 10.0

// costDecay multiplies the old evidence at every new observation.
var costDecay = math.Pow(0.5, 1/CostHalfLife)

// CostMinRequests is the decayed number of requests a cost estimate needs
// before it is used: fewer than that and a few long or short requests, or
// one window's edge effect, can move it by tens of percent, and a too low
// cost would size a saturated version too small. With CostHalfLife 10 the
// weight levels off at about 14.9 times the requests per window, so a
// version that averages fewer than about 1.4 requests per window never
// gets there and keeps the doubling: its requests are as long as the
// window or rare, and one window's busy/requests says little about them.
const CostMinRequests = 20.0

// Cost is a version's learned busy seconds per request: a decayed average
// over windows in which the version was not saturated, kept by the caller
// in the version's scaling state.
//
// It is a ratio of decayed sums (busy seconds over requests) rather than a
// mean of per-window ratios, so a window with 500 requests counts 500 times
// as much as a window with one: that is the estimator whose error shrinks
// with the number of requests seen.
type Cost struct {
	// SecondsPerRequest is the estimate: decayed busy seconds / decayed requests.
	SecondsPerRequest float64
	// Weight is the decayed number of requests behind the estimate.
	Weight float64
	// UpdatedAt is the end of the last window folded in.
	UpdatedAt time.Time
	// Early marks an estimate sized from before one is learned, from
	// fewer requests than CostMinRequests (see EarlyCost, LatencyBound):
	// Known from EarlyMinRequests, and never stored or learned into.
	Early bool
}

// Known reports whether there is enough evidence to size from.
func (c Cost) Known() bool {
	need := CostMinRequests
	if c.Early {
		need = EarlyMinRequests
	}
	return finite(c.SecondsPerRequest) && c.SecondsPerRequest > 0 && finite(c.Weight) && c.Weight >= need
}

// String reads "4.00 s (learned from 23 requests)" or "4.00 s (early:
// 7 requests)", for the decision detail.
func (c Cost) String() string {
	if c.Early {
		return fmt.Sprintf("%.2f s (early: %.0f requests)", c.SecondsPerRequest, c.Weight)
	}
	return fmt.Sprintf("%.2f s (learned from %.0f requests)", c.SecondsPerRequest, c.Weight)
}

// EarlyMinRequests is how many requests an early estimate needs before it
// sizes anything. A version whose first real load is a step (a new
// deployment, a rollout) has served a few requests before it, too few to
// learn a cost from (CostMinRequests), and without one it doubled every
// cycle while the queue of its climb kept it saturated (a worker version
// needing 7 ran 19) or, on a request-slot source, was sized by Little's
// law, which counts every waiting request (asked 8, 14, 23 for 7).
//
// Sizing from a few requests errs within limits either way. Too high, the
// version is sized up to that ratio too large, once. Too low, its workers
// stay busier than the demand explains: the demand is ignored, or the
// backlog it folds runs out while the version is still saturated, and the
// version doubles as it did without one (Policy.target). Five keep one
// odd request (an LLM's output length varies tenfold) from being all the
// estimate says.
const EarlyMinRequests = 5.0

// EarlyCost is the cost a worker version sizes from: the learned one once
// it is Known, before that the partial estimate from EarlyMinRequests
// requests (Early set).
func EarlyCost(learned Cost) Cost {
	if learned.Known() {
		return learned
	}
	learned.Early = true
	return learned
}

// LatencyBound is the service time a request-slot source (the LLM
// gateway, the control plane) sizes from: the learned one once it is
// Known, before that an upper bound from the latency already observed
// (Early set): the latency seconds and requests the caller summed over
// windows in which no request waited (each request counted once), or the
// partial learned estimate, whichever has more requests behind it. The
// latency of a request that did not wait is its service time, so the
// bound can only over-state the service time of the requests it saw: it
// errs on the side of instances, and never without limit as Little's law
// does once a queue builds.
//
// The result is not Known (and sizes nothing) when neither has
// EarlyMinRequests requests.
func LatencyBound(learned Cost, latencySeconds, requests float64) Cost {
	if learned.Known() {
		return learned
	}
	var b Cost
	if finite(latencySeconds) && finite(requests) && latencySeconds > 0 && requests > 0 {
		b = Cost{SecondsPerRequest: latencySeconds / requests, Weight: requests}
	}
	if finite(learned.SecondsPerRequest) && learned.SecondsPerRequest > 0 && finite(learned.Weight) && learned.Weight > b.Weight {
		b = Cost{SecondsPerRequest: learned.SecondsPerRequest, Weight: learned.Weight}
	}
	b.Early = true
	return b
}

// Learn folds one window's observation (busy seconds, requests and the
// utilization percent it was measured at, the window ending at at) into
// the estimate and returns the new estimate.
//
// An observation is left out when it cannot measure cost:
//   - saturated (utilization >= SaturatedUtilization, or unknown): the
//     request count includes queued requests that got no busy time yet,
//     so busy/requests under-states the cost exactly when it is used;
//   - empty (no requests) or no busy time: there is no ratio to take;
//   - NaN, ±Inf or negative numbers (a counter reset or a failed query);
//   - not after UpdatedAt: a replayed or out-of-order window would count
//     the same requests twice.
func (c Cost) Learn(at time.Time, busySeconds, requests, utilization float64) Cost {
	if !finite(busySeconds) || !finite(requests) || !finite(utilization) {
		return c
	}
	if busySeconds <= 0 || requests <= 0 || utilization < 0 || utilization >= SaturatedUtilization {
		return c
	}
	if c.Early {
		// A bound is not an estimate of the mean: learning starts afresh.
		c = Cost{}
	}
	if !c.UpdatedAt.IsZero() && !at.After(c.UpdatedAt) {
		return c
	}
	// A state that is not a usable estimate (a corrupt or hand-edited
	// row) is dropped rather than let NaN poison every later estimate.
	oldWeight, oldBusy := 0.0, 0.0
	if finite(c.Weight) && c.Weight > 0 && finite(c.SecondsPerRequest) && c.SecondsPerRequest > 0 {
		oldWeight = c.Weight * costDecay
		oldBusy = oldWeight * c.SecondsPerRequest
	}
	weight := oldWeight + requests
	return Cost{
		SecondsPerRequest: (oldBusy + busySeconds) / weight,
		Weight:            weight,
		UpdatedAt:         at,
	}
}

// DemandFromRequests is offered demand from the request rate (requests per
// second, every routed request counted, queued ones included) and the
// learned cost (or an EarlyCost): rate x seconds per request is busy
// threads, divided by the threads one instance runs. Unknown when the
// cost is not yet known or an input is not a usable number.
func DemandFromRequests(c Cost, requestRate, threadsPerInstance float64) Demand {
	if !c.Known() || !finite(requestRate) || requestRate < 0 || !finite(threadsPerInstance) || threadsPerInstance <= 0 {
		return Demand{}
	}
	d := Demand{
		Instances: requestRate * c.SecondsPerRequest / threadsPerInstance,
		Method:    MethodRequestsLearnedCost,
		Detail:    fmt.Sprintf("%.1f req/s x %.2f s / %g threads", requestRate, c.SecondsPerRequest, threadsPerInstance),
	}
	if c.Early {
		d.Method = MethodRequestsEarlyCost
		d.Detail = fmt.Sprintf("%.1f req/s x %s / %g threads", requestRate, c, threadsPerInstance)
	}
	return d
}

// DemandFromConcurrency is offered demand by Little's law: the mean number
// of requests in flight (e.g. the rate of a latency-seconds sum) divided by
// how many requests one instance serves at once. It needs no learning, so
// the control-plane and gateway sources have it from their first window.
func DemandFromConcurrency(inFlight, concurrencyPerInstance float64) Demand {
	if !finite(inFlight) || inFlight < 0 || !finite(concurrencyPerInstance) || concurrencyPerInstance <= 0 {
		return Demand{}
	}
	return Demand{
		Instances: inFlight / concurrencyPerInstance,
		Method:    MethodLittlesLaw,
		Detail:    fmt.Sprintf("%.1f in flight / %g concurrent per instance", inFlight, concurrencyPerInstance),
	}
}

// The gateway and control-plane sources have no busy-seconds counter: what
// they export is a latency sum, each request's whole time in the system,
// waiting included. Little's law turns its rate into requests in flight,
// which is the demand while nothing waits, and an over-estimate without
// bound once a queue builds: the waiting requests are counted, and so is
// the time they wait, which grows for as long as the queue does (a step
// that needed 7 instances read as 12, then 44). A Cost learned from those
// sources is therefore a service time: latency seconds per request,
// learned (Cost.Learn) only from windows below saturation, where no
// request waits and the latency of a request IS its service time. While
// saturated it is the arrivals, not the requests in flight, that size the
// version.

// DemandFromArrivals is offered demand from an arrival rate (requests per
// second offered, served or not) and a learned service time: busy request
// slots, divided by the slots one instance has. how says where the rate
// comes from, for the detail ("counted on arrival", or the estimate's
// numbers). The service time may be a LatencyBound. Unknown when the
// service time is neither learned nor bounded yet or an input is not a
// usable number.
func DemandFromArrivals(service Cost, arrivals, concurrency float64, how string) Demand {
	if !service.Known() || !finite(arrivals) || arrivals < 0 || !finite(concurrency) || concurrency <= 0 {
		return Demand{}
	}
	d := Demand{
		Instances: arrivals * service.SecondsPerRequest / concurrency,
		Method:    MethodArrivalsServiceTime,
		Detail:    fmt.Sprintf("%.1f req/s %s x %.2f s / %g concurrent", arrivals, how, service.SecondsPerRequest, concurrency),
	}
	if service.Early {
		d.Method = MethodArrivalsLatencyBound
		d.Detail = fmt.Sprintf("%.1f req/s %s x %s / %g concurrent", arrivals, how, service, concurrency)
	}
	return d
}

// Completions is one rate window of a source that counts requests when
// they complete (the LLM gateway): the completion rate and the requests in
// flight by Little's law (the rate of the duration sum) over the window
// ending at At.
type Completions struct {
	At       time.Time
	Rate     float64
	InFlight float64
}

// latency is the mean time in the system of the requests that completed
// in the window.
func (c Completions) latency() float64 { return c.InFlight / c.Rate }

func (c Completions) usable() bool {
	return !c.At.IsZero() && finite(c.Rate) && c.Rate > 0 && finite(c.InFlight) && c.InFlight >= 0
}

// ArrivalsFromCompletions estimates the arrival rate of a source that
// counts requests only when they complete, from its two newest windows
// (prev one step before last) and the learned service time. While a queue
// builds, completions are capped by capacity and say nothing of the
// arrivals; what grows is the latency of the requests that complete.
//
// For requests served in arrival order, those completing over dt arrived
// over dt minus the growth of their latency, so
//
//	arrivals = completions / (1 - latency growth per second)
//
// (the rate of arrivals at the time the completing requests arrived: at
// most one latency old). Both windows' completion rates are averaged, as
// the latency growth is measured between their two means: pairing it with
// the newest rate alone over-states the arrivals in the window where new
// capacity starts completing the backlog. A shrinking latency (a backlog
// draining) gives fewer arrivals than completions, as it should.
//
// The estimate is bounded by the requests in flight over the service time
// (every request spends at least that long in the system), which is
// Little's law's demand: it never sizes above what Little's law would, and
// a growth of nearly one second per second (noise while the backlog grows
// fastest) cannot make it explode. ok is false when a window is missing or
// has no completions, or the service time is not known.
func ArrivalsFromCompletions(prev, last Completions, service Cost) (arrivals float64, how string, ok bool) {
	if !service.Known() || !prev.usable() || !last.usable() || !last.At.After(prev.At) {
		return 0, "", false
	}
	dt := last.At.Sub(prev.At).Seconds()
	growth := (last.latency() - prev.latency()) / dt
	completed := (prev.Rate + last.Rate) / 2
	how = fmt.Sprintf("estimated: %.1f completed/s, latency %.2f s -> %.2f s in %gs", completed, prev.latency(), last.latency(), dt)
	// A growth of a second a second or more says nothing of the arrivals
	// but that they outrun the completions: only the bound is left.
	arrivals = math.Inf(1)
	if growth < 1 {
		arrivals = completed / (1 - growth)
	}
	arrivals, how = boundedByInFlight(arrivals, last.InFlight, service, how)
	return arrivals, how, true
}

// boundedByInFlight caps an arrival estimate at Little's law's demand,
// the requests in flight over the service time (every request spends at
// least that long in the system), and says so in how.
func boundedByInFlight(arrivals, inFlight float64, service Cost, how string) (float64, string) {
	if bound := inFlight / service.SecondsPerRequest; arrivals > bound {
		return bound, how + fmt.Sprintf(", bounded by %.1f in flight / service time", inFlight)
	}
	return arrivals, how
}

// CompletionInterval is what one series of a source that counts requests
// when they complete (the LLM gateway) says about one scrape interval:
// the requests that completed in (From, To] and the sum of their
// latencies (time in the system, waiting included).
type CompletionInterval struct {
	From, To   time.Time
	Completed  float64
	LatencySum float64
}

// curvePoints is the least number of scrape intervals with completions
// ArrivalsFromCurve fits: two always give a line, three can disagree.
const curvePoints = 3

// ArrivalsFromCurve estimates the arrival rate of a source that counts
// requests only when they complete, from each scrape interval's
// completions and their latencies, bounded like ArrivalsFromCompletions by
// the requests in flight over the service time.
//
// For requests served in arrival order the k-th to complete is the k-th
// to arrive. An interval's completions finished about its middle and
// arrived, on average, their mean latency before that; their index is the
// completions before them plus half their own. The arrival rate is the
// slope of index against arrival time, fitted by least squares with each
// interval weighted by its completions.
//
// Windows of rates cannot do this: a window's mean latency is weighted by
// its completions, which pile up after new instances start (they complete
// the queue's oldest requests first), and the growth between two windows'
// means then reads high. In a simulated FIFO queue with instances coming
// up (functions/scale's TestGatewayArrivalsWhileInstancesComeUp) the pair
// of windows read up to 4.2x the arrivals with the closed loop's timings
// and 2.2x with production's; scrape intervals give every completion its
// own time, within one interval. ok is false with fewer than curvePoints
// intervals that completed anything, when their arrival times do not
// spread, or when the service time is not known.
func ArrivalsFromCurve(intervals []CompletionInterval, inFlight float64, service Cost) (arrivals float64, how string, ok bool) {
	if !service.Known() {
		return 0, "", false
	}
	type point struct{ index, arrived, weight float64 }
	sorted := make([]CompletionInterval, 0, len(intervals))
	for _, iv := range intervals {
		if finite(iv.Completed) && iv.Completed > 0 && finite(iv.LatencySum) && iv.LatencySum >= 0 && iv.To.After(iv.From) {
			sorted = append(sorted, iv)
		}
	}
	if len(sorted) < curvePoints {
		return 0, "", false
	}
	slices.SortFunc(sorted, func(a, b CompletionInterval) int {
		if c := a.To.Compare(b.To); c != 0 {
			return c
		}
		if c := a.From.Compare(b.From); c != 0 {
			return c
		}
		// Series scraped at the same times (the gateway's replicas) tie
		// on both ends, in the order the TSDB's answer happened to give
		// them; the one whose completions arrived first (the longer mean
		// latency) takes the lower index, as one FIFO order would have
		// it, and the estimate no longer depends on that order.
		return cmp.Compare(b.LatencySum/b.Completed, a.LatencySum/a.Completed)
	})
	origin := sorted[0].From
	pts := make([]point, 0, len(sorted))
	done := 0.0
	for _, iv := range sorted {
		mid := iv.From.Sub(origin).Seconds() + iv.To.Sub(iv.From).Seconds()/2
		pts = append(pts, point{index: done + iv.Completed/2, arrived: mid - iv.LatencySum/iv.Completed, weight: iv.Completed})
		done += iv.Completed
	}
	var w, mx, my float64
	for _, p := range pts {
		w += p.weight
		mx += p.weight * p.arrived
		my += p.weight * p.index
	}
	mx, my = mx/w, my/w
	var sxy, sxx float64
	for _, p := range pts {
		sxy += p.weight * (p.arrived - mx) * (p.index - my)
		sxx += p.weight * (p.arrived - mx) * (p.arrived - mx)
	}
	if !(sxx > 0) {
		return 0, "", false
	}
	arrivals = sxy / sxx
	if !finite(arrivals) || arrivals <= 0 {
		return 0, "", false
	}
	spread := math.Sqrt(sxx / w)
	how = fmt.Sprintf("estimated: %.0f completions in %d scrape intervals, arrival times spread %.1f s", done, len(pts), spread)
	arrivals, how = boundedByInFlight(arrivals, inFlight, service, how)
	return arrivals, how, true
}
