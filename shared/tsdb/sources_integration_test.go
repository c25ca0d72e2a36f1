package tsdb

import (
	"context"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/tsdb/tsdbtest"
)

// mixedFleet seeds all three kinds of function in two environments and
// returns what discovery must find per environment ("production",
// "staging"), as "function/version" -> "invoked evidence".
func mixedFleet(t *testing.T, b backend, now time.Time) (url, run string, want map[string]map[string]string) {
	url = b.url(t)
	run = fmt.Sprintf("mix%d", time.Now().UnixNano())
	extra := map[string]string{"test_run": run}
	with := func(env string) map[string]string {
		m := map[string]string{"test_run": run}
		switch env {
		case "production":
			m["environment"] = "prod"
		case "staging":
			m["environment"] = "stage"
		}
		return m
	}
	start := now.Add(-20 * time.Minute)
	series := tsdbtest.Generate([]tsdbtest.Worker{
		{FunctionID: "w-p", FunctionVersionID: "w-p-1", NcaID: "nca", Instances: 2, Utilization: 0.5, RequestsPerSecond: 2, Extra: with("production")},
		{FunctionID: "w-p", FunctionVersionID: "w-p-2", NcaID: "nca", Instances: 1, Utilization: 0.1, Extra: with("production")},
		// Invoked, no workers: a worker version at zero, no source evidence.
		{FunctionID: "w-z", FunctionVersionID: "w-z-1", NcaID: "nca", RequestsPerSecond: 1, Extra: with("production")},
		{FunctionID: "w-s", FunctionVersionID: "w-s-1", NcaID: "nca", Instances: 1, Utilization: 0.5, RequestsPerSecond: 1, Extra: with("staging")},
	}, start, now)
	series = append(series, tsdbtest.GenerateGateway([]tsdbtest.GatewayFunction{
		{FunctionID: "g-p", RequestsPerSecond: 4, InFlight: 3, Env: "production", Extra: extra, Versions: []tsdbtest.GatewayVersion{
			{ID: "g-p-1", NcaID: "nca-g", Instances: 1, Concurrency: 2},
			{ID: "g-p-2", NcaID: "nca-g", Instances: 2, Concurrency: 2},
			{ID: "g-p-3", NcaID: "nca-g", Instances: 0, Concurrency: 2},
		}},
		// Idle: its running version is found by its instances, the one at
		// zero is not found at all.
		{FunctionID: "g-idle", Env: "production", Extra: extra, Versions: []tsdbtest.GatewayVersion{
			{ID: "g-idle-1", NcaID: "nca-g", Instances: 1, Concurrency: 2},
			{ID: "g-idle-2", NcaID: "nca-g", Instances: 0, Concurrency: 2},
		}},
		// Invoked but nvcf_function_info lists nothing: found by instances.
		{FunctionID: "g-noinfo", RequestsPerSecond: 1, InFlight: 1, Env: "production", Extra: extra, Versions: []tsdbtest.GatewayVersion{
			{ID: "g-noinfo-1", NcaID: "nca-g", Instances: 1, Concurrency: 2, Unlisted: true},
		}},
		{FunctionID: "g-s", RequestsPerSecond: 1, InFlight: 1, Env: "staging", Extra: extra, Versions: []tsdbtest.GatewayVersion{
			{ID: "g-s-1", NcaID: "nca-g", Instances: 1, Concurrency: 1},
		}},
	}, start, now)...)
	series = append(series, tsdbtest.GenerateControlPlane([]tsdbtest.ControlPlaneVersion{
		{FunctionID: "b-p", FunctionVersionID: "b-p-1", NcaID: "nca-b", Instances: []float64{2, 3}, Concurrency: 4, InFlight: 5, RequestsPerSecond: 2, Env: "production", Extra: extra},
		// At zero and idle: 0/0 utilization, never discovered.
		{FunctionID: "b-p", FunctionVersionID: "b-p-0", NcaID: "nca-b", Instances: []float64{0}, Concurrency: 4, Env: "production", Extra: extra},
		{FunctionID: "b-s", FunctionVersionID: "b-s-1", NcaID: "nca-b", Instances: []float64{1}, Concurrency: 1, InFlight: 0.5, Env: "staging", Extra: extra},
	}, start, now)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, b.ingest(ctx, url, series))
	want = map[string]map[string]string{
		"production": {
			"w-p/w-p-1": "invoked worker", "w-p/w-p-2": "running worker", "w-z/w-z-1": "invoked ",
			"g-p/g-p-1": "invoked gateway", "g-p/g-p-2": "invoked gateway", "g-p/g-p-3": "invoked gateway",
			"g-idle/g-idle-1": "running gateway", "g-noinfo/g-noinfo-1": "running gateway",
			"b-p/b-p-1": "invoked control_plane",
		},
		"staging": {
			"w-s/w-s-1": "invoked worker", "g-s/g-s-1": "invoked gateway", "b-s/b-s-1": "running control_plane",
		},
	}
	return url, run, want
}

