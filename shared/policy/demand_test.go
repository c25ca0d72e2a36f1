package policy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDemandKnown(t *testing.T) {
	for _, c := range []struct {
		name string
		d    Demand
		want bool
	}{
		{"zero value is unknown", Demand{}, false},
		{"no method is unknown", Demand{Instances: 3}, false},
		{"zero demand is known", Demand{Instances: 0, Method: MethodLittlesLaw}, true},
		{"positive", Demand{Instances: 2.5, Method: MethodLittlesLaw}, true},
		{"negative", Demand{Instances: -0.1, Method: MethodLittlesLaw}, false},
		{"NaN", Demand{Instances: math.NaN(), Method: MethodLittlesLaw}, false},
		{"Inf", Demand{Instances: math.Inf(1), Method: MethodLittlesLaw}, false},
	} {
		t.Run(c.name, func(t *testing.T) { require.Equal(t, c.want, c.d.Known()) })
	}
	require.Equal(t, "demand unknown", Demand{}.String())
}

func TestCostKnown(t *testing.T) {
	for _, c := range []struct {
		name string
		c    Cost
		want bool
	}{
		{"zero value", Cost{}, false},
		{"enough evidence", Cost{SecondsPerRequest: 1, Weight: CostMinRequests}, true},
		{"just short of evidence", Cost{SecondsPerRequest: 1, Weight: CostMinRequests - 0.01}, false},
		{"zero cost", Cost{SecondsPerRequest: 0, Weight: 100}, false},
		{"NaN cost", Cost{SecondsPerRequest: math.NaN(), Weight: 100}, false},
		{"Inf weight", Cost{SecondsPerRequest: 1, Weight: math.Inf(1)}, false},
	} {
		t.Run(c.name, func(t *testing.T) { require.Equal(t, c.want, c.c.Known()) })
	}
}

func TestCostLearn(t *testing.T) {
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	first := Cost{}.Learn(at(1), 60, 30, 50) // 2 s per request
	require.InDelta(t, 2.0, first.SecondsPerRequest, 1e-12)
	require.InDelta(t, 30.0, first.Weight, 1e-12)
	require.Equal(t, at(1), first.UpdatedAt)
	require.True(t, first.Known(), "30 requests is enough evidence")

	unchanged := []struct {
		name                        string
		at                          time.Time
		busy, requests, utilization float64
	}{
		{"saturated", at(2), 570, 1000, SaturatedUtilization},
		{"above 100", at(2), 570, 1000, 130},
		{"utilization unknown", at(2), 60, 30, math.NaN()},
		{"negative utilization", at(2), 60, 30, -1},
		{"no requests", at(2), 60, 0, 50},
		{"no busy time", at(2), 0, 30, 50},
		{"negative busy (counter reset)", at(2), -60, 30, 50},
		{"NaN busy", at(2), math.NaN(), 30, 50},
		{"Inf requests", at(2), 60, math.Inf(1), 50},
		{"replayed window", at(1), 10, 30, 50},
		{"older window", at(0), 10, 30, 50},
	}
	for _, c := range unchanged {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, first, first.Learn(c.at, c.busy, c.requests, c.utilization))
		})
	}

	t.Run("just below saturation is learned", func(t *testing.T) {
		got := first.Learn(at(2), 30, 30, SaturatedUtilization-0.01)
		require.Less(t, got.SecondsPerRequest, 2.0)
	})
	t.Run("ratio of decayed sums", func(t *testing.T) {
		got := first.Learn(at(2), 30, 30, 50) // 1 s per request
		d := math.Pow(0.5, 1/CostHalfLife)
		require.InDelta(t, (30*d*2+30)/(30*d+30), got.SecondsPerRequest, 1e-12)
		require.InDelta(t, 30*d+30, got.Weight, 1e-12)
	})
	t.Run("half-life in observations", func(t *testing.T) {
		// An old estimate of 2 s, then CostHalfLife windows of 1 s with
		// the same request count each: the old evidence's weight has
		// halved.
		c := Cost{SecondsPerRequest: 2, Weight: 1e9, UpdatedAt: at(0)}
		for i := 1; i <= int(CostHalfLife); i++ {
			c = c.Learn(at(i), 1e-3, 1e-3, 50)
		}
		require.InDelta(t, 0.5e9, c.Weight, 1e3)
	})
	t.Run("the weight levels off at requests / (1 - decay)", func(t *testing.T) {
		c := Cost{}
		for i := 1; i <= 500; i++ {
			c = c.Learn(at(i), 1.3, 1.3, 50)
		}
		require.InDelta(t, 1.3/(1-math.Pow(0.5, 1/CostHalfLife)), c.Weight, 1e-6)
		require.False(t, c.Known(), "1.3 requests per window never reach CostMinRequests")
		require.True(t, c.Learn(at(501), 3, 3, 50).Known(), "one busier window does")
	})
	t.Run("one small window is not enough evidence", func(t *testing.T) {
		require.False(t, Cost{}.Learn(at(1), 10, 5, 40).Known())
	})
	for _, corrupt := range []Cost{
		{SecondsPerRequest: math.NaN(), Weight: 50},
		{SecondsPerRequest: 0, Weight: 50},
		{SecondsPerRequest: -1, Weight: 50},
		{SecondsPerRequest: 3, Weight: -5},
		{SecondsPerRequest: 3, Weight: math.Inf(1)},
	} {
		t.Run(fmt.Sprintf("a corrupt state %+v restarts from the observation", corrupt), func(t *testing.T) {
			got := corrupt.Learn(at(1), 60, 30, 50)
			require.InDelta(t, 2.0, got.SecondsPerRequest, 1e-12)
			require.InDelta(t, 30.0, got.Weight, 1e-12)
		})
	}
	t.Run("a window that reads 0 % busy but has busy time is learned", func(t *testing.T) {
		// Utilization only gates saturation; 0 is a valid reading.
		require.Equal(t, Cost{SecondsPerRequest: 2, Weight: 30, UpdatedAt: at(1)}, Cost{}.Learn(at(1), 60, 30, 0))
	})
	t.Run("converges on a steady workload", func(t *testing.T) {
		c := Cost{}
		for i := 1; i <= 200; i++ {
			// Windows alternate 1.5 s and 1.86 s per request (edge
			// effects); the truth is their request-weighted mean.
			if i%2 == 0 {
				c = c.Learn(at(i), 150, 100, 40)
			} else {
				c = c.Learn(at(i), 186, 100, 40)
			}
		}
		require.InDelta(t, 1.68, c.SecondsPerRequest, 0.02)
	})
}

