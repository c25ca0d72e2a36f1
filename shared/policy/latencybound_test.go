package policy

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencyBound(t *testing.T) {
	learned := Cost{SecondsPerRequest: 1.2, Weight: 30, UpdatedAt: t0}
	partial := Cost{SecondsPerRequest: 4.1, Weight: 12, UpdatedAt: t0}
	for _, c := range []struct {
		name              string
		learned           Cost
		seconds, requests float64
		want              Cost
		known             bool
	}{
		{"a learned service time wins", learned, 28, 7, learned, true},
		// The demo's llm-chat: 7 requests of 4 s without a queue before its step.
		{"the lookback's latency without a queue", Cost{}, 28, 7, Cost{SecondsPerRequest: 4, Weight: 7, Early: true}, true},
		{"too few requests behind it", Cost{}, 16, 4, Cost{SecondsPerRequest: 4, Weight: 4, Early: true}, false},
		{"exactly enough", Cost{}, 4 * EarlyMinRequests, EarlyMinRequests, Cost{SecondsPerRequest: 4, Weight: EarlyMinRequests, Early: true}, true},
		{"the partial estimate has more requests", partial, 28, 7, Cost{SecondsPerRequest: 4.1, Weight: 12, Early: true}, true},
		{"the lookback has more than the partial estimate", partial, 50, 13, Cost{SecondsPerRequest: 50.0 / 13, Weight: 13, Early: true}, true},
		{"only the partial estimate", partial, 0, 0, Cost{SecondsPerRequest: 4.1, Weight: 12, Early: true}, true},
		{"NaN latency: the partial estimate", partial, math.NaN(), 7, Cost{SecondsPerRequest: 4.1, Weight: 12, Early: true}, true},
		{"nothing observed", Cost{}, 0, 0, Cost{Early: true}, false},
		{"Inf requests", Cost{}, 28, math.Inf(1), Cost{Early: true}, false},
		{"a corrupt partial estimate is not used", Cost{SecondsPerRequest: math.NaN(), Weight: 12}, 28, 7, Cost{SecondsPerRequest: 4, Weight: 7, Early: true}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := LatencyBound(c.learned, c.seconds, c.requests)
			require.Equal(t, c.want, got)
			require.Equal(t, c.known, got.Known())
		})
	}
}

func TestLatencyBoundIsNeverLearnedInto(t *testing.T) {
	b := LatencyBound(Cost{}, 28, 7)
	got := b.Learn(t0, 10, 10, 50)
	require.Equal(t, Cost{SecondsPerRequest: 1, Weight: 10, UpdatedAt: t0}, got, "learning starts afresh, not from the bound's 7 requests")
	require.False(t, got.Early)
}

func TestDemandFromArrivalsWithALatencyBound(t *testing.T) {
	b := LatencyBound(Cost{}, 28, 7)
	d := DemandFromArrivals(b, 5, 4, "counted on arrival")
	require.Equal(t, MethodArrivalsLatencyBound, d.Method)
	require.InDelta(t, 5.0, d.Instances, 1e-9)
	require.Equal(t, "demand=5.0 busy instances (arrivals x latency bound: 5.0 req/s counted on arrival x 4.00 s (early: 7 requests) / 4 concurrent)", d.String())
	require.Equal(t, Demand{}, DemandFromArrivals(LatencyBound(Cost{}, 16, 4), 5, 4, ""), "a bound from 4 requests sizes nothing")
}

