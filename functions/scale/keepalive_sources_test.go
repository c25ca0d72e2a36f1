package scale

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
	"function/shared/tsdb/tsdbtest"
)

// A control-plane (bring-your-own-cluster) version and a gateway function
// called every 10 minutes learn keep-alive from their own series on the
// real VictoriaMetrics and Cassandra, decided every minute as production
// does: 3 requests 30 s into each burst's minute, and instances serving
// from 2 to 7 minutes after it. Under the fixed 5-minute timeout each
// goes to zero and comes back from zero, which measures its cold start
// (from the write at 1:30 to the step at 2:00 that shows an instance
// serving: 30 s); each 9-minute gap (from the burst's step to the last
// quiet step before the next) is folded once, a replayed cycle folds
// nothing, and once eight gaps are known the version is released early
// and pre-warmed before its next burst, the decision saying why.
func TestLearnedKeepAliveForControlPlaneAndGatewaySources(t *testing.T) {
	f, run := sourcesFixture(t)
	minuteSettings(f)
	f.settings.Scale.KeepAlive, f.settings.Scale.IdleTimeout = string(policy.KeepAliveLearned), 5*time.Minute
	// The documented percentiles, the ones asserted below.
	f.settings.Scale.KeepAlivePercentile, f.settings.Scale.PrewarmPercentile = 99, 5
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-95 * time.Minute)
	burst := func(k int) time.Time { return t0.Add(time.Duration(k) * 10 * time.Minute) }
	from, end := t0.Add(-10*time.Minute), time.Now()
	requests := func(t time.Time) float64 {
		n := 0.0
		for k := 0; k < 10; k++ {
			if !t.Before(burst(k).Add(30 * time.Second)) {
				n += 3
			}
		}
		return n
	}
	serving := func(t time.Time) float64 {
		for k := 0; k < 10; k++ {
			if !t.Before(burst(k).Add(2*time.Minute)) && t.Before(burst(k).Add(7*time.Minute)) {
				return 1
			}
		}
		return 0
	}
	constant := func(v float64) func(time.Time) float64 { return func(time.Time) float64 { return v } }
	labels := func(name string, kv ...string) map[string]string {
		m := map[string]string{"__name__": name, "test_env": run}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	scrape := func(l map[string]string, value func(time.Time) float64) tsdbtest.Series {
		return tsdbtest.Scrape(l, from, end, 15*time.Second, value)
	}
	byoc, gw := run+"-kabyoc", run+"-kagw"
	cid := []string{"function_id", byoc, "function_version_id", "v1", "nca_id", "nca"}
	gid := []string{"function_id", gw, "function_version_id", "a", "nca_id", "nca-g"}
	f.ingest(t, []tsdbtest.Series{
		scrape(labels(tsdb.MetricRequestsTotal, cid...), requests),
		scrape(labels(tsdb.MetricInstancesCurrent, cid...), serving),
		scrape(labels(tsdb.MetricConcurrency, cid...), constant(1)),
		scrape(labels(tsdb.MetricRequestLatencySum, cid...), constant(0)),
		scrape(labels(tsdb.MetricGatewayRequests, "function_id", gw), requests),
		scrape(labels(tsdb.MetricGatewayDurationSum, "function_id", gw), constant(0)),
		scrape(labels(tsdb.MetricInstancesCurrent, gid...), serving),
		scrape(labels(tsdb.MetricConcurrency, gid...), constant(1)),
		scrape(labels(tsdb.MetricFunctionInfo, gid...), constant(1)),
	})
	// Rows as discovery writes them for versions it saw running: not
	// "invoked" (that would count as an invocation at the real now).
	cpRow, gwRow := row(byoc, "v1", "nca", "control_plane"), row(gw, "a", "nca-g", "gateway")
	cpRow.Invoked, gwRow.Invoked = false, false
	f.register(t, cpRow, gwRow)
	cpKey, gwKey := cpRow.VersionKey, gwRow.VersionKey
	ctx := context.Background()
	keepAliveOf := func(key store.VersionKey) store.KeepAlive {
		st, err := f.store.ReadState(ctx, key)
		require.NoError(t, err)
		return st.KeepAlive
	}

	// Every minute, 30 s past it, up to the ninth burst's end.
	at := func(k int, m time.Duration) time.Time { return burst(k).Add(m*time.Minute + 30*time.Second) }
	for now := at(0, 1); now.Before(at(8, 3)); now = now.Add(time.Minute) {
		f.decideAt(t, now)
	}
	for _, key := range []store.VersionKey{cpKey, gwKey} {
		k := keepAliveOf(key)
		h := histogramOf(t, k)
		require.InDelta(t, 6.59, h.Gaps(), 0.01, "%s: eight 9-minute gaps, decayed per gap: %+v", key, k)
		p5, ok := h.Percentile(0.05)
		require.True(t, ok)
		require.Equal(t, 9*time.Minute+3*time.Second, p5.Round(time.Second), "%s: every gap in the 9-minute bin", key)
		require.Equal(t, burst(8).Add(time.Minute), k.FoldedTo, "%s: the ninth burst's gap is folded", key)
		require.Equal(t, burst(7).Add(time.Minute), k.BurstEnd, "%s: the ninth burst's end is not known until a quiet step after it settles", key)
		require.InDelta(t, 30.0, k.ColdStartSeconds, 1e-9, "%s: from the write at 1:30 to the step at 2:00", key)
		require.Greater(t, k.ColdStartWeight, 2.0, "%s: one cold start per burst under the fixed timeout", key)

		// A replayed cycle (a late event, a second replica) folds nothing.
		f.decideAt(t, at(8, 2))
		require.Equal(t, k.Histogram, keepAliveOf(key).Histogram, "%s", key)
	}

	// Two minutes quiet after the ninth burst: released until the
	// pre-warm, a cold start (30 s) before 90 % of the 5th-percentile gap.
	r := f.decideAt(t, at(8, 3))
	for _, key := range []store.VersionKey{cpKey, gwKey} {
		o := outcomeOf(t, r, key)
		require.Equal(t, string(policy.ReasonScaleToZeroLearned), o.Reason, "%s: %+v", key, o)
		require.Equal(t, 0, o.Desired, "%s: %+v", key, o)
		require.Equal(t, "written", o.Action, "%s: %+v", key, o)
		require.Contains(t, o.Detail, "last invoked 2m30s ago, released until the pre-warm at 7m39s", "%s", key)
		require.Contains(t, o.Detail, "p99=9m59s of 6.6 gaps, 0.0 beyond 4h0m0s, cold start 30s; per gap learned 3.5 idle min 0.00 cold, fixed 5.0 idle min 1.00 cold", "%s", key)
	}
	for now := at(8, 4); now.Before(at(8, 8)); now = now.Add(time.Minute) {
		f.decideAt(t, now)
	}
	// At zero (the instances are gone from 7:00): the pre-warm is not due
	// at 7m30s, and is at 8m30s, a minute before the next burst.
	r = f.decideAt(t, at(8, 8))
	for _, key := range []store.VersionKey{cpKey, gwKey} {
		o := outcomeOf(t, r, key)
		require.Equal(t, string(policy.ReasonHoldAtZero), o.Reason, "%s: %+v", key, o)
		require.Contains(t, o.Detail, "at zero, last invoked 7m30s ago: learned keep-alive waits", "%s", key)
	}
	r = f.decideAt(t, at(8, 9))
	for _, key := range []store.VersionKey{cpKey, gwKey} {
		o := outcomeOf(t, r, key)
		require.Equal(t, string(policy.ReasonPrewarm), o.Reason, "%s: %+v", key, o)
		require.Equal(t, 1, o.Desired, "%s: %+v", key, o)
		require.Equal(t, "written", o.Action, "%s: %+v", key, o)
		require.Contains(t, o.Detail, "at zero, last invoked 8m30s ago: pre-warm due at 7m39s", "%s", key)
		k := keepAliveOf(key)
		require.Equal(t, at(8, 9), k.PrewarmAt, "%s: the pre-warm is marked", key)
		require.Equal(t, burst(8).Add(time.Minute), k.PrewarmFor, "%s: counted from the ninth burst", key)
		require.Equal(t, at(8, 9), k.ColdFrom, "%s: its cold start is measured", key)
		got, _ := f.sim.Desired(key.FunctionID, key.FunctionVersionID)
		require.Equal(t, 1, got, "%s", key)
	}
}
