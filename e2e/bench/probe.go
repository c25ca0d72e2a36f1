package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"function/shared/tsdb"
)

// SelectorProbe is what the TSDB's first query over one bucket's worth of
// version ids cost in three shapes: one regex matcher with the ids in the
// order Cassandra returns a bucket (token order: random as far as the
// TSDB is concerned), one with them sorted, and the union (or) of one
// expression per group of 20 sorted ids, the shape the tsdb package
// sends. Each set of ids is queried once cold and once again; the sets
// are disjoint, so no query finds the work of another in the TSDB's
// caches.
type SelectorProbe struct {
	N               int     `json:"n"`
	IDs             int     `json:"ids"`
	UnsortedColdS   float64 `json:"unsortedColdSeconds"`
	UnsortedRepeatS float64 `json:"unsortedRepeatSeconds"`
	SortedColdS     float64 `json:"sortedColdSeconds"`
	SortedRepeatS   float64 `json:"sortedRepeatSeconds"`
	UnionColdS      float64 `json:"unionColdSeconds"`
	UnionRepeatS    float64 `json:"unionRepeatSeconds"`
}

// probeSelectors times the scale function's utilization query over 1,000
// random versions' ids in each shape; it needs N >= 4,000 so that the
// sets stay a small part of the fleet (IDs is 0 below that).
func probeSelectors(ctx context.Context, vm, label string, n int) (SelectorProbe, error) {
	p := SelectorProbe{N: n}
	const k = 1000
	if n < 4*k {
		return p, nil
	}
	p.IDs = k
	perm := rand.New(rand.NewPCG(uint64(n), 17)).Perm(n)
	util := func(ids []string) string {
		by := "by (function_id, function_version_id)"
		ms := `{function_version_id=~"` + strings.Join(ids, "|") + `"}`
		return fmt.Sprintf(`100 * sum %s (rate(%s%s[70s])) / sum %s (%s%s)`, by, tsdb.MetricBusySeconds, ms, by, tsdb.MetricThreadCount, ms)
	}
	const group = 20
	shapes := []func(ids []string) string{
		util, // token order
		func(ids []string) string { sort.Strings(ids); return util(ids) },
		func(ids []string) string {
			sort.Strings(ids)
			var parts []string
			for i := 0; i < len(ids); i += group {
				parts = append(parts, util(ids[i:min(i+group, len(ids))]))
			}
			return strings.Join(parts, " or ")
		},
	}
	query := func(q string) (float64, error) {
		end := time.Now().Truncate(time.Minute)
		form := url.Values{"query": {q}, "start": {strconv.FormatInt(end.Add(-9*time.Minute).Unix(), 10)},
			"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"60"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, vm+"/api/v1/query_range", strings.NewReader(form.Encode()))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("probe query: %s: %.200s", resp.Status, b)
		}
		return time.Since(start).Seconds(), nil
	}
	into := [][2]*float64{{&p.UnsortedColdS, &p.UnsortedRepeatS}, {&p.SortedColdS, &p.SortedRepeatS}, {&p.UnionColdS, &p.UnionRepeatS}}
	for set, shape := range shapes {
		var vids []string
		for _, i := range perm[set*k : (set+1)*k] {
			_, vid := versionIDs(label, i)
			vids = append(vids, regexp.QuoteMeta(vid))
		}
		q := shape(vids)
		for _, t := range into[set] {
			var err error
			if *t, err = query(q); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

func printProbe(p SelectorProbe) {
	fmt.Printf("   first query over %d ids of %d: %.3fs in token order, %.3fs sorted, %.3fs as a union of groups of 20 (%.1fx faster than token order); repeated: %.3fs, %.3fs, %.3fs\n",
		p.IDs, p.N, p.UnsortedColdS, p.SortedColdS, p.UnionColdS, p.UnsortedColdS/p.UnionColdS, p.UnsortedRepeatS, p.SortedRepeatS, p.UnionRepeatS)
}