func TestDemandFromRequests(t *testing.T) {
	cost := Cost{SecondsPerRequest: 1.68, Weight: 100}
	d := DemandFromRequests(cost, 5, 1)
	require.True(t, d.Known())
	require.InDelta(t, 8.4, d.Instances, 1e-9)
	require.Equal(t, MethodRequestsLearnedCost, d.Method)
	require.Equal(t, "demand=8.4 busy instances (requests x learned cost: 5.0 req/s x 1.68 s / 1 threads)", d.String())
	require.InDelta(t, 2.1, DemandFromRequests(cost, 5, 4).Instances, 1e-9, "threads share the work")
	require.InDelta(t, 0.0, DemandFromRequests(cost, 0, 1).Instances, 1e-9)
	require.True(t, DemandFromRequests(cost, 0, 1).Known(), "no requests is a known zero")

	for _, c := range []struct {
		name          string
		c             Cost
		rate, threads float64
	}{
		{"cost not learned", Cost{SecondsPerRequest: 1.68, Weight: 1}, 5, 1},
		{"negative rate", cost, -1, 1},
		{"NaN rate", cost, math.NaN(), 1},
		{"zero threads", cost, 5, 0},
		{"Inf threads", cost, 5, math.Inf(1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Unknown is exactly the zero value: no method or detail that a
			// caller could print as if it were an estimate.
			require.Equal(t, Demand{}, DemandFromRequests(c.c, c.rate, c.threads))
		})
	}
}

func TestDemandFromConcurrency(t *testing.T) {
	d := DemandFromConcurrency(12, 4)
	require.True(t, d.Known())
	require.InDelta(t, 3.0, d.Instances, 1e-9)
	require.Equal(t, MethodLittlesLaw, d.Method)
	require.Contains(t, d.String(), "12.0 in flight / 4 concurrent per instance")
	require.True(t, DemandFromConcurrency(0, 4).Known())
	for _, c := range []struct {
		name              string
		inFlight, perInst float64
	}{
		{"negative in flight", -1, 4},
		{"NaN in flight", math.NaN(), 4},
		{"zero concurrency", 12, 0},
		{"negative concurrency", 12, -2},
		{"NaN concurrency", 12, math.NaN()},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, Demand{}, DemandFromConcurrency(c.inFlight, c.perInst))
		})
	}
}