// A gateway function of 4 s requests, 4 at once per instance, whose first
// real load is a step to 5 req/s after 7 requests: 4 instances complete
// 4 req/s and the latency of the completing requests grows 0.2 s a
// second. Sized from Little's law its 43.2 requests in flight count the
// queue and ask 15; sized from its arrivals x the latency its first
// requests had without a queue it asks for 5 busy instances: 7 at 75 %.
func TestDecideSizesAStepFromTheLatencyBound(t *testing.T) {
	p := target(func(p *Policy) { p.TargetUtilization = 75 })
	bound := LatencyBound(Cost{}, 28, 7)
	saturated := running(4, 60, 100)
	saturated.Source = "gateway"
	arrivals, how, ok := ArrivalsFromCompletions(
		Completions{At: t0.Add(-4 * time.Second), Rate: 4, InFlight: 4 * 10},
		Completions{At: t0, Rate: 4, InFlight: 4 * 10.8}, bound)
	require.True(t, ok)
	require.InDelta(t, 5, arrivals, 1e-9)
	saturated.Demand = DemandFromArrivals(bound, arrivals, 4, how)

	d := Decide(p, saturated)
	require.True(t, d.Valid)
	require.Equal(t, ReasonScaleUpDemand, d.Reason, d.Detail)
	require.Equal(t, 7, d.Desired, d.Detail)
	require.Contains(t, d.Detail, "demand=5.0 busy instances (arrivals x latency bound: 5.0 req/s estimated")

	little := saturated
	little.Demand = DemandFromConcurrency(4*10.8, 4)
	require.Equal(t, 15, Decide(p, little).Desired, "little's law counts the queue")

	// At that size the queue of the climb keeps it saturated: with the
	// bound the backlog is known, and it holds instead of doubling.
	draining := running(7, 100, 100)
	draining.Demand = DemandFromArrivals(bound, 5, 4, "estimated")
	draining.Backlog = Backlog{Requests: 40, UpdatedAt: t0}
	d = Decide(p, draining)
	require.Equal(t, ReasonHoldDraining, d.Reason, d.Detail)
	require.Equal(t, 7, d.Desired, d.Detail)
}

func TestEarlyCost(t *testing.T) {
	learned := Cost{SecondsPerRequest: 1.2, Weight: 30, UpdatedAt: t0}
	require.Equal(t, learned, EarlyCost(learned), "a learned cost wins")
	partial := Cost{SecondsPerRequest: 4, Weight: 15, UpdatedAt: t0}
	early := EarlyCost(partial)
	require.False(t, partial.Known())
	require.True(t, early.Known(), "15 requests size before 20 are learned")
	require.Equal(t, Cost{SecondsPerRequest: 4, Weight: 15, UpdatedAt: t0, Early: true}, early)
	require.False(t, EarlyCost(Cost{SecondsPerRequest: 4, Weight: EarlyMinRequests - 0.1}).Known())
	require.False(t, EarlyCost(Cost{SecondsPerRequest: math.NaN(), Weight: 15}).Known())
	require.False(t, EarlyCost(Cost{}).Known())

	d := DemandFromRequests(early, 1.25, 1)
	require.Equal(t, MethodRequestsEarlyCost, d.Method)
	require.InDelta(t, 5, d.Instances, 1e-9)
	require.Equal(t, "demand=5.0 busy instances (requests x early cost: 1.2 req/s x 4.00 s (early: 15 requests) / 1 threads)", d.String())
}

// A new worker version of 4 s requests whose first real load is a step
// from 0.125 to 1.25 req/s after 15 requests: without a cost it doubles
// every cycle while the queue of its climb keeps it saturated; with the
// early cost it is sized for 5 busy instances, 7 at 75 %, in one step,
// and held there while that queue drains.
func TestDecideSizesAWorkerStepFromTheEarlyCost(t *testing.T) {
	p := target(func(p *Policy) { p.TargetUtilization = 75 })
	partial := Cost{SecondsPerRequest: 4, Weight: 15, UpdatedAt: t0}
	saturated := running(1, 50, 100)
	saturated.Demand = DemandFromRequests(partial, 1.25, 1)
	d := Decide(p, saturated)
	require.Equal(t, ReasonScaleUpSaturated, d.Reason, "no cost learned: doubles")
	require.Equal(t, 2, d.Desired, d.Detail)

	saturated.Demand = DemandFromRequests(EarlyCost(partial), 1.25, 1)
	d = Decide(p, saturated)
	require.Equal(t, ReasonScaleUpDemand, d.Reason, d.Detail)
	require.Equal(t, 7, d.Desired, d.Detail)
	require.Contains(t, d.Detail, "requests x early cost")

	draining := running(7, 100, 100)
	draining.Demand = DemandFromRequests(EarlyCost(partial), 1.25, 1)
	draining.Backlog = Backlog{}.Fold(t0, 60*1.25, 60*7, EarlyCost(partial))
	require.False(t, draining.Backlog.Queued(), "7 workers serve 105 requests a minute of 4 s each, more than arrived")
	draining.Backlog = Backlog{Requests: 200, UpdatedAt: t0.Add(-time.Minute)}.Fold(t0, 60*1.25, 60*7, EarlyCost(partial))
	require.InDelta(t, 200+75-105, draining.Backlog.Requests, 1e-9, "the early cost counts the requests served")
	d = Decide(p, draining)
	require.Equal(t, ReasonHoldDraining, d.Reason, d.Detail)
	require.Equal(t, 7, d.Desired, d.Detail)
}
