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

// TestWindowReadsDoNotDependOnTheScrapePhase reads steady counters
// scraped every 30 s through a 70 s window whose end falls at a different
// place among the scrapes for each version (0 to 29 s after one), on both
// servers, and wants the true numbers at every phase: 85 % busy, 2
// requests a second, 140 requests and 59.5 busy seconds per window.
// VictoriaMetrics' increase() does not extrapolate, so the reference's
// increase(x[70s]) / 70 read 109 % when the window ended 0-9 s after a
// scrape and 73 % at 10-29 s (60 or 90 s of counter), and a steady
// version flapped between hold and scale-up as now moved; rate() divides
// by the span of the samples it used, which no phase changes.
func TestWindowReadsDoNotDependOnTheScrapePhase(t *testing.T) {
	const (
		busyPerSecond = 0.85
		reqsPerSecond = 2.0
		window        = 70 * time.Second
		tolerance     = 0.03 // relative
	)
	phases := []int{0, 3, 9, 10, 11, 15, 20, 29}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			run := fmt.Sprintf("phase%d", time.Now().UnixNano())
			now := time.Now().Truncate(time.Second)
			// The scale function's grid ends at now, the other sources'
			// at now rounded down to the step: both fall on the same place
			// among each version's scrapes, which start off seconds after a
			// whole minute.
			if now.Sub(now.Truncate(time.Minute)) < 30*time.Second {
				now = now.Truncate(time.Minute)
			} else {
				now = now.Truncate(time.Minute).Add(30 * time.Second)
			}
			start := now.Add(-15 * time.Minute)
			var series []tsdbtest.Series
			var versions []FunctionVersion
			var functions []string
			for _, p := range phases {
				vid := fmt.Sprintf("p%02d", p)
				// The window ends p seconds after a scrape: scrapes at
				// now - p - 30k.
				first := start.Add(time.Duration(30-p) * time.Second)
				scrape := func(l map[string]string, value func(time.Time) float64) tsdbtest.Series {
					return tsdbtest.Scrape(l, first, now, 30*time.Second, value)
				}
				steady := func(r float64) func(time.Time) float64 { return tsdbtest.Counter([]time.Time{start}, []float64{r}) }
				gateway := map[string]string{"__name__": MetricGatewayRequests, "function_id": "g-" + vid, "test_run": run}
				series = append(series,
					scrape(versionLabels(run, MetricBusySeconds, vid, vid+"-w1"), steady(busyPerSecond)),
					scrape(versionLabels(run, MetricThreadCount, vid, vid+"-w1"), constantValue(1)),
					scrape(versionLabels(run, MetricRequestsTotal, vid, ""), steady(reqsPerSecond)),
					scrape(gateway, steady(reqsPerSecond)))
				versions = append(versions, FunctionVersion{FunctionID: "f-" + vid, FunctionVersionID: vid})
				functions = append(functions, "g-"+vid)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			require.NoError(t, b.ingest(ctx, url, series))

			c, err := New(Config{URL: url})
			require.NoError(t, err)
			o := MetricsOptions{Window: window, Step: time.Minute, Lookback: 10 * time.Minute,
				Filter: LabelFilter{Name: "test_run", Value: run}}
			var got map[FunctionVersion]VersionMetrics
			require.Eventually(t, func() bool {
				got, err = c.BucketMetrics(ctx, versions, now, o)
				return err == nil && len(got) == len(versions)
			}, 30*time.Second, 500*time.Millisecond, "metrics of %d versions (err %v)", len(versions), err)
			cp, err := c.ControlPlaneMetrics(ctx, versions, now, o)
			require.NoError(t, err)
			gw, err := c.GatewayMetrics(ctx, functions, now, o)
			require.NoError(t, err)

			near := func(want, got float64, what string, args ...any) {
				t.Helper()
				require.InEpsilon(t, want, got, tolerance, fmt.Sprintf(what, args...))
			}
			util, reqs, busy := 100*busyPerSecond, reqsPerSecond*window.Seconds(), busyPerSecond*window.Seconds()
			for i, v := range versions {
				id := v.FunctionVersionID
				m := got[v]
				near(util, m.FreshUtilization, "%s fresh utilization", id)
				near(util, m.SettledUtilization, "%s settled utilization", id)
				require.Len(t, m.Utilization, 9, id)
				for _, u := range m.Utilization {
					near(util, u.Value, "%s utilization at %s", id, u.At)
				}
				near(busy, m.BusySeconds, "%s busy seconds", id)
				near(reqs, m.Requests, "%s requests", id)
				near(reqsPerSecond, m.FreshRequestRate, "%s fresh request rate", id)
				near(reqsPerSecond, m.RequestRate, "%s request rate", id)
				require.Len(t, m.RequestCounts, 10, id)
				for _, r := range m.RequestCounts {
					near(reqs, r.Value, "%s requests at %s", id, r.At)
				}

				pm := cp[v]
				near(reqsPerSecond, pm.RequestRate, "%s control-plane request rate", id)
				require.Len(t, pm.RequestCounts, 10, id)
				for j, r := range pm.RequestCounts {
					near(reqs, r.Value, "%s control-plane requests at %s", id, r.At)
					near(reqsPerSecond, pm.RequestRates[j].Value, "%s control-plane request rate at %s", id, r.At)
				}

				gm := gw[functions[i]]
				near(reqsPerSecond, gm.RequestRate, "%s gateway request rate", functions[i])
				require.Len(t, gm.RequestCounts, 10, functions[i])
				for j, r := range gm.RequestCounts {
					near(reqs, r.Value, "%s gateway requests at %s", functions[i], r.At)
					near(reqsPerSecond, gm.RequestRates[j].Value, "%s gateway request rate at %s", functions[i], r.At)
				}
			}
		})
	}
}

