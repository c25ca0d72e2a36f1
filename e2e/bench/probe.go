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
// version ids cost with the ids in the order Cassandra returns a bucket
// (token order: random as far as the TSDB is concerned) and sorted, the
// order the tsdb package sends them in. Each set of ids is queried once
// cold and once again warm; the sets are disjoint, so no query finds the
// work of another in the TSDB's caches.
type SelectorProbe struct {
	N               int     `json:"n"`
	IDs             int     `json:"ids"`
	UnsortedColdS   float64 `json:"unsortedColdSeconds"`
	UnsortedRepeatS float64 `json:"unsortedRepeatSeconds"`
	SortedColdS     float64 `json:"sortedColdSeconds"`
	SortedRepeatS   float64 `json:"sortedRepeatSeconds"`
}

// probeSelectors times the scale function's utilization query over 1,000
// random versions' ids, unsorted and sorted; it needs N >= 4,000 so that
// the sets stay a small part of the fleet (IDs is 0 below that).
func probeSelectors(ctx context.Context, vm, label string, n int) (SelectorProbe, error) {
	p := SelectorProbe{N: n}
	const k = 1000
	if n < 4*k {
		return p, nil
	}
	p.IDs = k
	perm := rand.New(rand.NewPCG(uint64(n), 17)).Perm(n)
	ids := func(set int, sorted bool) string {
		var vids []string
		for _, i := range perm[set*k : (set+1)*k] {
			_, vid := versionIDs(label, i)
			vids = append(vids, regexp.QuoteMeta(vid))
		}
		if sorted {
			sort.Strings(vids)
		}
		return strings.Join(vids, "|")
	}
	query := func(sel string) (float64, error) {
		by := "by (function_id, function_version_id)"
		ms := `{function_version_id=~"` + sel + `"}`
		q := fmt.Sprintf(`100 * sum %s (increase(%s%s[70s])) / 70 / sum %s (%s%s)`, by, tsdb.MetricBusySeconds, ms, by, tsdb.MetricThreadCount, ms)
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
	var err error
	for _, step := range []struct {
		into   *float64
		set    int
		sorted bool
	}{
		{&p.UnsortedColdS, 0, false}, {&p.UnsortedRepeatS, 0, false},
		{&p.SortedColdS, 1, true}, {&p.SortedRepeatS, 1, true},
	} {
		if *step.into, err = query(ids(step.set, step.sorted)); err != nil {
			return p, err
		}
	}
	return p, nil
}

func printProbe(p SelectorProbe) {
	fmt.Printf("   first query over %d ids of %d: %.3fs in token order, %.3fs sorted (%.1fx); repeated: %.3fs and %.3fs\n",
		p.IDs, p.N, p.UnsortedColdS, p.SortedColdS, p.UnsortedColdS/p.SortedColdS, p.UnsortedRepeatS, p.SortedRepeatS)
}
