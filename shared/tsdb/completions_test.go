package tsdb

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCompletionIntervals(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	raw := func(name, replica string, values ...float64) Series {
		s := Series{Labels: map[string]string{"__name__": name, "function_id": "f", "replica": replica}}
		for i, v := range values {
			s.Samples = append(s.Samples, Sample{At: at(10 * i), Value: v})
		}
		return s
	}
	got := completionIntervals([]Series{
		// Replica a: 5, then a restart (the counters start again from
		// 0), then a scrape whose duration sum is missing (NaN).
		raw(MetricGatewayRequests, "a", 100, 105, 3, 8, 12),
		raw(MetricGatewayDurationSum, "a", 50, 60, 9, 19, math.NaN()),
		// Replica b, its own pair.
		raw(MetricGatewayDurationSum, "b", 0, 2),
		raw(MetricGatewayRequests, "b", 0, 1),
		// A request counter without its duration sum pairs with nothing.
		{Labels: map[string]string{"__name__": MetricGatewayRequests, "function_id": "g"}, Samples: []Sample{{At: at(0), Value: 1}, {At: at(10), Value: 2}}},
		// Another metric is not read.
		raw("up", "a", 1, 1),
	})
	require.Equal(t, map[string][]CompletionInterval{"f": {
		{From: at(0), To: at(10), Completed: 5, LatencySum: 10},
		{From: at(10), To: at(20), Completed: 3, LatencySum: 9},  // reset: what it counted since
		{From: at(20), To: at(30), Completed: 5, LatencySum: 10}, // then on as before
		{From: at(0), To: at(10), Completed: 1, LatencySum: 2},
	}}, sortedByReplica(got))
}

// sortedByReplica orders a function's intervals by series, then time (the
// map of pairs gives them in no order): a's first.
func sortedByReplica(m map[string][]CompletionInterval) map[string][]CompletionInterval {
	for fid, ivs := range m {
		var a, b []CompletionInterval
		for _, iv := range ivs {
			if iv.Completed == 1 {
				b = append(b, iv)
			} else {
				a = append(a, iv)
			}
		}
		m[fid] = append(a, b...)
	}
	return m
}
