package scale

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
	"function/shared/tsdb/tsdbtest"
)

// steps builds per-step samples, 4 s apart, ending at end.
func steps(end time.Time, values ...float64) []tsdb.Sample {
	out := make([]tsdb.Sample, len(values))
	for i, v := range values {
		out[i] = tsdb.Sample{At: end.Add(-time.Duration(len(values)-1-i) * 4 * time.Second), Value: v}
	}
	return out
}

func TestServiceWindow(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	const step, window = 4 * time.Second, 8 * time.Second
	two := func(v float64) []float64 { return []float64{v, v, v, v} }
	for _, c := range []struct {
		name                              string
		util, rates, inFlights, instances []float64
		ok                                bool
	}{
		// 1 req/s of 1 s each on 2 slots: 50 %, 1 in flight.
		{"steady and unsaturated", two(50), []float64{1, 1.01, 0.99, 1}, []float64{1, 1.01, 0.99, 1}, two(2), true},
		{"settled window saturated", []float64{50, 50, 100, 50}, []float64{1, 1.01, 0.99, 1}, []float64{1, 1.01, 2, 1}, two(2), false},
		{"newest window saturated: a queue is building", []float64{50, 50, 50, 96}, []float64{1, 1.01, 0.99, 1}, []float64{1, 1.01, 0.99, 1.9}, two(2), false},
		{"load stepped in the newest window", []float64{50, 50, 50, 80}, []float64{1, 1.01, 0.99, 1.6}, []float64{1, 1.01, 0.99, 1.6}, two(2), false},
		{"load stepped before the settled one", []float64{30, 30, 50, 50}, []float64{0.6, 0.6, 0.99, 1}, []float64{0.6, 0.6, 0.99, 1}, two(2), false},
		{"within the steady band", []float64{50, 50, 60, 70}, []float64{1, 1.01, 1.2, 1.4}, []float64{1, 1.01, 1.2, 1.4}, two(2), true},
		{"instances came during the window", []float64{100, 70, 50, 50}, []float64{1, 1.01, 0.99, 1}, []float64{1, 1.4, 0.99, 1}, []float64{1, 2, 2, 2}, false},
		{"instances came before the window", []float64{100, 50, 50, 50, 50}, []float64{1, 1, 1.01, 0.99, 1}, []float64{1, 1, 1.01, 0.99, 1}, []float64{1, 2, 2, 2, 2}, true},
		{"instances unknown", two(50), []float64{1, 1.01, 0.99, 1}, []float64{1, 1.01, 0.99, 1}, []float64{2, 2, math.NaN(), 2}, false},
		{"no requests before", []float64{0, 0, 50, 50}, []float64{0, 0, 0.99, 1}, []float64{0, 0, 0.99, 1}, two(2), false},
		{"unknown utilization", []float64{50, 50, math.NaN(), 50}, []float64{1, 1.01, 0.99, 1}, []float64{1, 1.01, 0.99, 1}, two(2), false},
		// VictoriaMetrics repeats the previous step at the newest: the
		// window before the last real one is learned from.
		{"newest repeated", two(50), []float64{1, 1.01, 0.99, 0.99}, []float64{1, 1.01, 0.99, 0.99}, two(2), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := slotSteps(steps(end, c.util...), steps(end, c.rates...), steps(end, c.inFlights...), steps(end, c.instances...))
			at, seconds, requests, util, ok := serviceWindow(st, step, window)
			require.Equal(t, c.ok, ok)
			if ok {
				// The window before the newest real one, over the 8 s rate window.
				i := len(st) - 2
				require.Equal(t, st[i].at, at)
				require.Equal(t, end.Add(-time.Duration(len(c.rates)-1-i)*step), at)
				require.InDelta(t, 8*c.inFlights[i], seconds, 1e-9)
				require.InDelta(t, 8*c.rates[i], requests, 1e-9)
				require.Equal(t, c.util[i], util)
			}
		})
	}
	_, _, _, _, ok := serviceWindow(slotSteps(steps(end, 50, 50), steps(end, 1, 1.01), steps(end, 1, 1.01), steps(end, 2, 2)), step, window)
	require.False(t, ok, "two steps cannot show a steady rate around the window")
}

