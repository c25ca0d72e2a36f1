package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// exported reads one sample of what a scrape would see: a counter or
// gauge value, or a summary's _sum or _count (name with that suffix).
func exported(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	family, part := name, ""
	for _, suffix := range []string{"_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && base != MetricRequests {
			family, part = base, suffix
		}
	}
	for _, mf := range mfs {
		if mf.GetName() != family && mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.GetSummary() != nil && part == "_sum":
				return m.GetSummary().GetSampleSum()
			case m.GetSummary() != nil && part == "_count":
				return float64(m.GetSummary().GetSampleCount())
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sample %s%v exported", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// run advances dp in steps of tick until end and returns the time
// integral of the requests in flight of version vid, sampled each tick
// from the snapshots (not from the counters under test).
func run(dp *DataPlane, t0 time.Time, from, end, tick time.Duration, vid string) float64 {
	integral := 0.0
	for at := from + tick; at <= end; at += tick {
		dp.Advance(t0.Add(at))
		for _, s := range dp.Snapshots() {
			if s.FunctionVersionID == vid {
				integral += s.InFlight * tick.Seconds()
			}
		}
	}
	return integral
}

// A BYOC version through light load, an overload and a drain: the latency
// sum's rate is the number in flight (Little's law), queueing included.
func TestBYOCLatencySumFollowsLittlesLaw(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	// 2 instances x concurrency 2 = 4 slots of 1 s: capacity 4 req/s.
	load := func(e time.Duration) float64 {
		switch {
		case e < 60*time.Second:
			return 2 // 50 % busy
		case e < 150*time.Second:
			return 6 // 150 % of capacity: a queue builds until requests give up
		case e < 180*time.Second:
			return 1
		}
		return 0 // drain: everything leaves
	}
	dp := NewDataPlane(t0, nil, Options{RequestGiveUp: 20 * time.Second}, FunctionSpec{FunctionID: "f", FunctionVersionID: "v",
		NcaID: "nca", Kind: KindBYOC, ServiceTime: time.Second, Concurrency: 2, InitialInstances: 2, Load: load})
	reg := prometheus.NewRegistry()
	reg.MustRegister(dp)
	labels := map[string]string{"function_id": "f", "function_version_id": "v", "nca_id": "nca", "aws_env": "prd"}
	reqLabels := map[string]string{"function_id": "f", "function_version_id": "v", "nca_id": "nca", "environment": "prod"}
	type reading struct{ arrived, sum, count float64 }
	read := func() reading {
		return reading{exported(t, reg, MetricRequests, reqLabels), exported(t, reg, MetricRequestLatency+"_sum", labels),
			exported(t, reg, MetricRequestLatency+"_count", labels)}
	}
	// An odd tick, so nothing lines up with the service time by accident.
	const tick = 70 * time.Millisecond

	run(dp, t0, 0, 20*time.Second, tick, "v")
	a := read()
	inFlight := run(dp, t0, 20*time.Second, 60*time.Second, tick, "v")
	b := read()
	// Light load: 2 req/s x 1 s = 2 in flight, nobody waits.
	require.InDelta(t, 2.0, (b.arrived-a.arrived)/40, 0.02, "arrival rate")
	require.InDelta(t, 2.0, (b.sum-a.sum)/40, 0.05, "latency sum rate = requests in flight")
	require.InDelta(t, 2.0, inFlight/40, 0.05, "requests in flight from the snapshots")
	require.InDelta(t, 1.0, (b.sum-a.sum)/(b.count-a.count), 0.05, "mean latency is the service time")
	require.Equal(t, 50.0, math.Round(dp.Snapshots()[0].Utilization))

	// Overload: served at 4 of 6 req/s, the head of the queue ages 1 s
	// every 3 s until it reaches the give-up time (20 s) at 120 s; from
	// then on the queue holds, as requests give up.
	run(dp, t0, 60*time.Second, 125*time.Second, tick, "v")
	c := read()
	inFlight = run(dp, t0, 125*time.Second, 150*time.Second, tick, "v")
	d := read()
	// The 4 slots stay full and the rest waits, so the sum's rate (the
	// reference's utilization numerator) far exceeds the slots.
	require.Greater(t, (d.sum-c.sum)/25, 40.0, "queueing shows in the latency sum")
	require.InDelta(t, inFlight/25, (d.sum-c.sum)/25, 0.05*inFlight/25, "latency sum rate = requests in flight, waiting included")
	require.Greater(t, (d.sum-c.sum)/(d.count-c.count), 3.0, "mean latency includes the wait")
	require.InDelta(t, 100, dp.Snapshots()[0].Utilization, 0.01)
	require.Greater(t, dp.Snapshots()[0].Queue, 10.0)

	// Over the whole run, ending empty: every second spent in flight was
	// recorded exactly once when its request left (served or given up).
	dp2 := NewDataPlane(t0, nil, Options{RequestGiveUp: 20 * time.Second}, FunctionSpec{FunctionID: "f", FunctionVersionID: "v",
		NcaID: "nca", Kind: KindBYOC, ServiceTime: time.Second, Concurrency: 2, InitialInstances: 2, Load: load})
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(dp2)
	total := run(dp2, t0, 0, 230*time.Second, tick, "v")
	require.Zero(t, dp2.Snapshots()[0].InFlight, "drained")
	require.InDelta(t, total, exported(t, reg2, MetricRequestLatency+"_sum", labels), 0.01*total)
	require.InDelta(t, exported(t, reg2, MetricRequests, reqLabels), dp2.functions["f/v"].pool.left, 1e-6, "every arrival left")
	require.Greater(t, dp2.functions["f/v"].pool.gaveUp, 0.0, "the overload made some give up")
}

// Requests with no slot at all give up after the give-up time, and each
// records exactly that time.
func TestRequestsWithoutSlotsGiveUp(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	dp := NewDataPlane(t0, nil, Options{RequestGiveUp: 10 * time.Second}, FunctionSpec{FunctionID: "f", FunctionVersionID: "v",
		Kind: KindBYOC, ServiceTime: time.Second, Load: func(time.Duration) float64 { return 1 }})
	run(dp, t0, 0, 60*time.Second, 500*time.Millisecond, "v")
	p := dp.functions["f/v"].pool
	require.Greater(t, p.left, 45.0)
	require.Equal(t, p.left, p.gaveUp, "nothing was served")
	require.InDelta(t, 10*p.left, p.latencySum, 1e-6)
	require.InDelta(t, 10, dp.Snapshots()[0].InFlight, 0.6, "Little's law: 1 req/s x 10 s waiting")
	require.Zero(t, dp.Snapshots()[0].Utilization)
}

// An LLM function behind the gateway: function-level gateway series, one
// pool over the slots of all its versions, and the control plane's
// per-version gauges with the labels the reference selects on.
func TestGatewayFunctionServesOverAllItsVersions(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	ctrl := fixed{"llm/v1": 1, "llm/v2": 0}
	rate := func(time.Duration) float64 { return 3 }
	dp := NewDataPlane(t0, ctrl, Options{Environment: Staging},
		FunctionSpec{FunctionID: "llm", FunctionVersionID: "v1", NcaID: "nca", Kind: KindGateway, ServiceTime: time.Second, Concurrency: 4, InitialInstances: 1, Load: rate},
		FunctionSpec{FunctionID: "llm", FunctionVersionID: "v2", NcaID: "nca", Kind: KindGateway, ServiceTime: time.Second, Concurrency: 4})
	reg := prometheus.NewRegistry()
	reg.MustRegister(dp)
	gw := map[string]string{"function_id": "llm", "aws_env": "stg"}

	run(dp, t0, 0, 10*time.Second, 250*time.Millisecond, "v1")
	s1, s0 := exported(t, reg, MetricGatewayDuration+"_sum", gw), exported(t, reg, MetricGatewayRequests, gw)
	run(dp, t0, 10*time.Second, 40*time.Second, 250*time.Millisecond, "v1")
	// 3 req/s x 1 s on 4 slots: 3 in flight, 75 % busy.
	require.InDelta(t, 3.0, (exported(t, reg, MetricGatewayDuration+"_sum", gw)-s1)/30, 0.05)
	require.InDelta(t, 3.0, (exported(t, reg, MetricGatewayRequests, gw)-s0)/30, 0.05)
	for _, s := range dp.Snapshots() {
		require.Equal(t, KindGateway, s.Kind)
		require.InDelta(t, 75, s.Utilization, 0.5, "a gateway version reports its function's utilization")
	}

	// The second version comes up: the same load now spreads over 8 slots.
	ctrl["llm/v2"] = 1
	run(dp, t0, 40*time.Second, 50*time.Second, 250*time.Millisecond, "v1")
	require.InDelta(t, 37.5, dp.Snapshots()[0].Utilization, 0.5)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP nvcf_function_concurrency Requests one instance of the function version serves at once.
# TYPE nvcf_function_concurrency gauge
nvcf_function_concurrency{environment="staging",function_id="llm",function_version_id="v1",nca_id="nca"} 4
nvcf_function_concurrency{environment="staging",function_id="llm",function_version_id="v2",nca_id="nca"} 4
# HELP nvcf_function_info 1 for every deployed function version: maps the version to its account.
# TYPE nvcf_function_info gauge
nvcf_function_info{environment="staging",function_id="llm",function_version_id="v1",nca_id="nca"} 1
nvcf_function_info{environment="staging",function_id="llm",function_version_id="v2",nca_id="nca"} 1
# HELP nvcf_function_instances_current Instances of the function version serving now.
# TYPE nvcf_function_instances_current gauge
nvcf_function_instances_current{environment="staging",function_id="llm",function_version_id="v1",nca_id="nca"} 1
nvcf_function_instances_current{environment="staging",function_id="llm",function_version_id="v2",nca_id="nca"} 1
`), MetricConcurrency, MetricInfo, MetricInstancesCurrent))
	// Gateway functions have no per-version request or worker series.
	for _, name := range []string{MetricRequests, MetricBusySeconds, MetricThreadCount, MetricRequestLatency} {
		n, err := testutil.GatherAndCount(reg, name)
		require.NoError(t, err)
		require.Zero(t, n, name)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "llm_api_gateway") {
			for _, m := range mf.GetMetric() {
				require.Len(t, m.GetLabel(), 2, "gateway series carry function_id and aws_env only")
			}
		}
	}
}

// Every family carries its own environment label; a worker version's
// series keep their names and gain `environment`.
func TestEnvironmentLabelPerFamily(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	dp := NewDataPlane(t0, nil, Options{},
		FunctionSpec{FunctionID: "w", FunctionVersionID: "wv", NcaID: "nca", ThreadsPerInstance: 2, InitialInstances: 1},
		FunctionSpec{FunctionID: "b", FunctionVersionID: "bv", NcaID: "nca", Kind: KindBYOC, Concurrency: 3, Load: func(e time.Duration) float64 {
			if e > 2*time.Second {
				return 1
			}
			return 0
		}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(dp)
	dp.Advance(t0.Add(time.Second))
	n, err := testutil.GatherAndCount(reg, MetricRequests, MetricRequestLatency)
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the worker version's request counter before the BYOC version's first request")
	dp.Advance(t0.Add(3 * time.Second))
	want := map[string]map[string]string{
		MetricThreadCount:      {"environment": "prod"},
		MetricBusySeconds:      {"environment": "prod"},
		MetricRequests:         {"environment": "prod"},
		MetricRequestLatency:   {"aws_env": "prd"},
		MetricInstancesCurrent: {"environment": "production"},
		MetricConcurrency:      {"environment": "production"},
		MetricInfo:             {"environment": "production"},
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		require.True(t, ok, "unexpected family %s", mf.GetName())
		seen[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			require.True(t, hasLabels(m, w), "%s %v", mf.GetName(), m.GetLabel())
		}
	}
	require.Len(t, seen, len(want))
	// The worker version reports its threads as its concurrency and its
	// active instances to the control plane.
	require.Equal(t, 2.0, exported(t, reg, MetricConcurrency, map[string]string{"function_id": "w"}))
	require.Equal(t, 1.0, exported(t, reg, MetricInstancesCurrent, map[string]string{"function_id": "w"}))
	require.Equal(t, 0.0, exported(t, reg, MetricInstancesCurrent, map[string]string{"function_id": "b"}))
}

func TestScenarioKinds(t *testing.T) {
	s, err := ParseScenario([]byte(`{"name":"k","duration":"1m","functions":[
		{"functionId":"g","functionVersionId":"g1","kind":"gateway","concurrency":8,"maxInstances":4,"load":{"kind":"idle"}},
		{"functionId":"g","functionVersionId":"g2","kind":"gateway","maxInstances":4,"load":{"kind":"idle"}},
		{"functionId":"b","functionVersionId":"b1","kind":"byoc","concurrency":2,"maxInstances":4,"load":{"kind":"idle"}},
		{"functionId":"w","functionVersionId":"w1","threads":2,"maxInstances":4,"load":{"kind":"idle"}}]}`))
	require.NoError(t, err)
	specs, err := s.Specs()
	require.NoError(t, err)
	require.Equal(t, KindGateway, specs[0].Kind)
	require.Equal(t, 8, specs[0].Concurrency)
	require.Equal(t, KindBYOC, specs[2].Kind)

	for _, c := range []struct{ fn, want string }{
		{`{"functionId":"x","functionVersionId":"x1","kind":"lambda","maxInstances":1,"load":{"kind":"idle"}}`, `kind "lambda"`},
		{`{"functionId":"x","functionVersionId":"x1","kind":"byoc","threads":2,"maxInstances":1,"load":{"kind":"idle"}}`, "threads applies to worker"},
		{`{"functionId":"x","functionVersionId":"x1","concurrency":2,"maxInstances":1,"load":{"kind":"idle"}}`, "concurrency applies to gateway"},
		{`{"functionId":"x","functionVersionId":"x1","kind":"gateway","concurrency":20000,"maxInstances":1,"load":{"kind":"idle"}}`, "1..16384"},
	} {
		_, err := ParseScenario([]byte(`{"name":"bad","functions":[` + c.fn + `]}`))
		require.ErrorContains(t, err, c.want)
	}
	_, err = ParseScenario([]byte(`{"name":"mixed","functions":[
		{"functionId":"g","functionVersionId":"g1","kind":"gateway","maxInstances":1,"load":{"kind":"idle"}},
		{"functionId":"g","functionVersionId":"g2","kind":"byoc","maxInstances":1,"load":{"kind":"idle"}}]}`))
	require.ErrorContains(t, err, "mixes gateway")
	_, err = ParseScenario([]byte(`{"name":"twice","functions":[
		{"functionId":"g","functionVersionId":"g1","maxInstances":1,"load":{"kind":"idle"}},
		{"functionId":"g","functionVersionId":"g1","maxInstances":1,"load":{"kind":"idle"}}]}`))
	require.ErrorContains(t, err, "given twice")
}