func describe(vs []ActiveVersion) map[string]string {
	out := map[string]string{}
	for _, v := range vs {
		kind := "running"
		if v.Invoked {
			kind = "invoked"
		}
		out[v.FunctionID+"/"+v.FunctionVersionID] = kind + " " + string(v.Evidence)
	}
	return out
}

func TestDiscoveryThroughAllThreeSourcesAgainstRealTSDBs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Second)
			url, run, want := mixedFleet(t, b, now)
			c, err := New(Config{URL: url})
			require.NoError(t, err)
			ctx := context.Background()
			extra := LabelFilter{Name: "test_run", Value: run}
			both := map[string]string{}
			for _, m := range want {
				for k, v := range m {
					both[k] = v
				}
			}
			for _, tc := range []struct {
				name string
				env  Environment
				want map[string]string
			}{
				{"production", EnvProduction, want["production"]},
				{"staging", EnvStaging, want["staging"]},
				{"ignore env", "", both},
			} {
				var got map[string]string
				q0 := c.Queries()
				require.Eventually(t, func() bool {
					q0 = c.Queries()
					vs, _, err := c.ActiveVersions(ctx, now, 10*time.Minute, Filters{Env: tc.env, Extra: extra})
					require.NoError(t, err)
					got = describe(vs)
					return len(got) == len(tc.want)
				}, 30*time.Second, 500*time.Millisecond, "%s: found %v", tc.name, got)
				require.Equal(t, tc.want, got, tc.name)
				require.Equal(t, int64(5), c.Queries()-q0, "a fixed number of queries per cycle")
			}
		})
	}
}

