package tsdb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
)

// OnQuery sees each logical query once, retries included, labelled with the
// caller the context names; the Observer sees each attempt with its status.
func TestOnQueryCountsQueriesByCaller(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first attempt fails, the retry succeeds
			w.Write([]byte(`{"status":"error","errorType":"unavailable","error":"later"}`))
			return
		}
		w.Write([]byte(okBody))
	}))
	defer srv.Close()
	var mu sync.Mutex
	byCaller := map[string]int{}
	var statuses []string
	cl := newTestClient(t, srv.URL, func(c *Config) {
		c.OnQuery = func(caller string) { mu.Lock(); byCaller[caller]++; mu.Unlock() }
		c.Observer = func(endpoint, status string, _ time.Duration) {
			mu.Lock()
			statuses = append(statuses, endpoint+" "+status)
			mu.Unlock()
		}
	})
	ctx := context.Background()
	_, _, err := cl.Query(WithCaller(ctx, "scale"), "up", time.Now())
	require.NoError(t, err)
	_, _, err = cl.QueryRange(WithCaller(ctx, "discovery"), "up", time.Now().Add(-time.Minute), time.Now(), time.Minute)
	require.NoError(t, err)
	_, _, err = cl.Query(ctx, "up", time.Now())
	require.NoError(t, err)
	require.NoError(t, cl.Ping(ctx))
	require.NoError(t, cl.Ping(WithCaller(ctx, "probe")))

	require.Equal(t, map[string]int{"scale": 1, "discovery": 1, "other": 1, "readiness": 1, "probe": 1}, byCaller)
	require.Equal(t, int64(5), cl.Queries())
	require.Equal(t, []string{"query 503", "query 200", "query_range 200", "query 200", "query 200", "query 200"}, statuses)
}

// A query its caller cancelled is observed as "cancelled", not as a
// transport error of the TSDB, and is not retried.
func TestCancelledQueryIsObservedAsCancelled(t *testing.T) {
	vm := testenv.RequireVM(t)
	var mu sync.Mutex
	var statuses []string
	cl := newTestClient(t, vm, func(c *Config) {
		c.Observer = func(endpoint, status string, _ time.Duration) {
			mu.Lock()
			statuses = append(statuses, endpoint+" "+status)
			mu.Unlock()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := cl.Query(ctx, "up", time.Now())
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []string{"query cancelled"}, statuses)
}
