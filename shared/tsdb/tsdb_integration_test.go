package tsdb

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tsdb/tsdbtest"
)

type backend struct {
	name   string
	url    func(testing.TB) string
	ingest func(ctx context.Context, url string, s []tsdbtest.Series) error
}

var backends = []backend{
	{"victoria-metrics", testenv.RequireVM, tsdbtest.ImportVM},
	{"prometheus", testenv.RequireProm, tsdbtest.RemoteWriteProm},
}

// seed writes a few hundred versions of every kind, labelled with a run id
// so the shared, persistent servers never mix runs; the run id doubles as
// the environment label filter under test.
func seed(t *testing.T, b backend, now time.Time) (url, run string, want map[string]bool) {
	url = b.url(t)
	run = fmt.Sprintf("run%d", time.Now().UnixNano())
	extra := map[string]string{"test_run": run}
	var ws []tsdbtest.Worker
	want = map[string]bool{}
	for i := 0; i < 100; i++ { // invoked, with 2 workers at 50 %
		ws = append(ws, tsdbtest.Worker{FunctionID: fmt.Sprintf("fa-%03d", i), FunctionVersionID: fmt.Sprintf("va-%03d", i), NcaID: "nca-a",
			Instances: 2, Utilization: 0.5, RequestsPerSecond: 3, Extra: extra})
		want[fmt.Sprintf("va-%03d", i)] = true
	}
	for i := 0; i < 100; i++ { // running without invocations, 3 workers at 20 %
		ws = append(ws, tsdbtest.Worker{FunctionID: fmt.Sprintf("fb-%03d", i), FunctionVersionID: fmt.Sprintf("vb-%03d", i), NcaID: "nca-b",
			Instances: 3, Utilization: 0.2, Extra: extra})
		want[fmt.Sprintf("vb-%03d", i)] = false
	}
	for i := 0; i < 50; i++ { // invoked, no workers (scaled to zero)
		ws = append(ws, tsdbtest.Worker{FunctionID: fmt.Sprintf("fc-%03d", i), FunctionVersionID: fmt.Sprintf("vc-%03d", i), NcaID: "nca-c",
			RequestsPerSecond: 1, Extra: extra})
		want[fmt.Sprintf("vc-%03d", i)] = true
	}
	// Invalid ids: counted, never returned.
	ws = append(ws, tsdbtest.Worker{FunctionID: "bad id", FunctionVersionID: "vx", Instances: 1, Utilization: 0.1, Extra: extra},
		tsdbtest.Worker{FunctionID: "fx", FunctionVersionID: `v"}|.*`, Instances: 1, Utilization: 0.1, Extra: extra})
	series := tsdbtest.Generate(ws, now.Add(-20*time.Minute), now)
	// Active long ago only: outside the lookback.
	var old []tsdbtest.Worker
	for i := 0; i < 50; i++ {
		old = append(old, tsdbtest.Worker{FunctionID: fmt.Sprintf("fd-%03d", i), FunctionVersionID: fmt.Sprintf("vd-%03d", i),
			Instances: 1, Utilization: 0.5, RequestsPerSecond: 1, Extra: extra})
	}
	series = append(series, tsdbtest.Generate(old, now.Add(-90*time.Minute), now.Add(-70*time.Minute))...)
	// Invoked until five minutes ago: still found invoked, but not in the
	// lookback's newest step.
	var fading []tsdbtest.Worker
	for i := 0; i < 20; i++ {
		fading = append(fading, tsdbtest.Worker{FunctionID: fmt.Sprintf("fe-%03d", i), FunctionVersionID: fmt.Sprintf("ve-%03d", i), NcaID: "nca-e",
			RequestsPerSecond: 1, Extra: extra})
		want[fmt.Sprintf("ve-%03d", i)] = true
	}
	series = append(series, tsdbtest.Generate(fading, now.Add(-20*time.Minute), now.Add(-5*time.Minute))...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, b.ingest(ctx, url, series))
	return url, run, want
}