// TestWindowReadsAtTheEdgesOfASeries reads, on both servers, the series a
// fleet has at its edges, where the window's rate has fewer samples than
// a steady counter gives it (all scraped every 30 s, 85 % busy, 70 s
// window):
//
//   - started: a worker whose only scrape so far is 10 s old (none
//     before it): rate() has nothing to count from, so its utilization is
//     unknown, never 0 (VictoriaMetrics' increase() counted its first
//     sample from zero: 12 %);
//   - reset: a worker that restarted 75 s before now, 15 s after a
//     scrape, its counter back at zero: the busy time between that scrape
//     and the restart is lost on both servers, and nothing reads
//     negative or more than the truth;
//   - stopped: a worker whose last scrape is 5 minutes old: unknown at
//     the settled and fresh windows, not 0;
//   - sparse: a worker scraped every 150 s, more than twice the window,
//     so that a window holds one scrape or none: VictoriaMetrics reads
//     each from the scrapes around it, Prometheus none (its rate needs
//     two in the window); what is read is the truth, what is not is
//     unknown, never 0.
func TestWindowReadsAtTheEdgesOfASeries(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			run := fmt.Sprintf("edges%d", time.Now().UnixNano())
			now := time.Now().Truncate(time.Minute).Add(-time.Minute)
			start := now.Add(-15 * time.Minute)
			steady := tsdbtest.Counter([]time.Time{start}, []float64{0.85})
			restart := now.Add(-75 * time.Second)
			reset := func(t time.Time) float64 {
				if t.After(restart) {
					return 0.85 * t.Sub(restart).Seconds()
				}
				return steady(t)
			}
			labels := func(name, vid string) map[string]string { return versionLabels(run, name, vid, vid+"-w1") }
			worker := func(vid string, from, to time.Time, every time.Duration, busy func(time.Time) float64) []tsdbtest.Series {
				return []tsdbtest.Series{
					tsdbtest.Scrape(labels(MetricBusySeconds, vid), from, to, every, busy),
					tsdbtest.Scrape(labels(MetricThreadCount, vid), from, to, every, constantValue(1)),
				}
			}
			var series []tsdbtest.Series
			series = append(series, worker("started", now.Add(-10*time.Second), now, 30*time.Second,
				tsdbtest.Counter([]time.Time{now.Add(-20 * time.Second)}, []float64{0.85}))...)
			series = append(series, worker("reset", start, now, 30*time.Second, reset)...)
			series = append(series, worker("stopped", start, now.Add(-5*time.Minute), 30*time.Second, steady)...)
			series = append(series, worker("sparse", start, now, 150*time.Second, steady)...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			require.NoError(t, b.ingest(ctx, url, series))

			c, err := New(Config{URL: url})
			require.NoError(t, err)
			versions := map[string]FunctionVersion{}
			var all []FunctionVersion
			for _, id := range []string{"started", "reset", "stopped", "sparse"} {
				versions[id] = FunctionVersion{FunctionID: "f-" + id, FunctionVersionID: id}
				all = append(all, versions[id])
			}
			o := MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute,
				Filter: LabelFilter{Name: "test_run", Value: run}}
			var got map[FunctionVersion]VersionMetrics
			require.Eventually(t, func() bool {
				got, err = c.BucketMetrics(ctx, all, now, o)
				return err == nil && len(got) == len(all)
			}, 30*time.Second, 500*time.Millisecond, "metrics of %d versions (err %v): %v", len(all), err, got)

			started := got[versions["started"]]
			require.True(t, math.IsNaN(started.FreshUtilization), "a single scrape: unknown, not %v", started.FreshUtilization)
			require.Empty(t, started.Utilization, "no settled step has the worker")
			require.True(t, math.IsNaN(started.BusySeconds), "busy seconds: unknown, not %v", started.BusySeconds)

			// The restart fell in the settled window (now - 130 s to now -
			// 60 s); VictoriaMetrics' fresh window counts from the scrape
			// before it too.
			rs := got[versions["reset"]]
			for what, u := range map[string]float64{"fresh": rs.FreshUtilization, "settled": rs.SettledUtilization} {
				require.False(t, math.IsNaN(u), "%s utilization across a reset is known", what)
				require.Greater(t, u, 0.0, "%s utilization across a reset", what)
				require.LessOrEqual(t, u, 85*1.03, "%s utilization across a reset: never more than the truth", what)
			}

			st := got[versions["stopped"]]
			require.True(t, math.IsNaN(st.FreshUtilization), "stopped: fresh %v", st.FreshUtilization)
			require.True(t, math.IsNaN(st.SettledUtilization), "stopped: settled %v", st.SettledUtilization)
			require.True(t, math.IsNaN(st.BusySeconds), "stopped: busy seconds %v", st.BusySeconds)
			require.NotEmpty(t, st.Utilization, "the lookback still holds the worker's older windows")
			require.False(t, st.Utilization[len(st.Utilization)-1].At.After(now.Add(-4*time.Minute)), "no window after the last scrape: %v", st.Utilization)

			sp := got[versions["sparse"]]
			for _, u := range append(sp.Utilization, Sample{At: now, Value: sp.FreshUtilization}) {
				if !math.IsNaN(u.Value) {
					require.InEpsilon(t, 85, u.Value, 0.03, "sparse utilization at %s", u.At)
				}
			}
		})
	}
}
