package tsdb

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"function/shared/testenv"
)

// A stock VictoriaMetrics (-search.maxQueryLen 16 KiB) answers every query
// of a 1,000-version bucket chunked at the default, with the environment
// and an extra label filter on, for all three sources; at twice the
// default it refuses the worker request query (the first of the two that
// list the ids twice) with 422, so the bound and the default are what
// decide it, and the previous default (12288) would fail here.
func TestDefaultSelectorFitsAStockVictoriaMetrics(t *testing.T) {
	url := testenv.StartStockVM(t)
	var versions []FunctionVersion
	var functions []string
	for i := range 1000 {
		fid := fmt.Sprintf("%08x-1111-4222-8333-%012d", i*7919, i)
		versions = append(versions, FunctionVersion{FunctionID: fid, FunctionVersionID: fmt.Sprintf("%08x-aaaa-4bbb-8ccc-%012d", i*104729, i)})
		functions = append(functions, fid)
	}
	o := MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute,
		Env: EnvProduction, Filter: LabelFilter{Name: "cluster_group", Value: "nvcf-gpu-cluster-group-01"}}
	ctx, now := context.Background(), time.Now()
	query := func(limit int) (*Client, error) {
		c, err := New(Config{URL: url, MaxSelectorBytes: limit, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.BucketMetrics(ctx, versions, now, o)
		return c, err
	}
	c, err := query(DefaultMaxSelectorBytes)
	if err != nil {
		t.Fatalf("worker metrics at the default %d bytes of ids: %v", DefaultMaxSelectorBytes, err)
	}
	if n := c.Queries(); n <= 6 {
		t.Fatalf("%d queries: 1,000 ids (37 KB) must need several chunks at %d bytes", n, DefaultMaxSelectorBytes)
	}
	if _, err := c.ControlPlaneMetrics(ctx, versions, now, o); err != nil {
		t.Fatalf("control-plane metrics at the default: %v", err)
	}
	if _, err := c.GatewayMetrics(ctx, functions, now, o); err != nil {
		t.Fatalf("gateway metrics at the default: %v", err)
	}
	_, err = query(2 * DefaultMaxSelectorBytes)
	if err == nil || !strings.Contains(err.Error(), "422") || !strings.HasPrefix(err.Error(), "requests:") {
		t.Fatalf("at %d bytes of ids the stock limit must refuse the request query with 422, got %v", 2*DefaultMaxSelectorBytes, err)
	}
}
