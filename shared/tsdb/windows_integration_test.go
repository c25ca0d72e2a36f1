package tsdb

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/tsdb/tsdbtest"
)

// TestSettledAndFreshWindowsAgainstRealTSDBs ingests versions whose
// numbers are known exactly (scrapes on the window boundaries, so both
// servers' rate() spans the whole window) and checks the settled
// window the cost is learned from, the threads per instance, and the
// fresh, partial window ending at the query time:
//
//   - steady: 2 instances of 4 threads, each instance 2 threads busy
//     (50 %), 4 requests/s for the version (1 busy second per request);
//   - saturated: 1 instance of 1 thread, 100 % busy, 3 requests/s routed
//     (queued ones included);
//   - step: 1 instance of 1 thread at 0.5 requests/s and 50 % until t0,
//     then 5 requests/s and 100 %: only the fresh window (ending 30 s
//     after t0) sees the step; the settled one does not.
func TestSettledAndFreshWindowsAgainstRealTSDBs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			run := fmt.Sprintf("win%d", time.Now().UnixNano())
			t0 := time.Now().Truncate(time.Minute).Add(-time.Minute)
			now := t0.Add(30 * time.Second)
			start := t0.Add(-15 * time.Minute)
			labels := func(name, vid, inst string) map[string]string { return versionLabels(run, name, vid, inst) }
			perSecond := func(r float64) func(time.Time) float64 { return tsdbtest.Counter([]time.Time{start}, []float64{r}) }
			// A counter growing at before/s until t0 and after/s from then.
			stepped := func(before, after float64) func(time.Time) float64 {
				return tsdbtest.Counter([]time.Time{start, t0}, []float64{before, after})
			}
			counterSeries := func(labels map[string]string, start, end time.Time, value func(time.Time) float64) tsdbtest.Series {
				return tsdbtest.Scrape(labels, start, end, 15*time.Second, value)
			}
			var series []tsdbtest.Series
			for _, inst := range []string{"steady-w1", "steady-w2"} {
				series = append(series,
					counterSeries(labels(MetricBusySeconds, "steady", inst), start, now, perSecond(2)),
					counterSeries(labels(MetricThreadCount, "steady", inst), start, now, constantValue(4)))
			}
			series = append(series,
				counterSeries(labels(MetricRequestsTotal, "steady", ""), start, now, perSecond(4)),
				counterSeries(labels(MetricBusySeconds, "saturated", "saturated-w1"), start, now, perSecond(1)),
				counterSeries(labels(MetricThreadCount, "saturated", "saturated-w1"), start, now, constantValue(1)),
				counterSeries(labels(MetricRequestsTotal, "saturated", ""), start, now, perSecond(3)),
				counterSeries(labels(MetricBusySeconds, "step", "step-w1"), start, now, stepped(0.5, 1)),
				counterSeries(labels(MetricThreadCount, "step", "step-w1"), start, now, constantValue(1)),
				counterSeries(labels(MetricRequestsTotal, "step", ""), start, now, stepped(0.5, 5)),
			)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			require.NoError(t, b.ingest(ctx, url, series))

			c, err := New(Config{URL: url})
			require.NoError(t, err)
			versions := []FunctionVersion{
				{FunctionID: "f-steady", FunctionVersionID: "steady"},
				{FunctionID: "f-saturated", FunctionVersionID: "saturated"},
				{FunctionID: "f-step", FunctionVersionID: "step"},
				{FunctionID: "f-none", FunctionVersionID: "none"},
			}
			opts := MetricsOptions{Window: time.Minute, Step: time.Minute, Lookback: 10 * time.Minute,
				Filter: LabelFilter{Name: "test_run", Value: run}}
			var got map[FunctionVersion]VersionMetrics
			require.Eventually(t, func() bool {
				got, err = c.BucketMetrics(ctx, versions, now, opts)
				return err == nil && len(got) == 3 && !math.IsNaN(got[versions[2]].FreshRequestRate)
			}, 30*time.Second, 500*time.Millisecond, "metrics of 3 versions (err %v): %+v", err, got)
			q0 := c.Queries()
			_, err = c.BucketMetrics(ctx, versions, now, opts)
			require.NoError(t, err)
			require.Equal(t, int64(3), c.Queries()-q0, "three queries for the bucket")

			settled := now.Add(-time.Minute) // the step before the newest (now)
			for _, tc := range []struct {
				v                                  FunctionVersion
				util, busy, reqs, threads          float64
				freshUtil, freshRate, latestSample float64
			}{
				{versions[0], 50, 240, 240, 4, 50, 4, 50},
				{versions[1], 100, 60, 180, 1, 100, 3, 100},
				// Before t0 the step version is at 50 % with 0.5 req/s; the
				// fresh window is 30 s of that and 30 s at 100 % and 5 req/s.
				{versions[2], 50, 30, 30, 1, 75, 2.75, 50},
			} {
				m := got[tc.v]
				id := tc.v.FunctionVersionID
				require.True(t, settled.Equal(m.SettledAt), "%s settled at %s", id, m.SettledAt)
				require.InDelta(t, tc.util, m.SettledUtilization, 0.01, "%s settled utilization", id)
				require.InDelta(t, tc.busy, m.BusySeconds, 0.01, "%s busy seconds", id)
				require.InDelta(t, tc.reqs, m.Requests, 0.01, "%s requests", id)
				require.InDelta(t, tc.threads, m.ThreadsPerInstance, 0.001, "%s threads per instance", id)
				require.True(t, now.Equal(m.FreshAt), "%s fresh at %s", id, m.FreshAt)
				require.InDelta(t, tc.freshUtil, m.FreshUtilization, 0.01, "%s fresh utilization", id)
				require.InDelta(t, tc.freshRate, m.FreshRequestRate, 0.001, "%s fresh request rate", id)
				// The settled samples end at the settled step, 30 s before
				// t0: the step is in none of them.
				require.True(t, settled.Equal(m.Utilization[len(m.Utilization)-1].At), id)
				require.InDelta(t, tc.latestSample, m.Utilization[len(m.Utilization)-1].Value, 0.01, "%s latest settled sample", id)
			}
			_, ok := got[versions[3]]
			require.False(t, ok, "a version without data has no metrics at all, not zeros")
		})
	}
}