func TestActiveVersionsAndBucketMetricsAgainstRealTSDBs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Second)
			url, run, want := seed(t, b, now)
			c, err := New(Config{URL: url})
			require.NoError(t, err)
			filter := LabelFilter{Name: "test_run", Value: run}
			ctx := context.Background()

			var got []ActiveVersion
			var skipped Skipped
			// Ingestion becomes searchable within a moment on both servers.
			require.Eventually(t, func() bool {
				got, skipped, err = c.ActiveVersions(ctx, now, 10*time.Minute, Filters{Extra: filter})
				return err == nil && len(got) == len(want)
			}, 30*time.Second, 500*time.Millisecond, "found %d of %d (err %v)", len(got), len(want), err)
			for _, v := range got {
				invoked, ok := want[v.FunctionVersionID]
				require.True(t, ok, "unexpected %+v", v)
				require.Equal(t, invoked, v.Invoked, "%s", v.FunctionVersionID)
				require.NotEmpty(t, v.NcaID)
				// Requests that still grow show in the newest step; those
				// that stopped five minutes ago do not.
				still := v.FunctionVersionID[1] == 'a' || v.FunctionVersionID[1] == 'c'
				require.Equal(t, still, v.StillInvoked, "%s", v.FunctionVersionID)
			}
			require.Equal(t, 1, skipped["invalid function_id"])
			require.Equal(t, 1, skipped["invalid function_version_id"])

			// Batched: the same query count for 10 and for 200 versions.
			var versions []FunctionVersion
			for _, v := range got {
				if v.FunctionVersionID[1] == 'a' || v.FunctionVersionID[1] == 'b' {
					versions = append(versions, v.FunctionVersion)
				}
			}
			versions = append(versions, FunctionVersion{FunctionID: "nope", FunctionVersionID: "no-data"})
			opts := MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute, Filter: filter}
			// The first query that joins groups asks the server, once,
			// whether it has union (groupJoin): not counted below.
			_, err = c.BucketMetrics(ctx, versions, now, opts)
			require.NoError(t, err)
			q0 := c.Queries()
			small, err := c.BucketMetrics(ctx, versions[:10], now, opts)
			require.NoError(t, err)
			q1 := c.Queries()
			all, err := c.BucketMetrics(ctx, versions, now, opts)
			require.NoError(t, err)
			q2 := c.Queries()
			require.Len(t, small, 10)
			require.Equal(t, q1-q0, q2-q1, "queries must not grow with the number of versions")
			require.Equal(t, int64(3), q2-q1, "three queries per chunk")

			for _, v := range versions {
				m := all[v]
				switch v.FunctionVersionID[1] {
				case 'a', 'b':
					wantUtil, wantN := 50.0, 2
					if v.FunctionVersionID[1] == 'b' {
						wantUtil, wantN = 20.0, 3
					}
					require.True(t, m.InstancesKnown, "%s", v.FunctionVersionID)
					require.Equal(t, wantN, m.Instances, "%s", v.FunctionVersionID)
					require.NotEmpty(t, m.Utilization, "%s", v.FunctionVersionID)
					latest := m.Utilization[len(m.Utilization)-1].Value
					// Steady counters read true on both servers (rate, not
					// VictoriaMetrics' increase, which read 6/7 or 15/14 of
					// it here by where the window fell among the scrapes).
					require.InEpsilon(t, wantUtil, latest, 0.01, "%s utilization", v.FunctionVersionID)
					if v.FunctionVersionID[1] == 'a' {
						require.WithinDuration(t, now, m.LastInvokedAt, 2*time.Minute)
						require.InEpsilon(t, 3, m.RequestRate, 0.01)
					} else {
						require.True(t, m.LastInvokedAt.IsZero())
					}
				default:
					require.False(t, m.InstancesKnown, "a version without data is unknown, not zero")
					require.Empty(t, m.Utilization)
				}
			}
		})
	}
}

func TestQueryErrorsAgainstRealTSDBs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c, err := New(Config{URL: b.url(t)})
			require.NoError(t, err)
			_, _, err = c.Query(context.Background(), "sum(rate(x[5m]", time.Now())
			require.Error(t, err)
			require.False(t, Retryable(err), "a bad query is not retried")
			var qe *QueryError
			require.ErrorAs(t, err, &qe)
			require.Equal(t, 1, qe.Attempts)
			require.GreaterOrEqual(t, qe.Status, 400)
			require.Contains(t, err.Error(), "sum(rate(x[5m]")

			// A query that matches nothing is an empty answer, not an error.
			s, _, err := c.Query(context.Background(), `no_such_metric_anywhere{a="b"}`, time.Now())
			require.NoError(t, err)
			require.Empty(t, s)

			// NaN and Inf come back as such.
			s, _, err = c.Query(context.Background(), `vector(0) / 0`, time.Now())
			require.NoError(t, err)
			if len(s) > 0 { // VictoriaMetrics drops NaN results; Prometheus keeps them.
				require.True(t, math.IsNaN(s[0].Samples[0].Value))
			}
			require.NoError(t, c.Ping(context.Background()))
		})
	}
}

// TestActiveVersionsTakesTheNcaIDOfTheFirstSourceInOrder: a version whose
// request counters and worker series disagree on nca_id is found with the
// request counters' id, the first query's, whichever answer streams in
// first (the five queries run at once). A version's row is rewritten when
// its nca_id changes, so an id that followed arrival order would flip the
// row from cycle to cycle.
func TestActiveVersionsTakesTheNcaIDOfTheFirstSourceInOrder(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			now := time.Now().Truncate(time.Second)
			url := b.url(t)
			run := fmt.Sprintf("run%d", time.Now().UnixNano())
			extra := map[string]string{"test_run": run}
			var ws []tsdbtest.Worker
			const n = 50
			for i := 0; i < n; i++ {
				fid, vid := fmt.Sprintf("fn-%03d", i), fmt.Sprintf("vn-%03d", i)
				ws = append(ws,
					tsdbtest.Worker{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca-requests", RequestsPerSecond: 2, Extra: extra},
					tsdbtest.Worker{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca-workers", Instances: 2, Utilization: 0.5, Extra: extra})
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			require.NoError(t, b.ingest(ctx, url, tsdbtest.Generate(ws, now.Add(-20*time.Minute), now)))
			c, err := New(Config{URL: url})
			require.NoError(t, err)
			f := Filters{Extra: LabelFilter{Name: "test_run", Value: run}}
			var got []ActiveVersion
			require.Eventually(t, func() bool {
				got, _, err = c.ActiveVersions(ctx, now, 10*time.Minute, f)
				return err == nil && len(got) == n
			}, 30*time.Second, 500*time.Millisecond, "found %d of %d (err %v)", len(got), n, err)
			for round := 0; round < 5; round++ {
				got, _, err = c.ActiveVersions(ctx, now, 10*time.Minute, f)
				require.NoError(t, err)
				require.Len(t, got, n)
				for _, v := range got {
					require.Equal(t, "nca-requests", v.NcaID, "round %d: %s", round, v.FunctionVersionID)
					require.True(t, v.Invoked, "%s", v.FunctionVersionID)
					require.Equal(t, SourceWorker, v.Evidence, "%s", v.FunctionVersionID)
				}
			}
		})
	}
}
