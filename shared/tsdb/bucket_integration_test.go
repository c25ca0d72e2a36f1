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

// TestBucketMetricsAreTheirPromQLDefinitions holds every number
// BucketMetrics works out from the components it reads (busy seconds'
// rate, the workers per thread count, the request rate) to the PromQL
// expression that defines it, evaluated by the same server:
// utilization per step, the instance count per step and at the settled
// step, threads per instance, the settled window's busy seconds, requests
// and utilization, the fresh window's utilization and request rate. The versions are the
// awkward ones: workers with different thread counts (weighted by
// threads, not averaged per worker), a worker that starts mid-lookback
// (the count changes between steps), thread counts without busy seconds
// and busy seconds without thread counts (no utilization either way), the
// older request counter only. The window quantities are defined as rate
// times the window: what the reference's increase is on Prometheus, and
// what it is not on VictoriaMetrics (TestWindowReadsDoNotDependOnTheScrapePhase).
func TestBucketMetricsAreTheirPromQLDefinitions(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			run := fmt.Sprintf("def%d", time.Now().UnixNano())
			now := time.Now().Add(-time.Minute).Truncate(time.Second)
			start := now.Add(-15 * time.Minute)
			late := now.Add(-4*time.Minute - 20*time.Second)
			labels := func(name, vid, inst string) map[string]string { return versionLabels(run, name, vid, inst) }
			scrape := func(l map[string]string, from time.Time, value func(time.Time) float64) tsdbtest.Series {
				return tsdbtest.Scrape(l, from, now, 15*time.Second, value)
			}
			// A counter with a slope that changes every 100 s, so no two
			// steps see the same increase.
			wobbly := func(base float64) func(time.Time) float64 {
				var steps []time.Time
				var rates []float64
				for i, at := 0, start; at.Before(now); i, at = i+1, at.Add(100*time.Second) {
					steps, rates = append(steps, at), append(rates, base*(1+0.3*float64(i%4)))
				}
				return tsdbtest.Counter(steps, rates)
			}
			series := []tsdbtest.Series{
				scrape(labels(MetricBusySeconds, "mixed", "mixed-w1"), start, wobbly(3)),
				scrape(labels(MetricThreadCount, "mixed", "mixed-w1"), start, constantValue(4)),
				scrape(labels(MetricBusySeconds, "mixed", "mixed-w2"), start, wobbly(0.5)),
				scrape(labels(MetricThreadCount, "mixed", "mixed-w2"), start, constantValue(1)),
				scrape(labels(MetricRequestsTotal, "mixed", ""), start, wobbly(5)),
				scrape(labels(MetricBusySeconds, "late", "late-w1"), start, wobbly(1)),
				scrape(labels(MetricThreadCount, "late", "late-w1"), start, constantValue(2)),
				scrape(labels(MetricBusySeconds, "late", "late-w2"), late, wobbly(1.5)),
				scrape(labels(MetricThreadCount, "late", "late-w2"), late, constantValue(2)),
				scrape(labels(MetricRequests, "late", ""), start, wobbly(2)),
				scrape(labels(MetricThreadCount, "threadsonly", "t-w1"), start, constantValue(3)),
				scrape(labels(MetricBusySeconds, "busyonly", "b-w1"), start, wobbly(1)),
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			require.NoError(t, b.ingest(ctx, url, series))

			c, err := New(Config{URL: url})
			require.NoError(t, err)
			versions := []FunctionVersion{
				{FunctionID: "f-mixed", FunctionVersionID: "mixed"}, {FunctionID: "f-late", FunctionVersionID: "late"},
				{FunctionID: "f-threadsonly", FunctionVersionID: "threadsonly"}, {FunctionID: "f-busyonly", FunctionVersionID: "busyonly"},
				{FunctionID: "f-none", FunctionVersionID: "none"},
			}
			o := MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute,
				Filter: LabelFilter{Name: "test_run", Value: run}}
			var got map[FunctionVersion]VersionMetrics
			require.Eventually(t, func() bool {
				got, err = c.BucketMetrics(ctx, versions, now, o)
				return err == nil && len(got) == 4 && len(got[versions[1]].InstanceCounts) == 10
			}, 30*time.Second, 500*time.Millisecond, "metrics of 4 versions (err %v): %+v", err, got)
			q0 := c.Queries()
			_, err = c.BucketMetrics(ctx, versions, now, o)
			require.NoError(t, err)
			require.Equal(t, int64(3), c.Queries()-q0, "three queries for the bucket")

			g, err := o.endingAt(now)
			require.NoError(t, err)
			f := `test_run="` + run + `"`
			by := "by (function_id, function_version_id)"
			busyRate := fmt.Sprintf(`sum %s (rate(%s{%s}[70s]))`, by, MetricBusySeconds, f)
			busy := busyRate + ` * 70`
			util := fmt.Sprintf(`100 * %s / sum %s (%s{%s})`, busyRate, by, MetricThreadCount, f)
			count := fmt.Sprintf(`count %s (%s{%s})`, by, MetricThreadCount, f)
			avg := fmt.Sprintf(`avg %s (%s{%s})`, by, MetricThreadCount, f)
			reqRate := fmt.Sprintf(`(sum %s (rate(%s{%s}[70s])) or sum %s (rate(%s{%s}[70s])))`,
				by, MetricRequestsTotal, f, by, MetricRequests, f)
			reqs := reqRate + ` * 70`
			byVersion := func(ss []Series) map[string][]Sample {
				out := map[string][]Sample{}
				for _, s := range ss {
					out[s.Labels[labelFunctionVersion]] = s.Samples
				}
				return out
			}
			ranged := func(q string) map[string][]Sample {
				ss, _, err := c.QueryRange(ctx, q, g.start, g.end, g.step)
				require.NoError(t, err, q)
				return byVersion(ss)
			}
			instant := func(q string, at time.Time) map[string]float64 {
				ss, _, err := c.Query(ctx, q, at)
				require.NoError(t, err, q)
				out := map[string]float64{}
				for v, s := range byVersion(ss) {
					out[v] = lastValue(s)
				}
				return out
			}
			wantUtil, wantCount, wantReqs := ranged(util), ranged(count), ranged(reqs)
			wantBusy, wantAvg, wantSettledUtil := instant(busy, g.settled), instant(avg, g.settled), instant(util, g.settled)
			wantSettledReqs := instant(reqs, g.settled)
			// The fresh window, the grid's newest point, at now.
			wantFreshUtil, wantFreshRate := instant(util, g.end), instant(reqRate, g.end)
			require.Len(t, wantUtil, 2, "utilization for the versions with both series: %v", wantUtil)
			require.Len(t, wantCount["late"], 10)
			require.NotEqual(t, wantCount["late"][0].Value, wantCount["late"][9].Value, "the late worker changes the count")

			same := func(what, id string, want, got []Sample) {
				require.Len(t, got, len(want), "%s %s: %v against %v", id, what, got, want)
				for i := range want {
					require.True(t, want[i].At.Equal(got[i].At), "%s %s step %d at %s, want %s", id, what, i, got[i].At, want[i].At)
					require.InDelta(t, want[i].Value, got[i].Value, 1e-9, "%s %s step %d", id, what, i)
				}
			}
			orNaN := func(m map[string]float64, id string) float64 {
				if v, ok := m[id]; ok {
					return v
				}
				return math.NaN()
			}
			sameValue := func(what, id string, want, got float64) {
				if math.IsNaN(want) {
					require.True(t, math.IsNaN(got), "%s %s: %v, want unknown", id, what, got)
					return
				}
				require.InDelta(t, want, got, 1e-9, "%s %s", id, what)
			}
			for _, v := range versions[:4] {
				id := v.FunctionVersionID
				m, ok := got[v]
				require.True(t, ok, id)
				// The settled samples are the grid's points but the newest,
				// which is the fresh window.
				settledUtil := wantUtil[id]
				if n := len(settledUtil); n > 0 && settledUtil[n-1].At.Equal(g.end) {
					settledUtil = settledUtil[:n-1]
				}
				same("utilization", id, settledUtil, m.Utilization)
				sameValue("fresh utilization", id, orNaN(wantFreshUtil, id), m.FreshUtilization)
				require.True(t, g.end.Equal(m.FreshAt), "%s fresh at %s", id, m.FreshAt)
				same("request counts", id, wantReqs[id], m.RequestCounts)
				sameValue("requests", id, orNaN(wantSettledReqs, id), m.Requests)
				sameValue("fresh request rate", id, orNaN(wantFreshRate, id), m.FreshRequestRate)
				same("instance counts", id, wantCount[id], m.InstanceCounts)
				settledCount := ValueAt(wantCount[id], g.settled)
				require.Equal(t, !math.IsNaN(settledCount), m.InstancesKnown, "%s instances known", id)
				if m.InstancesKnown {
					require.Equal(t, int(settledCount), m.Instances, "%s instances", id)
				}
				sameValue("busy seconds", id, orNaN(wantBusy, id), m.BusySeconds)
				sameValue("threads per instance", id, orNaN(wantAvg, id), m.ThreadsPerInstance)
				sameValue("settled utilization", id, orNaN(wantSettledUtil, id), m.SettledUtilization)
			}
			require.InDelta(t, 2.5, got[versions[0]].ThreadsPerInstance, 1e-9, "(4 + 1) threads / 2 workers")
			require.Empty(t, got[versions[2]].Utilization, "thread counts without busy seconds: no utilization")
			require.True(t, got[versions[2]].InstancesKnown)
			require.Empty(t, got[versions[3]].Utilization, "busy seconds without thread counts: no utilization")
			require.False(t, got[versions[3]].InstancesKnown)
			require.False(t, math.IsNaN(got[versions[3]].BusySeconds))
			require.False(t, math.IsNaN(got[versions[1]].Requests), "the older request counter counts")
			require.False(t, math.IsNaN(got[versions[0]].FreshUtilization), "the fresh window is known")
			require.NotEmpty(t, wantFreshUtil, "the definitions have a fresh window to compare with")
			_, ok := got[versions[4]]
			require.False(t, ok, "a version without data has no metrics at all, not zeros")
		})
	}
}

// versionLabels are the labels of one of a test run's series of version
// vid (function f-vid); inst, when set, names the worker.
func versionLabels(run, name, vid, inst string) map[string]string {
	l := map[string]string{"__name__": name, "function_id": "f-" + vid, "function_version_id": vid, "nca_id": "nca", "test_run": run}
	if inst != "" {
		l["instance_id"] = inst
	}
	return l
}

// constantValue is a gauge that never changes.
func constantValue(v float64) func(time.Time) float64 { return func(time.Time) float64 { return v } }

// lastValue is an instant query's value, NaN when it returned no point.
func lastValue(samples []Sample) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	return samples[len(samples)-1].Value
}