func TestSlotStepsDropARepeatedNewestStep(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	st := slotSteps(steps(end, 50, 60, 60), steps(end, 1, 2.5, 2.5), steps(end, 1, 16.7, 16.7), nil)
	require.Len(t, st, 2, "the newest repeats the one before: VictoriaMetrics' copy")
	require.Equal(t, end.Add(-4*time.Second), st[1].at)
	require.True(t, math.IsNaN(st[1].instances), "unknown instances stay unknown")
	require.Len(t, slotSteps(nil, steps(end, 1, 2.5, 2.5), steps(end, 1, 10, 16.7), nil), 3, "the same rate with another latency sum is a real window")
	require.Len(t, slotSteps(nil, steps(end, 1, 2.5), steps(end.Add(-4*time.Second), 1), nil), 1, "a rate without in-flight is not a step")
}

func TestSlotUtilizationCapsLittlesLawAtSaturation(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	in := steps(end, 50, 99.9, 245.4, math.Inf(1), math.NaN())
	got := slotUtilization(in)
	require.Equal(t, []float64{50, 99.9, 100, 100}, []float64{got[0].Value, got[1].Value, got[2].Value, got[3].Value})
	require.True(t, math.IsNaN(got[4].Value), "unknown stays unknown")
	require.Equal(t, 245.4, in[2].Value, "the caller's samples are not changed")
	require.Equal(t, "; little's law read 245 % (waiting requests included), decided as 100 %", overLittle(in[:3]))
	require.Empty(t, overLittle(in[:2]))
}

func TestControlPlaneDemand(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	learned := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	// 2 instances, 1 slot each, a queue built: 12.3 in flight, 5 req/s arriving.
	m := tsdb.ControlPlaneMetrics{Concurrency: 1, InFlight: 12.3, InFlightKnown: true, RequestRates: steps(end, 1, 5)}
	d := controlPlaneDemand(m, learned)
	require.Equal(t, policy.MethodArrivalsServiceTime, d.Method)
	require.InDelta(t, 5, d.Instances, 1e-9, "the newest arrivals x 1 s")
	require.Contains(t, d.Detail, "5.0 req/s counted on arrival x 1.00 s / 1 concurrent")

	d = controlPlaneDemand(m, policy.Cost{SecondsPerRequest: 1, Weight: 1})
	require.Equal(t, policy.MethodLittlesLaw, d.Method, "no service time learned yet: as before")
	require.InDelta(t, 12.3, d.Instances, 1e-9)

	noCounter := m
	noCounter.RequestRates = nil
	require.Equal(t, policy.MethodLittlesLaw, controlPlaneDemand(noCounter, learned).Method, "no arrivals counted: little's law")
	noConcurrency := m
	noConcurrency.Concurrency = 0
	require.Nil(t, controlPlaneDemand(noConcurrency, learned))
}