// withDemand gives in a demand of n busy instances.
func withDemand(in Input, n float64) Input {
	in.Demand = Demand{Instances: n, Method: MethodLittlesLaw, Detail: "test"}
	return in
}

// withFresh gives in a fresh sample of v at Now.
func withFresh(in Input, v float64) Input {
	in.Fresh = Sample{At: in.Now, Value: v}
	return in
}

func TestDecideDemandAndFresh(t *testing.T) {
	checkDecisions(t, []decideCase{
		// Saturated with a known demand: one step to demand/target.
		{"demand sizes in one step", target(), withDemand(running(4, 100), 8.4), 14, true, ReasonScaleUpDemand, 14},
		{"demand below doubling still sizes to it", target(), withDemand(running(4, 100), 4.2), 7, true, ReasonScaleUpDemand, 7},
		{"demand never below the proportional step", target(func(p *Policy) { p.UpFactor = 3 }), withDemand(running(4, 100), 4.2), 12, true, ReasonScaleUpDemand, 12},
		{"demand below measured busy is ignored", target(), withDemand(running(4, 100), 3.9), 8, true, ReasonScaleUpSaturated, 8},
		{"demand equal to measured busy is used", target(), withDemand(running(4, 100), 4), 7, true, ReasonScaleUpDemand, 7},
		{"demand bounded by the up rate", target(func(p *Policy) { p.MaxScaleUpRate = 3 }), withDemand(running(4, 100), 20), 12, true, ReasonRateLimitedUp, 34},
		{"demand bounded by max", target(func(p *Policy) { p.MaxInstances = 10 }), withDemand(running(4, 100), 20), 10, true, ReasonClampedMax, 34},
		{"demand at exactly saturation", target(), withDemand(running(4, SaturatedUtilization), 8.4), 14, true, ReasonScaleUpDemand, 14},
		// Unsaturated: demand only shapes an up move utilization calls for.
		{"demand above busy raises an unsaturated up move", target(), withDemand(running(4, SaturatedUtilization-0.1), 8.4), 14, true, ReasonScaleUpDemand, 14},
		{"demand needing the proportional step leaves it", target(), withDemand(running(4, 80), 3.5), 6, true, ReasonScaleUp, 6},
		{"demand needing one more than proportional raises", target(), withDemand(running(4, 80), 3.7), 7, true, ReasonScaleUpDemand, 7},
		{"demand below busy leaves the up move", target(), withDemand(running(4, 90), 1), 6, true, ReasonScaleUp, 6},
		{"demand never starts a move in band", target(), withDemand(running(4, 64), 20), 4, true, ReasonHoldInBand, 4},
		{"demand never raises a scale-down", target(), withDemand(running(10, 30), 20), 5, true, ReasonScaleDown, 5},
		{"demand unused in nvcf mode", nvcf(), withDemand(running(4, 100), 20), 5, true, ReasonScaleUp, 5},

		// Fresh raises only.
		{"fresh saturated raises", target(), withFresh(running(4, 60), 100), 8, true, ReasonScaleUpSaturated, 8},
		{"fresh saturated with demand", target(), withDemand(withFresh(running(4, 60), 100), 8.4), 14, true, ReasonScaleUpDemand, 14},
		{"fresh higher raises", target(), withFresh(running(4, 60), 90), 6, true, ReasonScaleUp, 6},
		{"fresh lower never lowers", target(), withFresh(running(4, 60), 0), 4, true, ReasonHoldInBand, 4},
		{"fresh lower never lowers a scale-up", target(), withFresh(running(4, 90), 10), 6, true, ReasonScaleUp, 6},
		{"fresh never deepens a scale-down", target(), withFresh(running(10, 30), 0), 5, true, ReasonScaleDown, 5},
		{"fresh softens a scale-down", target(), withFresh(running(10, 30), 48), 8, true, ReasonScaleDown, 8},
		{"fresh reads the requested count while shrinking", target(), func() Input {
			in := withFresh(running(11, 45.5), 54.9)
			in.LastRequested = 9
			return in
		}(), 9, true, ReasonScaleDown, 9},
		{"fresh reads the running count while growing", target(), func() Input {
			in := withFresh(running(4, 60), 90)
			in.LastRequested = 8
			return in
		}(), 6, true, ReasonScaleUp, 6},
		{"fresh reads the running count with nothing requested", target(), func() Input {
			in := withFresh(running(4, 60), 90)
			in.LastRequested = 0
			return in
		}(), 6, true, ReasonScaleUp, 6},
		{"fresh ignored in nvcf mode", nvcf(), withFresh(running(5, 50), 100), 5, true, ReasonHoldInBand, 5},
		{"fresh NaN ignored", target(), withFresh(running(4, 60), math.NaN()), 4, true, ReasonHoldInBand, 4},
		{"fresh without time ignored", target(), func() Input { in := running(4, 60); in.Fresh.Value = 100; return in }(), 4, true, ReasonHoldInBand, 4},
		{"fresh blocks scale to zero", target(), withFresh(idleFor(3, 31*time.Minute, 5), 50), 3, true, ReasonHoldInBand, 3},
		{"fresh at down threshold blocks scale to zero", target(), withFresh(idleFor(3, 31*time.Minute, 5), 30), 2, true, ReasonScaleDown, 2},
		{"quiet fresh lets scale to zero through", target(), withFresh(idleFor(3, 31*time.Minute, 5), 29.9), 0, true, ReasonScaleToZero, 0},
		{"fresh cannot scale to zero", target(), withFresh(idleFor(3, 31*time.Minute, 50), 0), 3, true, ReasonHoldInBand, 3},

		// Missing settled data holds, but fresh may scale up.
		{"no settled sample, fresh up", target(), withFresh(running(1), 100), 2, true, ReasonScaleUpSaturated, 2},
		{"NaN settled sample, fresh up", target(), withFresh(running(2, math.NaN()), 90), 3, true, ReasonScaleUp, 3},
		{"no settled sample, fresh low holds", target(), withFresh(running(4), 0), 4, false, ReasonHoldNoMetrics, -1},
		{"no settled sample, fresh at target holds", target(), withFresh(running(4), 60), 4, false, ReasonHoldNoMetrics, -1},
		{"NaN settled sample, fresh low holds", target(), withFresh(running(4, math.NaN()), 0), 4, false, ReasonHoldUtilizationUnknown, -1},
		{"no settled sample, fresh below last request holds", target(), func() Input {
			in := withFresh(running(2), 90)
			in.LastRequested = 5
			return in
		}(), 5, false, ReasonHoldNoMetrics, -1},
		{"no settled sample, max below current holds", target(func(p *Policy) { p.MaxInstances = 3 }), withFresh(running(4), 100), 4, false, ReasonHoldNoMetrics, -1},
		{"no settled sample, max caps the raise", target(func(p *Policy) { p.MaxInstances = 6 }), withFresh(running(4), 100), 6, true, ReasonClampedMax, 8},
		{"no settled sample in nvcf mode holds", nvcf(), withFresh(running(4), 100), 4, false, ReasonHoldNoMetrics, -1},
	})
}