func TestControlPlaneAndGatewayMetricsAgainstRealTSDBs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Second)
			url, run, _ := mixedFleet(t, b, now)
			c, err := New(Config{URL: url})
			require.NoError(t, err)
			ctx := context.Background()
			opts := MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute,
				Filter: LabelFilter{Name: "test_run", Value: run}, Env: EnvProduction}

			// Control plane: two reporters at 2 and 3 average 2.5 instances;
			// 5 requests in flight over 2.5 x 4 slots is 50 %.
			byoc := FunctionVersion{FunctionID: "b-p", FunctionVersionID: "b-p-1", NcaID: "nca-b"}
			zero := FunctionVersion{FunctionID: "b-p", FunctionVersionID: "b-p-0", NcaID: "nca-b"}
			none := FunctionVersion{FunctionID: "b-p", FunctionVersionID: "no-data"}
			staging := FunctionVersion{FunctionID: "b-s", FunctionVersionID: "b-s-1"}
			var cp map[FunctionVersion]ControlPlaneMetrics
			q0 := c.Queries()
			require.Eventually(t, func() bool {
				q0 = c.Queries()
				cp, err = c.ControlPlaneMetrics(ctx, []FunctionVersion{byoc, zero, none, staging}, now, opts)
				require.NoError(t, err)
				return len(cp[byoc].Utilization) >= 5
			}, 30*time.Second, 500*time.Millisecond)
			require.Equal(t, int64(4), c.Queries()-q0)
			m := cp[byoc]
			require.True(t, m.InstancesKnown)
			require.InDelta(t, 2.5, m.Instances, 1e-9)
			require.InDelta(t, 4, m.Concurrency, 1e-9)
			require.True(t, m.InFlightKnown)
			require.InDelta(t, 5, m.InFlight, 0.01)
			require.InDelta(t, 50, m.Utilization[len(m.Utilization)-1].Value, 0.5)
			require.WithinDuration(t, now, m.LastInvokedAt, 2*time.Minute)
			require.InEpsilon(t, 2, m.RequestRate, 0.01)
			// Learned keep-alive's evidence: the requests in each step's
			// window (2/s over 70 s) up to the settled step, the one before
			// now's.
			settled := now.Truncate(time.Minute).Add(-time.Minute)
			require.Equal(t, settled, m.SettledAt)
			require.Equal(t, settled, cp[zero].SettledAt, "a version with no requests still has its settled step")
			requireWindowCounts(t, m.RequestCounts, m.RequestRates, 70)
			require.InEpsilon(t, 140, valueAtStep(t, m.RequestCounts, settled), 0.01)
			require.InDelta(t, 2.5, valueAtStep(t, m.InstanceCounts, settled), 1e-9)
			// 0 in flight over 0 instances is NaN, kept as such: the policy
			// reads the count (0), not the ratio.
			z := cp[zero]
			require.True(t, z.InstancesKnown)
			require.Zero(t, z.Instances)
			require.NotEmpty(t, z.Utilization)
			require.True(t, math.IsNaN(z.Utilization[len(z.Utilization)-1].Value))
			require.True(t, z.LastInvokedAt.IsZero())
			// No series: unknown, not zero. Another environment: not read.
			require.False(t, cp[none].InstancesKnown)
			require.Empty(t, cp[none].Utilization)
			require.False(t, cp[staging].InstancesKnown, "staging series under a production filter")

			// Gateway: one function, three versions, five range queries
			// and one of raw samples for all.
			q0 = c.Queries()
			gw, err := c.GatewayMetrics(ctx, []string{"g-p", "g-noinfo", "g-none"}, now, opts)
			require.NoError(t, err)
			require.Equal(t, int64(6), c.Queries()-q0)
			g := gw["g-p"]
			require.Equal(t, []GatewayVersion{
				{FunctionVersionID: "g-p-1", NcaID: "nca-g", Listed: true, Instances: 1, InstancesKnown: true, Concurrency: 2},
				{FunctionVersionID: "g-p-2", NcaID: "nca-g", Listed: true, Instances: 2, InstancesKnown: true, Concurrency: 2},
				{FunctionVersionID: "g-p-3", NcaID: "nca-g", Listed: true, Instances: 0, InstancesKnown: true, Concurrency: 2},
			}, g.Versions)
			cur, known := g.Current()
			require.True(t, known)
			require.Equal(t, 3.0, cur)
			require.InDelta(t, 2, g.Concurrency(), 1e-9)
			require.NotEmpty(t, g.Utilization)
			// 3 in flight over (1 + 2) x 2 slots.
			require.InDelta(t, 50, g.Utilization[len(g.Utilization)-1].Value, 0.5)
			require.InDelta(t, 3, g.InFlight, 0.01)
			require.InEpsilon(t, 4, g.RequestRate, 0.01)
			require.WithinDuration(t, now, g.LastInvokedAt, 2*time.Minute)
			require.Equal(t, settled, g.SettledAt)
			requireWindowCounts(t, g.RequestCounts, g.RequestRates, 70)
			require.InEpsilon(t, 280, valueAtStep(t, g.RequestCounts, settled), 0.01)
			require.InDelta(t, 3, valueAtStep(t, g.InstanceCounts, settled), 1e-9, "the sum of the versions' instances")
			// The raw samples' scrape intervals (every 15 s) over the
			// completion span before now: 4 req/s complete 60 requests in
			// each, with 3 in flight 45 latency-seconds. The query's time
			// is the grid's newest step.
			end := now.Truncate(opts.Step)
			require.GreaterOrEqual(t, len(g.Completions), 10, "%+v", g.Completions)
			for i, iv := range g.Completions {
				require.Equal(t, 15*time.Second, iv.To.Sub(iv.From), "interval %d", i)
				require.False(t, iv.From.Before(end.Add(-opts.CompletionSpan())), "interval %d from %s", i, iv.From)
				require.False(t, iv.To.After(end), "interval %d to %s", i, iv.To)
				require.InDelta(t, 60, iv.Completed, 1e-6, "interval %d", i)
				require.InDelta(t, 45, iv.LatencySum, 1e-6, "interval %d", i)
				if i > 0 {
					require.Equal(t, g.Completions[i-1].To, iv.From, "consecutive intervals of the one series")
				}
			}
			for _, iv := range gw["g-noinfo"].Completions {
				require.InDelta(t, 15, iv.Completed, 1e-6, "each function its own series: 1 req/s")
			}
			require.NotEmpty(t, gw["g-noinfo"].Completions)

			ni := gw["g-noinfo"]
			require.Len(t, ni.Versions, 1)
			require.False(t, ni.Versions[0].Listed, "no nvcf_function_info: not a valid target")
			_, ok := gw["g-none"]
			require.False(t, ok, "a function without series is absent, not idle")

			// Chunked by TSDB_MAX_SELECTOR_BYTES: more queries, same answer.
			small, err := New(Config{URL: url, MaxSelectorBytes: 1})
			require.NoError(t, err)
			gw2, err := small.GatewayMetrics(ctx, []string{"g-p", "g-noinfo", "g-none"}, now, opts)
			require.NoError(t, err)
			require.Equal(t, int64(18), small.Queries())
			require.Equal(t, gw["g-p"].Versions, gw2["g-p"].Versions)
			require.Equal(t, gw["g-p"].Completions, gw2["g-p"].Completions)
			ids := make([]string, 0, len(gw2))
			for id := range gw2 {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			require.Equal(t, []string{"g-noinfo", "g-p"}, ids)
		})
	}
}

// requireWindowCounts checks that counts are the requests in the windows
// the rates were read over: the same steps, rate x window each.
func requireWindowCounts(t *testing.T, counts, rates []Sample, windowSeconds float64) {
	t.Helper()
	require.NotEmpty(t, counts)
	require.Len(t, counts, len(rates))
	for i := range counts {
		require.Equal(t, rates[i].At, counts[i].At)
		require.InDelta(t, rates[i].Value*windowSeconds, counts[i].Value, 1e-9)
	}
}

func valueAtStep(t *testing.T, ss []Sample, at time.Time) float64 {
	t.Helper()
	for _, s := range ss {
		if s.At.Equal(at) {
			return s.Value
		}
	}
	t.Fatalf("no sample at %s in %v", at, ss)
	return 0
}