func TestGatewayDemand(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	learned := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	v := []tsdb.GatewayVersion{{FunctionVersionID: "a", Instances: 2, InstancesKnown: true, Concurrency: 1}}
	// 5 req/s arriving at 2 slots of 1 s: 2 complete per second, whose
	// latency grows from 5 s to 7.4 s in 4 s.
	m := tsdb.GatewayMetrics{Versions: v, InFlight: 14.8, InFlightKnown: true,
		RequestRates: steps(end, 2, 2, 2), InFlights: steps(end, 5.2, 10, 14.8)}
	st := slotSteps(m.Utilization, m.RequestRates, m.InFlights, nil)
	d := gatewayDemand(m, st, learned, 8*time.Second)
	require.Equal(t, policy.MethodArrivalsServiceTime, d.Method)
	require.InDelta(t, 5, d.Instances, 1e-9)
	require.Contains(t, d.Detail, "estimated: 2.0 completed/s, latency 5.00 s -> 7.40 s in 4s")

	// While instances come (unknown counts here), the newest pair reads a
	// jump the settled pair does not: it may read at most 1.5x the settled
	// pair's, and the detail says so.
	jump := m
	jump.InFlights = steps(end, 5.2, 10, 20.64)
	jump.RequestRates = steps(end, 2, 2, 2.4)
	js := slotSteps(jump.Utilization, jump.RequestRates, jump.InFlights, nil)
	d = gatewayDemand(jump, js, learned, 8*time.Second)
	require.InDelta(t, 7.5, d.Instances, 1e-9, "1.5 x the settled pair's 5 req/s, not the newest pair's 20.6")
	require.Contains(t, d.Detail, "latency 5.00 s -> 8.60 s in 4s, bounded by 20.6 in flight / service time, capped at 1.5 x the 5.0 req/s of the pair before")
	// A rise within 1.5x is followed at once.
	rise := m
	rise.InFlights = steps(end, 5.2, 10, 16.5)
	rise.RequestRates = steps(end, 2, 2, 2.2)
	d = gatewayDemand(rise, slotSteps(rise.Utilization, rise.RequestRates, rise.InFlights, nil), learned, 8*time.Second)
	require.InDelta(t, 2.1/(1-0.625), d.Instances, 1e-9)
	// With the same instances throughout, the jump is followed at once.
	jump.InstanceCounts = steps(end, 2, 2, 2)
	d = gatewayDemand(jump, slotSteps(jump.Utilization, jump.RequestRates, jump.InFlights, jump.InstanceCounts), learned, 8*time.Second)
	require.InDelta(t, 20.64, d.Instances, 1e-9, "bounded by in flight / service time only")
	require.NotContains(t, d.Detail, "capped")
	jump.InstanceCounts = steps(end, 2, 2, 3)
	d = gatewayDemand(jump, slotSteps(jump.Utilization, jump.RequestRates, jump.InFlights, jump.InstanceCounts), learned, 8*time.Second)
	require.InDelta(t, 7.5, d.Instances, 1e-9, "an instance came in the newest window")
	// A newest pair lower than the settled one sizes: a queue draining.
	drain := m
	drain.InFlights = steps(end, 5.2, 10, 10.4)
	d = gatewayDemand(drain, slotSteps(drain.Utilization, drain.RequestRates, drain.InFlights, nil), learned, 8*time.Second)
	require.InDelta(t, 2/(1-0.05), d.Instances, 1e-9)
	require.Equal(t, policy.MethodLittlesLaw, gatewayDemand(m, st, policy.Cost{}, 8*time.Second).Method, "no service time learned yet: as before")
	require.InDelta(t, 14.8, gatewayDemand(m, st, policy.Cost{}, 8*time.Second).Instances, 1e-9)
	require.Equal(t, policy.MethodLittlesLaw, gatewayDemand(m, st[2:], learned, 8*time.Second).Method, "one window has no growth to read")
	noConcurrency := m
	noConcurrency.Versions = []tsdb.GatewayVersion{{FunctionVersionID: "a", Instances: 2, InstancesKnown: true}}
	require.False(t, gatewayDemand(noConcurrency, st, learned, 8*time.Second).Known())
}

func TestNewestSlots(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	states := map[string]store.ScalingState{
		"a": {Cost: store.Cost{SecondsPerRequest: 2, Weight: 30, WindowEnd: t0}, Backlog: store.Backlog{Requests: 9, WindowEnd: t0.Add(time.Minute)}},
		"b": {Cost: store.Cost{SecondsPerRequest: 1, Weight: 25, WindowEnd: t0.Add(time.Minute)}, Backlog: store.Backlog{Requests: 4, WindowEnd: t0}},
		"c": {},
	}
	c, b := newestSlots(states)
	require.Equal(t, policy.Cost{SecondsPerRequest: 1, Weight: 25, UpdatedAt: t0.Add(time.Minute)}, c)
	require.Equal(t, policy.Backlog{Requests: 9, UpdatedAt: t0.Add(time.Minute)}, b)
	c, b = newestSlots(nil)
	require.Equal(t, policy.Cost{}, c)
	require.False(t, b.Known())
}