func TestDemandDetail(t *testing.T) {
	in := running(4, 100)
	in.Source = "worker"
	in.Demand = DemandFromRequests(Cost{SecondsPerRequest: 1.68, Weight: 100}, 5, 1)
	d := Decide(target(), in)
	require.Equal(t, ReasonScaleUpDemand, d.Reason)
	require.Contains(t, d.Detail, "source=worker ")
	require.Contains(t, d.Detail, "demand=8.4 busy instances (requests x learned cost: 5.0 req/s x 1.68 s / 1 threads) needs 14 at target")

	in.Demand = Demand{Instances: 1, Method: MethodLittlesLaw, Detail: "1.0 in flight / 1 concurrent per instance"}
	d = Decide(target(), in)
	require.Contains(t, d.Detail, "ignored: below the measured busy 4.00")

	d = Decide(target(), withFresh(running(4, 60), 100))
	require.Contains(t, d.Detail, "fresh=100.0 raises to 8")
}

func TestDemandFromArrivals(t *testing.T) {
	service := Cost{SecondsPerRequest: 1, Weight: 30}
	d := DemandFromArrivals(service, 5, 1, "counted on arrival")
	require.True(t, d.Known())
	require.InDelta(t, 5.0, d.Instances, 1e-9)
	require.Equal(t, MethodArrivalsServiceTime, d.Method)
	require.Equal(t, "demand=5.0 busy instances (arrivals x learned service time: 5.0 req/s counted on arrival x 1.00 s / 1 concurrent)", d.String())
	require.InDelta(t, 1.25, DemandFromArrivals(service, 5, 4, "").Instances, 1e-9, "an instance serves 4 at once")
	require.True(t, DemandFromArrivals(service, 0, 1, "").Known(), "no arrivals is a known zero")
	for _, c := range []struct {
		name                  string
		c                     Cost
		arrivals, concurrency float64
	}{
		{"service time not learned", Cost{SecondsPerRequest: 1, Weight: CostMinRequests - 1}, 5, 1},
		{"negative arrivals", service, -1, 1},
		{"Inf arrivals", service, math.Inf(1), 1},
		{"zero concurrency", service, 5, 0},
		{"NaN concurrency", service, 5, math.NaN()},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, Demand{}, DemandFromArrivals(c.c, c.arrivals, c.concurrency, "x"))
		})
	}
}

