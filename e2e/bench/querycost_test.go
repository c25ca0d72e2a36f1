package main

import "testing"

// The kinds the cost ranking reports must follow the query's shape, not
// its ids, and tell the range and instant forms apart.
func TestQueryKind(t *testing.T) {
	busy := `sum by (function_id, function_version_id) (rate(nvcf_worker_service_worker_thread_busy_seconds_total{function_version_id=~"a|b",x="y)"}[70s]))`
	threads := `nvcf_worker_service_worker_thread_count_total{function_version_id=~"c|d"}`
	util := `100 * ` + busy + ` / sum by (function_id, function_version_id) (` + threads + `)`
	reqs := `sum by (function_id, function_version_id) (rate(function_request_total{function_version_id=~"a"}[70s])) or sum by (function_id, function_version_id) (rate(function_request{function_version_id=~"a"}[70s]))`
	// The groups of a query are joined by a balanced tree of or, or by
	// union(...) on VictoriaMetrics (see the tsdb package's groupJoin).
	or := func(q string) string { return "((" + q + ") or (" + q + ")) or (" + q + ")" }
	union := func(q string) string { return "union(" + q + ", " + q + ", " + q + ")" }
	for _, tc := range []struct {
		q         string
		timeRange float64
		want      string
	}{
		{or(busy), 540, "range busy seconds"},
		{union(busy), 540, "range busy seconds"},
		{busy, 0, "instant busy seconds"},
		{or(threads), 540, "range thread counts"},
		{union(threads), 540, "range thread counts"},
		{or(util), 0, "instant utilization (busy / threads)"},
		{or(reqs), 540, "range requests"},
		{union(reqs), 540, "range requests"},
		{`count by (function_id, function_version_id) (` + threads + `)`, 540, "range instance count"},
		{`count by (function_id, function_version_id, nca_id) (` + threads + `)`, 600, `range discovery: count by (function_id, function_version_id, nca_id) (nvcf_wo...`},
	} {
		if got := queryKind(tc.q, tc.timeRange); got != tc.want {
			t.Errorf("queryKind(%.60s..., %v) = %q, want %q", tc.q, tc.timeRange, got, tc.want)
		}
	}
}
