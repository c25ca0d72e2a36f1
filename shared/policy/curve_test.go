package policy

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queueIntervals are the scrape intervals of a FIFO queue fed rate req/s
// whose completions per interval are done[i] (capacity changing as it
// pleases): the k-th completion arrived at k / rate, so an interval's
// latency sum is its completions' times in the system.
func queueIntervals(rate, scrape float64, done ...int) []CompletionInterval {
	var out []CompletionInterval
	k := 0
	for i, n := range done {
		from := time.Unix(1_800_000_000, 0).Add(time.Duration(float64(i) * scrape * float64(time.Second)))
		to := from.Add(time.Duration(scrape * float64(time.Second)))
		sum := 0.0
		for j := range n {
			// Evenly spread completions inside the interval.
			completed := float64(i)*scrape + (float64(j)+0.5)*scrape/float64(n)
			sum += completed - float64(k)/rate
			k++
		}
		out = append(out, CompletionInterval{From: from, To: to, Completed: float64(n), LatencySum: sum})
	}
	return out
}

func TestArrivalsFromCurve(t *testing.T) {
	service := Cost{SecondsPerRequest: 1, Weight: 30}
	// 5 req/s arriving, 3 then 7 completing a second: whatever the
	// completions do, the curve reads the arrivals.
	ivs := queueIntervals(5, 2, 6, 6, 6, 14, 14, 14)
	got, how, ok := ArrivalsFromCurve(ivs, 100, service)
	require.True(t, ok)
	require.InEpsilon(t, 5, got, 0.02, how)
	require.True(t, strings.HasPrefix(how, "estimated: 60 completions in 6 scrape intervals"), how)

	// Order does not matter; empty intervals and unusable ones are skipped.
	shuffled := []CompletionInterval{ivs[3], {From: ivs[0].From, To: ivs[0].To}, ivs[0], ivs[5], ivs[1],
		{From: ivs[2].From, To: ivs[2].To, Completed: math.NaN(), LatencySum: 1}, ivs[4], ivs[2]}
	again, _, ok := ArrivalsFromCurve(shuffled, 100, service)
	require.True(t, ok)
	require.InDelta(t, got, again, 1e-9)

	// Never above Little's law: 8 in flight over a 1 s service time.
	bounded, how, ok := ArrivalsFromCurve(ivs, 4, service)
	require.True(t, ok)
	require.Equal(t, 4.0, bounded)
	require.Contains(t, how, "bounded by 4.0 in flight / service time")

	// Not enough to fit: too few intervals, no service time, no spread.
	_, _, ok = ArrivalsFromCurve(ivs[:2], 100, service)
	require.False(t, ok, "two intervals")
	_, _, ok = ArrivalsFromCurve(ivs, 100, Cost{})
	require.False(t, ok, "no service time")
	same := []CompletionInterval{ivs[0], ivs[0], ivs[0]}
	_, _, ok = ArrivalsFromCurve(same, 100, service)
	require.False(t, ok, "one arrival time")
}

// The gateway's replicas each have their own series, usually scraped at
// the same times, so their intervals tie on both ends; the TSDB's answer
// gives them in no particular order (a map's), and the estimate must not
// depend on it. (Before, a's first failed the fit and b's first read 0.69
// req/s. Both orders now read 0.69 for the 4 req/s that arrive: pooling
// series whose latencies differ under-reads, as
// functions/scale's TestGatewayArrivalsThroughReplicas measures.)
func TestArrivalsFromCurveTiedIntervals(t *testing.T) {
	service := Cost{SecondsPerRequest: 1, Weight: 30}
	a := queueIntervals(2, 2, 4, 4, 4)
	// Replica b: the same scrapes, its requests 10 s longer in the system.
	b := queueIntervals(2, 2, 3, 5, 4)
	for i := range b {
		b[i].LatencySum += 10 * b[i].Completed
	}
	ab, _, ok := ArrivalsFromCurve(append(slices.Clone(a), b...), 100, service)
	require.True(t, ok)
	ba, _, ok := ArrivalsFromCurve(append(slices.Clone(b), a...), 100, service)
	require.True(t, ok)
	require.InDelta(t, ab, ba, 1e-9, "a's intervals first or b's")
}
