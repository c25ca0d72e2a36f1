package tsdb

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/tsdb/tsdbtest"
)

// queryRecorder sits in front of a real server, records every query text
// it passes on, and answers the union probe with 503 while failProbe is
// set: a server that failed for a moment.
type queryRecorder struct {
	mu        sync.Mutex
	queries   []string
	failProbe bool
}

func (r *queryRecorder) start(t *testing.T, target string) string {
	u, err := url.Parse(target)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		require.NoError(t, req.ParseForm())
		q := req.PostForm.Get("query")
		// The form was read: hand the proxy a body it can send again.
		body := req.PostForm.Encode()
		req.Body, req.ContentLength = httptestBody(body), int64(len(body))
		r.mu.Lock()
		r.queries = append(r.queries, q)
		fail := r.failProbe && q == unionProbe
		r.mu.Unlock()
		if fail {
			http.Error(w, `{"status":"error","errorType":"unavailable","error":"injected"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// since returns the queries recorded after the first n.
func (r *queryRecorder) since(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.queries[n:]...)
}

func (r *queryRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queries)
}

// TestGroupsJoinByUnionOnlyWhereTheServerHasIt: a bucket of three groups
// of ids is one query per family, joined by union on VictoriaMetrics and
// by or on Prometheus, which has no union; the server is asked once, and
// asked again a minute after it failed to answer, not at every call,
// meanwhile joined by or. On
// VictoriaMetrics the union answers what the or answers.
func TestGroupsJoinByUnionOnlyWhereTheServerHasIt(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			target := b.url(t)
			now := time.Now().Add(-time.Minute).Truncate(time.Second)
			run := fmt.Sprintf("union%d", time.Now().UnixNano())
			extra := map[string]string{"test_run": run}
			var ws []tsdbtest.Worker
			var versions []FunctionVersion
			for i := 0; i < 2*lookupGroup+5; i++ {
				fid, vid := fmt.Sprintf("fu-%03d", i), fmt.Sprintf("vu-%03d", i)
				ws = append(ws, tsdbtest.Worker{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca-u", Instances: 1 + i%3,
					Utilization: 0.1 + 0.02*float64(i), RequestsPerSecond: 1 + float64(i%5), Extra: extra})
				versions = append(versions, FunctionVersion{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca-u"})
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			require.NoError(t, b.ingest(ctx, target, tsdbtest.Generate(ws, now.Add(-20*time.Minute), now)))
			opts := MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute,
				Filter: LabelFilter{Name: "test_run", Value: run}}
			var rec queryRecorder
			rec.failProbe = true
			// One attempt a query: the recorder sees each query once.
			c, err := New(Config{URL: rec.start(t, target), MaxAttempts: 1})
			require.NoError(t, err)
			// Ingestion becomes searchable within a moment on both servers.
			require.Eventually(t, func() bool {
				m, err := c.BucketMetrics(ctx, versions, now, opts)
				return err == nil && len(m) == len(versions) && m[versions[len(versions)-1]].InstancesKnown
			}, 30*time.Second, 500*time.Millisecond)

			// The probe failed: or, and not asked again until
			// unionProbeRetry has passed.
			n := rec.count()
			viaOr, err := c.BucketMetrics(ctx, versions, now, opts)
			require.NoError(t, err)
			got := rec.since(n)
			require.Len(t, got, 3, "three queries and no probe within a minute of the failed one: %q", got)
			for _, q := range got {
				require.Contains(t, q, ") or (", "joined by or while the server has not answered")
				require.NotContains(t, q, "union(")
			}
			// Once that has passed, the next call asks again.
			c.unionRetryAt.Store(time.Now().UnixNano())
			rec.mu.Lock()
			rec.failProbe = false
			rec.mu.Unlock()
			n = rec.count()
			_, err = c.BucketMetrics(ctx, versions, now, opts)
			require.NoError(t, err)
			got = rec.since(n)
			require.Len(t, got, 4, "the probe and three queries: %q", got)
			require.Equal(t, unionProbe, got[0], "asked again after it failed to answer")
			wantUnion := b.name == "victoria-metrics"
			n = rec.count()
			joined, err := c.BucketMetrics(ctx, versions, now, opts)
			require.NoError(t, err)
			got = rec.since(n)
			require.Len(t, got, 3, "asked once: %q", got)
			for _, q := range got {
				require.Equal(t, wantUnion, strings.HasPrefix(q, "union("), "%s: %.80s", b.name, q)
				require.Equal(t, !wantUnion, strings.Contains(q, ") or ("), "%s: %.80s", b.name, q)
			}
			// The same numbers as the call joined by or.
			require.Equal(t, len(versions), len(joined))
			for _, v := range versions {
				require.True(t, joined[v].InstancesKnown, "%s", v.FunctionVersionID)
				require.Equal(t, fmt.Sprint(viaOr[v]), fmt.Sprint(joined[v]), "%s", v.FunctionVersionID)
			}
		})
	}
}

func httptestBody(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
