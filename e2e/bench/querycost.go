package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// QueryCost is what one kind of query (one shape: the utilization range
// query, the fresh request instant, ...) cost the bench's
// VictoriaMetrics. Recorded comes from its own query log
// (/api/v1/status/top_queries: every query the cycles issued, wall time
// summed); Rerun replays each distinct query of the kind once, one at a
// time, on the warm server after the measured cycles, and reads the
// server's CPU time, so the kinds can be ranked by the CPU they cost
// rather than by wall time shared with whatever ran beside them.
type QueryCost struct {
	Kind      string  `json:"kind"`
	Distinct  int     `json:"distinct"` // distinct query texts: one per chunk of ids
	Count     int     `json:"count"`    // executions recorded over all cycles
	SumS      float64 `json:"sumDurationSeconds"`
	RerunCPUS float64 `json:"rerunCpuSeconds"`
	RerunS    float64 `json:"rerunSeconds"`
}

// topQuery is one entry of VictoriaMetrics' topBySumDuration.
type topQuery struct {
	Query            string  `json:"query"`
	TimeRangeSeconds float64 `json:"timeRangeSeconds"`
	SumS             float64 `json:"sumDurationSeconds"`
	Count            int     `json:"count"`
}

// queryCosts ranks the kinds of query the cycles sent to the bench's
// VictoriaMetrics (pid vmPID) by the CPU a replay of one of each costs;
// run it after the measured cycles, so the replay finds the server as
// warm as a cycle does and no cycle shares its CPU.
func queryCosts(ctx context.Context, vm string, vmPID int) ([]QueryCost, error) {
	top, err := topQueries(ctx, vm)
	if err != nil {
		return nil, err
	}
	byKind := map[string]*QueryCost{}
	texts := map[string][]topQuery{}
	for _, q := range top {
		k := queryKind(q.Query, q.TimeRangeSeconds)
		c := byKind[k]
		if c == nil {
			c = &QueryCost{Kind: k}
			byKind[k] = c
		}
		c.Distinct++
		c.Count += q.Count
		c.SumS += q.SumS
		texts[k] = append(texts[k], q)
	}
	var out []QueryCost
	for k, c := range byKind {
		cpu0, t0 := procCPU(vmPID), time.Now()
		for _, q := range texts[k] {
			if err := replay(ctx, vm, q); err != nil {
				return nil, fmt.Errorf("replay %s: %w", k, err)
			}
		}
		c.RerunCPUS, c.RerunS = procCPU(vmPID)-cpu0, time.Since(t0).Seconds()
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RerunCPUS > out[j].RerunCPUS })
	return out, nil
}

// replay runs q as the functions do: a range query ending now (the
// worker source's 60 s grid, discovery's fifth of its lookback) or at the
// current step (the control-plane and gateway sources' grid), an instant
// query now.
func replay(ctx context.Context, vm string, q topQuery) error {
	now := time.Now()
	if q.TimeRangeSeconds <= 0 {
		return replayAt(ctx, vm, q, now, now, 0)
	}
	step, end := time.Minute, now
	switch {
	case strings.Contains(q.Query, "nca_id"):
		step = time.Duration(q.TimeRangeSeconds/5) * time.Second
	case strings.Contains(q.Query, "nvcf_function_") || strings.Contains(q.Query, "llm_api_gateway_") ||
		strings.Contains(q.Query, "function_request_latency"):
		end = now.Truncate(step)
	}
	return replayAt(ctx, vm, q, end.Add(-time.Duration(q.TimeRangeSeconds)*time.Second), end, step)
}

// replayAt runs q over start..end every step, or instantly at end when
// step is 0.
func replayAt(ctx context.Context, vm string, q topQuery, start, end time.Time, step time.Duration) error {
	form := url.Values{"query": {q.Query}}
	path := "/api/v1/query"
	if step > 0 {
		path = "/api/v1/query_range"
		form.Set("start", strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64))
		form.Set("end", strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64))
		form.Set("step", strconv.FormatInt(int64(step.Seconds()), 10))
	} else {
		form.Set("time", strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, vm+path, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %.200s", resp.Status, b)
	}
	return nil
}

// queryKind names a query's shape: range or instant, and what it
// reads. The ids in it do not matter; a bucket's query is a union of one
// expression per group of ids, all of one shape, so the first group's
// expression names it.
func queryKind(q string, timeRange float64) string {
	kind := "instant "
	if timeRange > 0 {
		kind = "range "
	}
	leaf := firstLeaf(q)
	switch {
	case strings.Contains(q, "nca_id"):
		return kind + "discovery: " + truncate(blankStrings(leaf), 60)
	case strings.Contains(leaf, "100 *"):
		return kind + "utilization (busy / threads)"
	case strings.Contains(leaf, "count by"):
		return kind + "instance count"
	case strings.Contains(leaf, "avg by"):
		return kind + "threads per instance"
	case strings.Contains(leaf, "function_request") && strings.Contains(leaf, "busy_seconds"):
		return kind + "busy, threads and requests"
	case strings.Contains(leaf, "function_request"):
		return kind + "requests"
	case strings.Contains(leaf, "busy_seconds") && strings.Contains(leaf, "thread_count"):
		return kind + "busy and threads"
	case strings.Contains(leaf, "busy_seconds"):
		return kind + "busy seconds"
	case strings.Contains(leaf, "thread_count"):
		return kind + "thread counts"
	}
	return kind + truncate(blankStrings(leaf), 60)
}

// firstLeaf is the first operand of a balanced tree of or-ed expressions
// (see the tsdb package's groupJoin): past the leading parentheses, up to
// the parenthesis that closes the one before it. A union(...) of groups
// comes back whole; its groups are all of one kind, which is what
// queryKind reads.
func firstLeaf(q string) string {
	q = strings.TrimLeft(q, "(")
	depth := 0
	inString := false
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return q[:i]
			}
			depth--
		}
	}
	return q
}

// blankStrings empties every string literal: ids are not shape.
func blankStrings(q string) string {
	var b strings.Builder
	inString := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
			b.WriteByte(c)
		case !inString:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func printQueryCosts(n int, costs []QueryCost) {
	var cpu float64
	for _, c := range costs {
		cpu += c.RerunCPUS
	}
	fmt.Printf("   VictoriaMetrics by query kind at N=%d (replayed once each after the cycles; recorded: every cycle, wall time):\n", n)
	fmt.Printf("   %-44s %8s %8s %10s %10s %7s %10s\n", "kind", "distinct", "runs", "recorded s", "replay CPU", "share", "replay s")
	for _, c := range costs {
		share := 0.0
		if cpu > 0 {
			share = 100 * c.RerunCPUS / cpu
		}
		fmt.Printf("   %-44s %8d %8d %10.2f %10.2f %6.1f%% %10.2f\n", c.Kind, c.Distinct, c.Count, c.SumS, c.RerunCPUS, share, c.RerunS)
	}
}