// The queue a request-slot source folds: what arrived minus what the busy
// slots served in the window before the newest real step.
func TestSlotFlows(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	learned := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	// BYOC: 5 arriving, 30 in flight on 2 instances of 1 slot: 2 slots busy.
	st := slotSteps(steps(end, 100, 100, 100), steps(end, 5, 5, 5.1), steps(end, 20, 30, 40), steps(end, 2, 2, 2))
	arrivals, busy, ok := controlPlaneFlow(1)(st, learned)
	require.True(t, ok)
	require.Equal(t, 5.0, arrivals)
	require.Equal(t, 2.0, busy)
	// Unsaturated: every request in flight holds a slot.
	st = slotSteps(steps(end, 50, 50, 50), steps(end, 1, 1, 1.01), steps(end, 1, 1.01, 1), steps(end, 2, 2, 2))
	_, busy, _ = controlPlaneFlow(1)(st, learned)
	require.Equal(t, 1.01, busy)
	_, _, ok = controlPlaneFlow(0)(st, learned)
	require.False(t, ok, "no concurrency, no slots")

	// Gateway: 2 completions/s whose latency grows 0.6 s per second; each
	// completion held a slot for 1 s.
	st = slotSteps(nil, steps(end, 2, 2, 2), steps(end, 10, 14.8, 19.6), nil)
	arrivals, busy, ok = gatewayFlow(st, learned)
	require.True(t, ok)
	require.InDelta(t, 5, arrivals, 1e-9)
	require.Equal(t, 2.0, busy)
	_, _, ok = gatewayFlow(st, policy.Cost{})
	require.False(t, ok, "no service time, no arrivals estimate")
}

func TestClampedNoop(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const recheck = 20 * time.Second
	clamped := store.ScalingState{LastRequested: 67, HasLastRequested: true, AppliedTarget: 20, HasAppliedTarget: true,
		LastWrittenAt: now.Add(-8 * time.Second)}
	for _, c := range []struct {
		name             string
		st               store.ScalingState
		desired, running int
		noop             bool
	}{
		{"more than the max again", clamped, 59, 20, true},
		{"exactly the max", clamped, 20, 20, true},
		{"below the max: a real change", clamped, 19, 20, false},
		{"running more than the max: it was raised", clamped, 59, 21, false},
		{"running unknown", clamped, 59, -1, true},
		{"recheck due", func() store.ScalingState { s := clamped; s.LastWrittenAt = now.Add(-recheck); return s }(), 59, 20, false},
		{"exactly the max when recheck is due: nothing to learn", func() store.ScalingState { s := clamped; s.LastWrittenAt = now.Add(-time.Hour); return s }(), 20, 20, true},
		{"not clamped", store.ScalingState{LastRequested: 20, HasLastRequested: true, AppliedTarget: 20, HasAppliedTarget: true}, 30, 20, false},
		{"clamped up to a min", store.ScalingState{LastRequested: 0, HasLastRequested: true, AppliedTarget: 1, HasAppliedTarget: true}, 0, 1, false},
		{"no answer recorded", store.ScalingState{LastRequested: 67, HasLastRequested: true}, 80, 20, false},
		{"an answer of no instances is no max", store.ScalingState{LastRequested: 5, HasLastRequested: true, HasAppliedTarget: true}, 8, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.noop, clampedNoop(c.st, c.desired, c.running, now, recheck))
		})
	}
	require.Equal(t, 20, lastTarget(clamped), "the policy measures from what NVCF targets")
	require.Equal(t, 0, lastTarget(store.ScalingState{LastRequested: 0, HasLastRequested: true, AppliedTarget: 1, HasAppliedTarget: true}),
		"a min clamp keeps the request: the policy's own count")
}