func TestArrivalsFromCompletions(t *testing.T) {
	service := Cost{SecondsPerRequest: 1, Weight: 30}
	t0 := time.Unix(1_800_000_000, 0)
	// window builds one window of rate completions per second whose
	// latency is latency seconds, step seconds after t0.
	window := func(step int, rate, latency float64) Completions {
		return Completions{At: t0.Add(time.Duration(step) * 4 * time.Second), Rate: rate, InFlight: rate * latency}
	}
	for _, c := range []struct {
		name       string
		prev, last Completions
		want       float64
		bounded    bool
	}{
		// No queue: the latency stays the service time, arrivals are completions.
		{"steady", window(0, 3, 1), window(1, 3, 1), 3, false},
		// 5 req/s arriving at 2 slots of 1 s: the latency of completing
		// requests grows by 1 - 2/5 = 0.6 s per second.
		{"queue building", window(0, 2, 5), window(1, 2, 7.4), 5, false},
		// 7 slots draining a backlog of 5 req/s: latency shrinks by 0.4 s/s.
		{"backlog draining", window(0, 7, 9), window(1, 7, 7.4), 5, false},
		// Capacity came mid-window: the two rates' mean pairs with the growth between them.
		{"capacity arriving", window(0, 2, 7.44), window(1, 3.87, 9.42), 5.81, false},
		// Growth of 0.9 s/s says 20 req/s, more than 9.2 in flight can have sent.
		{"bounded by little's law", window(0, 2, 1), window(1, 2, 4.6), 9.2, true},
		{"growth beyond one second per second", window(0, 2, 1), window(1, 2, 6), 12, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, how, ok := ArrivalsFromCompletions(c.prev, c.last, service)
			require.True(t, ok)
			require.InDelta(t, c.want, got, 0.01)
			require.Contains(t, how, "completed/s")
			require.Equal(t, c.bounded, strings.Contains(how, "bounded by"), how)
		})
	}
	_, how, _ := ArrivalsFromCompletions(window(0, 2, 5), window(1, 2, 7.4), service)
	require.Equal(t, "estimated: 2.0 completed/s, latency 5.00 s -> 7.40 s in 4s", how)

	for _, c := range []struct {
		name       string
		prev, last Completions
		service    Cost
	}{
		{"service time not learned", window(0, 2, 5), window(1, 2, 7.4), Cost{SecondsPerRequest: 1, Weight: 1}},
		{"no completions", window(0, 0, 5), window(1, 2, 7.4), service},
		{"missing window", Completions{}, window(1, 2, 7.4), service},
		{"NaN in flight", window(0, 2, 5), Completions{At: t0.Add(4 * time.Second), Rate: 2, InFlight: math.NaN()}, service},
		{"out of order", window(1, 2, 5), window(0, 2, 7.4), service},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, ok := ArrivalsFromCompletions(c.prev, c.last, c.service)
			require.False(t, ok)
		})
	}
}
