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
	// demand, when set, is the source's own demand estimate (Little's law
	// for the control plane), used instead of requests x cost.
	demand *policy.Demand
}

// observe completes one version's metrics with what is learned from them:
// its cost per request, folded from the settled window and stored.
func (h *Handler) observe(ctx context.Context, log *slog.Logger, now time.Time, v store.ActiveVersion, st store.ScalingState, m tsdb.VersionMetrics, known bool) observation {
	o := observation{metrics: m, known: known, cost: storedCost(st.Cost)}
	if !known || m.SettledAt.IsZero() {
		return o
	}
	// Consecutive windows overlap when the rate window is longer than the
	// step (70 s windows every 60 s; 8 s every 4 s in the accelerated
	// tests): fold only the share not yet folded, so that the evidence
	// counts each request about once. The ratio, the cost, is unchanged.
	share := 1.0
	if !o.cost.UpdatedAt.IsZero() {
		share = min(1, m.SettledAt.Sub(o.cost.UpdatedAt).Seconds()/h.d.Settings.Scale.Window.Seconds())
	}
	learned := o.cost.Learn(m.SettledAt, share*m.BusySeconds, share*m.Requests, m.SettledUtilization)
	if costWorthSaving(o.cost, learned, h.d.Settings.Scale.Step) {
		c := store.Cost{SecondsPerRequest: learned.SecondsPerRequest, Weight: learned.Weight, WindowEnd: learned.UpdatedAt}
		if err := h.d.Store.SaveCost(ctx, v.VersionKey, c, h.d.Settings.Scale.StateTTL); err != nil {
			// The estimate is still used this cycle; the next cycle folds
			// its own window into the older stored one, losing one
			// observation, never counting one twice.
			log.Warn("save learned cost", "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID, "error", err.Error())
		}
	}
	o.cost = learned
	return o
}

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
		LastRequested:      st.LastRequested,
		LastRequestedKnown: st.HasLastRequested,
		MetricsOK:          true,
		Recent:             recent,
		Source:             sourceWorker,
	}
	if o.source != "" {
		in.Source = string(o.source)
	}
	m := o.metrics
	if o.known {
		in.Current, in.CurrentKnown = m.Instances, m.InstancesKnown
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
		in.Demand = policy.DemandFromRequests(o.cost, rate, m.ThreadsPerInstance)
		if o.demand != nil {
			in.Demand = *o.demand
		}
	}
	in.LastInvokedAt, in.InvocationsSince = invocationEvidence(now, h.d.Settings.Scale, v, st, m)
	return in
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
	since = now.Add(-s.Lookback)
	if v.InvokedAt.IsZero() {
		watched := st.WatchSince
		if watched.IsZero() {
			watched = now
		}
		evidence := now.Add(-s.RowTTL)
		if watched.After(evidence) {
			evidence = watched
		}
		if evidence.Before(since) {
			since = evidence
		}
	}
	return last, since
}