// A BYOC version and a gateway function, each 2 instances of 1 slot and
// 1 s per request, serve 1 request/s (50 %) until t0 and then get 5: the
// queue builds, Little's law reads 30 (BYOC) and 110 (gateway) requests
// in flight two minutes in. Both learned their 1 s service time before the
// step, so each is sized from its arrivals (BYOC: counted on arrival;
// gateway: 2 completions/s whose latency grows 0.6 s per second) to 5
// busy instances, 9 at the 60 % target, in one decision. A twin BYOC
// version seen only since the step has no service time and is sized by
// Little's law, as before, up to the rate bound (2 x 10 = 20).
func TestRequestSlotSourcesSizedFromArrivalsAndLearnedServiceTime(t *testing.T) {
	f, run := sourcesFixture(t)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	t0 := time.Now().Truncate(time.Minute).Add(-3 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	end := time.Now()
	byoc, twin, gw := run+"-byoc", run+"-twin", run+"-gw"
	labels := func(name string, kv ...string) map[string]string {
		m := map[string]string{"__name__": name, "test_env": run}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	scrape := func(l map[string]string, from time.Time, value func(time.Time) float64) tsdbtest.Series {
		return tsdbtest.Scrape(l, from, end, 15*time.Second, value)
	}
	constant := func(v float64) func(time.Time) float64 { return func(time.Time) float64 { return v } }
	var series []tsdbtest.Series
	for _, c := range []struct {
		fid  string
		from time.Time
	}{{byoc, start}, {twin, t0.Add(-30 * time.Second)}} {
		id := []string{"function_id", c.fid, "function_version_id", "v1", "nca_id", "nca"}
		steps := []time.Time{c.from, t0}
		series = append(series,
			scrape(labels(tsdb.MetricInstancesCurrent, id...), c.from, constant(2)),
			scrape(labels(tsdb.MetricConcurrency, id...), c.from, constant(1)),
			scrape(labels(tsdb.MetricRequestsTotal, id...), c.from, tsdbtest.Counter(steps, []float64{1, 5})),
			scrape(labels(tsdb.MetricRequestLatencySum, id...), c.from, tsdbtest.Counter(steps, []float64{1, 30})))
	}
	// The gateway answers 2/s from t0 (its capacity); the latency of the
	// answered requests grows from 1 s by 0.6 s per second, so the duration
	// sum grows at 2 x (1 + 0.6 s).
	duration := func(t time.Time) float64 {
		if !t.After(t0) {
			return t.Sub(start).Seconds()
		}
		s := t.Sub(t0).Seconds()
		return t0.Sub(start).Seconds() + 2*s + 0.6*s*s
	}
	gid := []string{"function_id", gw, "function_version_id", "a", "nca_id", "nca-g"}
	series = append(series,
		scrape(labels(tsdb.MetricGatewayRequests, "function_id", gw), start, tsdbtest.Counter([]time.Time{start, t0}, []float64{1, 2})),
		scrape(labels(tsdb.MetricGatewayDurationSum, "function_id", gw), start, duration),
		scrape(labels(tsdb.MetricInstancesCurrent, gid...), start, constant(2)),
		scrape(labels(tsdb.MetricConcurrency, gid...), start, constant(1)),
		scrape(labels(tsdb.MetricFunctionInfo, gid...), start, constant(1)))
	f.ingest(t, series)
	f.register(t, row(byoc, "v1", "nca", "control_plane"), row(twin, "v1", "nca", "control_plane"), row(gw, "a", "nca-g", "gateway"))
	byocKey, twinKey, gwKey := store.VersionKey{FunctionID: byoc, FunctionVersionID: "v1"},
		store.VersionKey{FunctionID: twin, FunctionVersionID: "v1"}, store.VersionKey{FunctionID: gw, FunctionVersionID: "a"}
	ctx := context.Background()
	serviceOf := func(key store.VersionKey) store.Cost {
		st, err := f.store.ReadState(ctx, key)
		require.NoError(t, err)
		return st.Cost
	}

	// Before the step: 50 %, in band; each learns 1 s per request from its
	// settled minute (60 requests, 60 latency seconds).
	f.decideAt(t, t0.Add(-30*time.Second))
	for _, key := range []store.VersionKey{byocKey, gwKey} {
		c := serviceOf(key)
		require.InDelta(t, 1.0, c.SecondsPerRequest, 1e-9, "%s: %+v", key, c)
		require.InDelta(t, 60, c.Weight, 1e-9, "%s: %+v", key, c)
	}

	// Two and a half minutes into the step.
	r := f.decideAt(t, t0.Add(150*time.Second))
	b := outcomeOf(t, r, byocKey)
	require.Equal(t, string(policy.ReasonScaleUpDemand), b.Reason, "%+v", b)
	require.Equal(t, 9, b.Desired, "%+v", b)
	require.Equal(t, "written", b.Action)
	require.Contains(t, b.Detail, "demand=5.0 busy instances (arrivals x learned service time: 5.0 req/s counted on arrival x 1.00 s / 1 concurrent) needs 9")
	require.Contains(t, b.Detail, "little's law read 1500 %")
	require.Equal(t, 100.0, b.Utilization, "decided as saturated, not 15 times over")

	g := outcomeOf(t, r, gwKey)
	require.Equal(t, string(policy.ReasonScaleUpDemand), g.Reason, "%+v", g)
	require.Equal(t, 9, g.Desired, "own 2 + (9 - 2): %+v", g)
	// From the raw samples' scrape intervals (15 s) over the newest pair's
	// span: 2 completed a second, arriving 5 a second.
	require.Contains(t, g.Detail, "demand=5.0 busy instances (arrivals x learned service time: 5.0 req/s estimated: 240 completions in 8 scrape intervals")
	got, _ := f.sim.Desired(gw, "a")
	require.Equal(t, 9, got)

	w := outcomeOf(t, r, twinKey)
	require.Equal(t, string(policy.ReasonRateLimitedUp), w.Reason, "%+v", w)
	require.Equal(t, 20, w.Desired, "%+v", w)
	require.Contains(t, w.Detail, "little's law: 30.0 in flight")

	// The saturated windows taught nothing.
	require.InDelta(t, 1.0, serviceOf(byocKey).SecondsPerRequest, 1e-9)
	require.InDelta(t, 60, serviceOf(gwKey).Weight, 1e-9)
	require.Zero(t, serviceOf(twinKey).Weight, "the twin never had an unsaturated window")
}

func TestWaitingFloor(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	learned := policy.Cost{SecondsPerRequest: 1, Weight: 30}
	empty := policy.Backlog{UpdatedAt: end}
	// 5 req/s, 46 then 36 in flight: 31 waiting, and fewer than before.
	draining := slotSteps(nil, steps(end, 5, 5.01), steps(end, 46, 36), nil)
	require.InDelta(t, 31.0, waitingFloor(empty, draining, learned).Requests, 0.02)
	require.Equal(t, 40.0, waitingFloor(policy.Backlog{Requests: 40, UpdatedAt: end}, draining, learned).Requests, "a floor, never lower")
	building := slotSteps(nil, steps(end, 5, 5.01), steps(end, 36, 46), nil)
	require.Zero(t, waitingFloor(empty, building, learned).Requests, "a queue building is left to conservation")
	require.False(t, waitingFloor(policy.Backlog{}, draining, learned).Known(), "no estimate stays none")
	require.Zero(t, waitingFloor(empty, draining, policy.Cost{}).Requests, "no service time: no floor")
}

// The demo's llm-chat as VictoriaMetrics answered it (2026-11-30, 14:28
// UTC): 0.5 req/s of 4 s requests on one instance of 4 slots, then a
// step to 5 req/s. Before the step every window's latency is 4 s; from it
// the queue's wait is added.
func TestLatencyWithoutQueue(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	const step, window = 4 * time.Second, 8 * time.Second
	rates := []float64{0.06, 0.28, 0.43, 0.5, 0.5, 0.7, 0.9, 1.1, 1.1, 1.5}
	inFlights := []float64{0.24, 1.12, 1.72, 2, 2, 2.8, 4.7, 7.87, 11.39, 21.56}
	util := make([]float64, len(rates))
	one := make([]float64, len(rates))
	for i := range rates {
		util[i], one[i] = 100*inFlights[i]/4, 1
	}
	st := slotSteps(steps(end, util...), steps(end, rates...), steps(end, inFlights...), steps(end, one...))

	// The gateway counts completions: the six windows below saturation,
	// each request counted once (4 s of each 8 s window is its own).
	seconds, requests, last := latencyWithoutQueue(st, step, window, true)
	require.InDelta(t, 4*(0.06+0.28+0.43+0.5+0.5+0.7), requests, 1e-9)
	require.InDelta(t, 4.0, seconds/requests, 1e-9)
	require.Equal(t, st[5].at, last, "the newest window below saturation")
	b := policy.LatencyBound(policy.Cost{}, seconds, requests)
	require.True(t, b.Known(), "9.9 requests bound the service time")
	require.InDelta(t, 4.0, b.SecondsPerRequest, 1e-9)

	// The control plane counts arrivals: only the windows it would learn
	// from (steady around them, the next one unsaturated) agree with the
	// latency summed at completion.
	seconds, requests, _ = latencyWithoutQueue(st, step, window, false)
	require.InDelta(t, 4*(0.5+0.5), requests, 1e-9, "the windows at 0.5 req/s between steady neighbours")
	require.InDelta(t, 4.0, seconds/requests, 1e-9)

	// A window that counts arrivals of a step before their latency is
	// summed reads 0.5 s for 4 s requests: the control plane leaves it out.
	jump := slotSteps(steps(end, 50, 50, 50, 60), steps(end, 0.5, 0.5, 0.5, 4), steps(end, 2, 2, 2, 2.4), steps(end, 1, 1, 1, 1))
	seconds, requests, _ = latencyWithoutQueue(jump, step, window, false)
	require.InDelta(t, 4*0.5, requests, 1e-9, "only the middle window has steady neighbours")
	require.InDelta(t, 4.0, seconds/requests, 1e-9)

	seconds, requests, _ = latencyWithoutQueue(nil, step, window, true)
	require.Zero(t, seconds)
	require.Zero(t, requests)
}

func TestDemandBeforeAServiceTimeIsLearned(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	bound := policy.LatencyBound(policy.Cost{}, 28, 7)
	// The control plane counts 5 req/s arriving; 2 instances of 4 slots
	// hold 43 requests by Little's law, the queue included.
	m := tsdb.ControlPlaneMetrics{Concurrency: 4, InFlight: 43, InFlightKnown: true, RequestRates: steps(end, 0.5, 5)}
	d := controlPlaneDemand(m, bound)
	require.Equal(t, policy.MethodArrivalsLatencyBound, d.Method)
	require.InDelta(t, 5, d.Instances, 1e-9, "5 req/s x 4 s / 4 slots")
	require.Equal(t, policy.MethodLittlesLaw, controlPlaneDemand(m, policy.LatencyBound(policy.Cost{}, 16, 4)).Method, "a bound from 4 requests: little's law as before")

	v := []tsdb.GatewayVersion{{FunctionVersionID: "a", Instances: 4, InstancesKnown: true, Concurrency: 4}}
	g := tsdb.GatewayMetrics{Versions: v, InFlight: 43.2, InFlightKnown: true, RequestRates: steps(end, 4, 4), InFlights: steps(end, 40, 43.2)}
	gd := gatewayDemand(g, slotSteps(g.Utilization, g.RequestRates, g.InFlights, nil), bound, 8*time.Second)
	require.Equal(t, policy.MethodArrivalsLatencyBound, gd.Method)
	require.InDelta(t, 5, gd.Instances, 1e-9, "4 completed/s whose latency grew 0.2 s a second: 5 req/s arrived")
}

func TestKeptBound(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	// The lookback's windows bound 4 s from 7 requests; the row has 3.
	partial := policy.Cost{SecondsPerRequest: 4.2, Weight: 3, UpdatedAt: end.Add(-8 * time.Second)}
	kept, ok := keptBound(partial, 28, 7, end)
	require.True(t, ok)
	require.Equal(t, policy.Cost{SecondsPerRequest: 4, Weight: 7, UpdatedAt: end}, kept, "kept as the row's partial estimate, not as an early one")
	require.False(t, kept.Known(), "still not learned")
	require.True(t, policy.LatencyBound(kept, 0, 0).Known(), "it bounds once its windows left the lookback")

	for _, c := range []struct {
		name              string
		learned           policy.Cost
		seconds, requests float64
		end               time.Time
	}{
		{"a learned service time", policy.Cost{SecondsPerRequest: 1, Weight: 30}, 28, 7, end},
		{"too few requests to bound", policy.Cost{}, 16, 4, end},
		{"no more requests than the row", policy.Cost{SecondsPerRequest: 4, Weight: 7, UpdatedAt: end.Add(-4 * time.Second)}, 28, 7, end},
		{"windows the row has folded", policy.Cost{SecondsPerRequest: 4, Weight: 3, UpdatedAt: end}, 28, 7, end},
		{"as many requests as learning needs", policy.Cost{}, 4 * policy.CostMinRequests, policy.CostMinRequests, end},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := keptBound(c.learned, c.seconds, c.requests, c.end)
			require.False(t, ok)
			require.Equal(t, c.learned, got)
		})
	}
}
