package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ReadShape is what one way of reading a bucket's worker series cost the
// bench's VictoriaMetrics: every chunk's busy-seconds, thread-count and
// request expressions replayed once in that shape, CPU per bucket.
type ReadShape struct {
	Shape   string    `json:"shape"`
	Queries int       `json:"queriesPerRound"`
	CPUS    []float64 `json:"cpuSecondsPerBucket"` // one per round
}

// readShapes replays the scale function's worker queries (the range
// texts the cycles sent) in three shapes, interleaved over rounds so
// that cache warmth and the machine's other load fall on all three
// alike: (a) the aligned step grid plus an instant query at now, six
// queries per chunk; (b) one range whose newest point is now, three per
// chunk (off the grid: no rollup result cache); (c) the aligned grid
// alone, three per chunk.
func readShapes(ctx context.Context, vm string, vmPID, buckets, rounds int) ([]ReadShape, error) {
	top, err := topQueries(ctx, vm)
	if err != nil {
		return nil, err
	}
	var texts []topQuery
	for _, q := range top {
		switch queryKind(q.Query, q.TimeRangeSeconds) {
		case "range busy seconds", "range thread counts", "range requests":
			texts = append(texts, q)
		}
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("no worker range queries recorded")
	}
	const step = time.Minute
	aligned := func(q topQuery, now time.Time) error {
		end := now.Truncate(step)
		return replayAt(ctx, vm, q, end.Add(-time.Duration(q.TimeRangeSeconds)*time.Second), end, step)
	}
	atNow := func(q topQuery, now time.Time) error {
		return replayAt(ctx, vm, q, now.Add(-time.Duration(q.TimeRangeSeconds)*time.Second), now, step)
	}
	instant := func(q topQuery, now time.Time) error {
		return replayAt(ctx, vm, q, now, now, 0)
	}
	shapes := []struct {
		name  string
		reads []func(topQuery, time.Time) error
	}{
		{"(a) aligned range + instant at now", []func(topQuery, time.Time) error{aligned, instant}},
		{"(b) range ending at now", []func(topQuery, time.Time) error{atNow}},
		{"(c) aligned range alone", []func(topQuery, time.Time) error{aligned}},
	}
	out := make([]ReadShape, len(shapes))
	for r := 0; r < rounds; r++ {
		for i, s := range shapes {
			cpu0 := procCPU(vmPID)
			for _, q := range texts {
				for _, read := range s.reads {
					if err := read(q, time.Now()); err != nil {
						return nil, fmt.Errorf("%s: %w", s.name, err)
					}
				}
			}
			out[i].Shape, out[i].Queries = s.name, len(texts)*len(s.reads)
			out[i].CPUS = append(out[i].CPUS, (procCPU(vmPID)-cpu0)/float64(buckets))
		}
	}
	return out, nil
}

// topQueries is every query VictoriaMetrics logged since it started.
func topQueries(ctx context.Context, vm string) ([]topQuery, error) {
	var top struct {
		TopBySumDuration []topQuery `json:"topBySumDuration"`
	}
	u := vm + "/api/v1/status/top_queries?topN=100000&maxLifetime=24h"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&top); err != nil {
		return nil, fmt.Errorf("top queries: %w", err)
	}
	return top.TopBySumDuration, nil
}

func printReadShapes(n int, shapes []ReadShape) {
	fmt.Printf("   VictoriaMetrics CPU-s per bucket reading the worker series at N=%d, by shape (one column per round):\n", n)
	for _, s := range shapes {
		var cols []string
		for _, c := range s.CPUS {
			cols = append(cols, fmt.Sprintf("%6.3f", c))
		}
		fmt.Printf("   %-38s %5d queries  %s\n", s.Shape, s.Queries, strings.Join(cols, " "))
	}
}
