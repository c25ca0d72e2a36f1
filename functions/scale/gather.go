package scale

// Gathering: everything the policy decides from, read from the TSDB and
// the version's stored state. A new metric source changes this file only.

import (
	"context"
	"log/slog"
	"math"
	"time"

	"function/shared/config"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// sourceWorker names the metric source of worker-reported metrics (busy
// seconds and thread counts) in the decision detail.
const sourceWorker = "worker"

// gatherMetrics fetches the whole bucket's metrics with the batched
// queries: a constant number per bucket, however many versions it holds.
func (h *Handler) gatherMetrics(ctx context.Context, rows []store.ActiveVersion, now time.Time) ([]tsdb.FunctionVersion, map[tsdb.FunctionVersion]tsdb.VersionMetrics, error) {
	fvs := make([]tsdb.FunctionVersion, len(rows))
	for i, v := range rows {
		fvs[i] = tsdb.FunctionVersion{FunctionID: v.FunctionID, FunctionVersionID: v.FunctionVersionID, NcaID: v.NcaID}
	}
	metrics, err := h.d.TSDB.BucketMetrics(tsdb.WithCaller(ctx, "scale"), fvs, now, h.metricsOptions())
	return fvs, metrics, err
}

// observation is what gathering knows about one version this cycle.
type observation struct {
	metrics tsdb.VersionMetrics
	// known is false when the TSDB returned nothing for the version.
	known bool
	// cost is the version's busy seconds per request, with this cycle's
	// settled window folded in.
	cost policy.Cost
	// source is the metric source the metrics came from; empty means
	// worker threads.
	source tsdb.Source
	// backlog is the version's estimated queue, with this cycle's settled
	// window folded in.
	backlog policy.Backlog
	// demand, when set, is the source's own demand estimate (Little's law
	// for the control plane), used instead of requests x cost.
	demand *policy.Demand
	// note is what the source adds to the decision's detail.
	note string
	// keepAlive is the version's learned idle gaps and cold start.
	keepAlive keepAlive
}

// observe completes one version's metrics with what is learned from them:
// its estimated backlog, with the settled window folded in, and its cost
// per request, folded from the window before that one (costWindow), both
// stored.
func (h *Handler) observe(ctx context.Context, log *slog.Logger, now time.Time, v store.ActiveVersion, st store.ScalingState, m tsdb.VersionMetrics, known bool) observation {
	o := observation{metrics: m, known: known, cost: storedCost(st.Cost), backlog: storedBacklog(st.Backlog)}
	if !known || m.SettledAt.IsZero() {
		return o
	}
	// The backlog folds the newest settled window; measuresCost decides
	// whether that window shows no queue, which empties the estimate. It
	// is folded with the early cost too, as demand is sized from it
	// (input): the queue of a climb sized early must be told from a cost
	// too low.
	s := h.d.Settings.Scale
	// The estimate before the fold is the one through the window the cost
	// is learned from (the one before the settled window).
	costWindowServedQueue := o.backlog.Serving()
	share := h.unfolded(m.SettledAt, o.backlog.UpdatedAt)
	backlog, _ := o.backlog.Observe(m.SettledAt, share*m.Requests, share*m.BusySeconds, policy.EarlyCost(o.cost), measuresCost(m, s.Window, s.Step))
	h.saveBacklog(ctx, log, v, &o, backlog)
	// The cost is learned a step later, from the window before the
	// settled one (costWindow), and not when the backlog estimated through
	// that window says it served a queue, one left at its end or one it
	// began with (policy.Backlog.Serving): a window that serves requests
	// from before it would teach a cost too high. The window that empties
	// a queue can read steady (requests within steadyRequests of its
	// neighbours, workers under saturation) and ends with none left; read
	// by its end alone it taught 84 busy seconds over 60 requests (1.4 s
	// for a 1 s request), and took a stored 1.000 s to 1.207 s
	// (TestCostIsNotLearnedFromTheWindowThatEmptiesAQueue).
	cw, ok := costWindow(m, s.Window, s.Step)
	if !ok || costWindowServedQueue {
		return o
	}
	// Consecutive windows overlap when the rate window is longer than the
	// step (70 s windows every 60 s; 8 s every 4 s in the accelerated
	// tests): fold only the share not yet folded, so that the evidence
	// counts each request about once. The ratio, the cost, is unchanged.
	share = h.unfolded(cw.end, o.cost.UpdatedAt)
	learned := o.cost.Learn(cw.end, share*cw.busySeconds, share*cw.requests, cw.utilization)
	if costWorthSaving(o.cost, learned, h.d.Settings.Scale.Step) {
		c := store.Cost{SecondsPerRequest: learned.SecondsPerRequest, Weight: learned.Weight, WindowEnd: learned.UpdatedAt}
		if err := h.saveState(ctx, v.VersionKey, func(u *store.StateUpdate) { u.Cost(c) }); err != nil {
			// The estimate is still used this cycle; the next cycle folds
			// its own window into the older stored one, losing one
			// observation, never counting one twice.
			log.Warn("save learned cost", "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID, "error", err.Error())
		}
	}
	o.cost = learned
	return o
}

// unfolded is the share of the settled window ending at end that no fold
// ending at last has counted yet: all of it for the first fold.
func (h *Handler) unfolded(end, last time.Time) float64 {
	if last.IsZero() {
		return 1
	}
	return min(1, end.Sub(last).Seconds()/h.d.Settings.Scale.Window.Seconds())
}

// saveBacklog makes next the version's backlog and stores it when it says
// something the stored one does not: a version that stays without a queue
// writes nothing, so the estimate costs a write per cycle only while a
// queue is being built or served, and one more after it. That one clears
// the queue the stored window began with (Prior): left stored, it said
// "served a queue" of every later window, and the cost, which is not
// learned from such a window, was never learned again after a drain (a
// closed loop kept 1.000 s to its end whatever its windows measured). A
// failed write loses the fold: the next cycle folds its own window into
// the older stored estimate.
func (h *Handler) saveBacklog(ctx context.Context, log *slog.Logger, v store.ActiveVersion, o *observation, next policy.Backlog) {
	prev := o.backlog
	o.backlog = next
	unchanged := prev.Known() && prev.Requests == 0 && next.Requests == 0 && prev.Prior == next.Prior
	if !next.Known() || !next.UpdatedAt.After(prev.UpdatedAt) || unchanged {
		return
	}
	b := store.Backlog{Requests: next.Requests, WindowEnd: next.UpdatedAt, Prior: next.Prior}
	if err := h.saveState(ctx, v.VersionKey, func(u *store.StateUpdate) { u.Backlog(b) }); err != nil {
		log.Warn("save backlog", "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID, "error", err.Error())
	}
}

func storedBacklog(b store.Backlog) policy.Backlog {
	return policy.Backlog{Requests: b.Requests, UpdatedAt: b.WindowEnd, Prior: b.Prior}
}

// measuresCost reports whether the settled window shows no queue: the
// test steadyWindow makes of the window a cost is learned from, with the
// fresh window, whose newest scrapes may still be on their way, as its
// only later neighbour. That is good enough to empty the backlog
// estimate (a queue the fresh window hid shows in the next fold), not to
// learn the cost from (costWindow).
func measuresCost(m tsdb.VersionMetrics, window, step time.Duration) bool {
	return steadyWindow(m, m.SettledAt, window, step)
}

// learnWindow is a window the cost may be learned from: its end, and the
// busy seconds, requests and utilization measured over it.
type learnWindow struct {
	end                                time.Time
	busySeconds, requests, utilization float64
}

// costWindow returns the window a worker version's cost is learned from:
// the one ending a step before the settled window, when steadyWindow finds
// it steady. That one's later neighbour is the settled window, where the
// settled window's own is the fresh one, which may still lack its newest
// scrapes: a load step that began in the last second of the settled window
// and is missing from the fresh one made the fresh window's requests look
// steady, and the settled window, which counted the step's first requests
// and not their busy time, was learned (0.88 s for a 1 s request in
// TestCostIsNotLearnedFromAStepAtTheSettledWindowsEnd; a closed loop in CI
// learned 0.93 s, the figure such a window gives, and sized 7 instances
// for a load that needed 8). Learning a step later costs
// nothing but that step: the cost changes slowly by design (CostHalfLife).
func costWindow(m tsdb.VersionMetrics, window, step time.Duration) (learnWindow, bool) {
	end := m.SettledAt.Add(-step)
	w := learnWindow{end: end, busySeconds: tsdb.ValueAt(m.BusyCounts, end), requests: tsdb.ValueAt(m.RequestCounts, end),
		utilization: tsdb.ValueAt(m.Utilization, end)}
	if !finite(w.busySeconds) || !finite(w.requests) || !finite(w.utilization) || !steadyWindow(m, end, window, step) {
		return learnWindow{}, false
	}
	return w, true
}

// steadyWindow reports whether the window ending at end can measure the
// cost of a request. Besides what Cost.Learn rules out (a saturated
// window), it needs the same number of workers from the window's start to
// the newest step, since a worker joining or leaving mid-window makes
// utilization, and with it the saturation test, read the wrong capacity;
// and neither the window nor any settled one after it nor the fresh
// window saturated, since after a load step requests queue a window or
// two before utilization reads saturated, and a window that counts
// queued requests without their busy time would teach a cost far too
// low, exactly when demand is sized from it. For the same reason the
// request rate must be steady, within steadyRequests, from the step
// before the window to the step after it: a window in which the load
// stepped up counts requests that queued for the next one even while its
// average utilization reads low. Nor may a window that ended inside it,
// or where it begins, have saturated: at a saturated window's end every
// worker thread is in the middle of a request counted before, whose
// remaining busy seconds fall into the next window, and a window longer
// than the step (70 s every 60 s by default, 8 s every 4 s in the closed
// loop) also averages in the end of the saturated one itself. The closed
// loop learned 1.286 s and 1.116 s for 1 s requests from such windows,
// the second one two steps after the last saturated window.
func steadyWindow(m tsdb.VersionMetrics, end time.Time, window, step time.Duration) bool {
	// From the window's start on (a window ending there ended where this
	// one begins), none saturated; and one settled at or after its end.
	from := end.Add(-window)
	settled := false
	for _, u := range m.Utilization {
		if u.At.Before(from) {
			continue
		}
		if !(u.Value < policy.SaturatedUtilization) {
			return false
		}
		settled = settled || !u.At.Before(end)
	}
	if !settled {
		return false
	}
	lo, hi := math.Inf(1), 0.0
	for _, at := range []time.Time{end.Add(-step), end, end.Add(step)} {
		v := tsdb.ValueAt(m.RequestCounts, at)
		if !finite(v) || v <= 0 {
			return false
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if hi > steadyRequests*lo {
		return false
	}
	if finite(m.FreshUtilization) && m.FreshUtilization >= policy.SaturatedUtilization {
		return false
	}
	count, seen := 0.0, false
	for _, c := range m.InstanceCounts {
		if c.At.Before(from) {
			continue
		}
		if !finite(c.Value) || (seen && c.Value != count) {
			return false
		}
		count, seen = c.Value, true
	}
	return seen && count > 0
}

// steadyRequests is how far the requests of neighbouring windows may
// differ for the middle one to measure cost: wide enough for the noise of
// a few dozen requests per window, far below a load step's jump.
const steadyRequests = 1.5

func storedCost(c store.Cost) policy.Cost {
	return policy.Cost{SecondsPerRequest: c.SecondsPerRequest, Weight: c.Weight, UpdatedAt: c.WindowEnd}
}

// costRefreshWindows is how many windows a stored cost may lag behind the
// learned one while it only drifts within costDrift. Writing every window
// would cost one Cassandra write per busy version per cycle, the most
// numerous write of a large fleet, for changes below the estimate's noise.
const (
	costRefreshWindows = 10
	costDrift          = 0.01
)

// costWorthSaving reports whether the learned cost should replace the
// stored one: always while the stored one is not yet usable, and after
// that when it moved by more than costDrift or has not been refreshed for
// costRefreshWindows steps. Skipping a save is safe: the next cycle folds
// its window into the stored estimate, so a window is at worst dropped,
// never counted twice.
func costWorthSaving(stored, learned policy.Cost, step time.Duration) bool {
	switch {
	case !learned.UpdatedAt.After(stored.UpdatedAt):
		return false // nothing new was folded in
	case !stored.Known():
		return true
	case math.Abs(learned.SecondsPerRequest-stored.SecondsPerRequest) > costDrift*stored.SecondsPerRequest:
		return true
	}
	return learned.UpdatedAt.Sub(stored.UpdatedAt) >= costRefreshWindows*step
}

// input builds the policy's view of one version. Settled samples are the
// only ones scale-down and scale to zero may act on; the fresh sample and
// the demand estimate are passed apart so that the policy can let them
// raise a count and nothing else.
func (h *Handler) input(now time.Time, v store.ActiveVersion, st store.ScalingState, o observation, recent []policy.Recommendation) policy.Input {
	in := policy.Input{
		Now:                now,
		LastRequested:      lastTarget(st),
		LastRequestedKnown: st.HasLastRequested,
		MetricsOK:          true,
		Recent:             recent,
		Source:             sourceWorker,
	}
	if o.source != "" {
		in.Source = string(o.source)
	}
	m := o.metrics
	if atZero(st, o) {
		in.Current, in.CurrentKnown = 0, true
	}
	if o.known {
		if m.InstancesKnown {
			in.Current, in.CurrentKnown = m.Instances, true
		}
		in.Utilization = toSamples(m.Utilization)
		if finite(m.FreshUtilization) {
			in.Fresh = policy.Sample{At: m.FreshAt, Value: m.FreshUtilization}
		}
		// Requests are counted when routed, queued ones included, so
		// their rate shows demand that utilization, capped at 100 %,
		// cannot. The fresh rate is the newest; the settled step's rate
		// stands in when the fresh window had no answer.
		rate := m.FreshRequestRate
		if !finite(rate) && finite(m.Requests) {
			rate = m.RequestRate
		}
		// Before the cost is learned, the few requests seen size a step
		// (policy.EarlyCost): a new version's first real load often is one.
		in.Demand = policy.DemandFromRequests(policy.EarlyCost(o.cost), rate, m.ThreadsPerInstance)
		in.Backlog = o.backlog
		if o.demand != nil {
			in.Demand = *o.demand
		}
	}
	in.LastInvokedAt, in.InvocationsSince = invocationEvidence(now, h.d.Settings.Scale, v, st, m)
	o.keepAlive.applyTo(&in)
	return in
}

// atZero reports whether a worker version is known to run no instance
// although no series says so: a worker at zero has no series at all, so
// its count is read from what NVCF last accepted, 0 (and did not clamp
// up to a min), with no worker series in the answer. A count of 0 read
// this way can only lead up (scale from zero, pre-warm) or to holding at
// zero: nothing below zero exists to scale down to.
func atZero(st store.ScalingState, o observation) bool {
	if o.source != "" && o.source != tsdb.SourceWorker {
		return false
	}
	return st.HasLastRequested && st.LastRequested == 0 && (!st.HasAppliedTarget || st.AppliedTarget == 0) && !o.metrics.InstancesKnown
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// invocationEvidence combines what the TSDB saw inside its lookback with
// what discovery recorded in Cassandra, returning the newest invocation and
// since when the absence of invocations is known.
//
// An invoked row says discovery saw invocations within its lookback when it
// wrote the row, so the row time minus the lookback is a safe lower bound
// for the last invocation. A missing invoked row says no invocation for the
// row TTL, but only over the span this function has watched the version: a
// fresh install or a wiped keyspace is no evidence of idleness.
func invocationEvidence(now time.Time, s config.Scale, v store.ActiveVersion, st store.ScalingState, m tsdb.VersionMetrics) (last, since time.Time) {
	last = m.LastInvokedAt
	if !v.InvokedAt.IsZero() {
		if fromRow := v.InvokedAt.Add(-s.Lookback); fromRow.After(last) {
			last = fromRow
		}
	}
	// The TSDB's lookback alone is no evidence of idleness: a version whose
	// series are younger than the lookback (just deployed, or a counter
	// whose first sample rate() cannot see: a new series' first sample has
	// nothing before it to count from, on either server) shows no
	// invocation there while it is being invoked. Only the span this function has watched the version
	// counts, and no further back than an invoked row outlives its last
	// invocation (ACTIVE_ROW_TTL). Counting the lookback took a busy new
	// gateway version to zero on its first cycle whenever the lookback was
	// longer than the idle timeout.
	watched := st.WatchSince
	if watched.IsZero() || watched.After(now) {
		watched = now
	}
	since = now.Add(-s.RowTTL)
	if watched.After(since) {
		since = watched
	}
	return last, since
}
