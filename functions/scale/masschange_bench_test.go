package scale

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/store"
	"function/shared/testenv"
	"function/shared/tsdb"
)

// BenchmarkMassChangeBucket is a mass change through the whole write path:
// one bucket of n versions that all change their count in one cycle (their
// first decision), decided by the real handler against the real servers
// and written to the NVCF simulator, with SCALE_CONCURRENCY at its default
// and at four times it. Each run starts from a fresh keyspace (no state:
// every version is written). It reports NVCF writes per second, the
// seconds the bucket took, and Cassandra requests per written version by
// kind (go test prints the CPU model above them).
//
//	flock -s /tmp/stack.lock go test -run '^$' -bench MassChangeBucket -benchtime 1x -timeout 30m ./functions/scale
func BenchmarkMassChangeBucket(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		f := setup(b, n)
		f.settings.MetricsPerVersion = n <= 1000
		// Production's selector bound: a bucket this size is queried in
		// id chunks, as a deployed scale function queries it.
		var err error
		f.tsdb, err = tsdb.New(tsdb.Config{URL: testenv.RequireVM(b), MaxSelectorBytes: f.settings.TSDB.MaxSelectorBytes})
		require.NoError(b, err)
		for _, concurrency := range []int{f.settings.Scale.Concurrency, 4 * f.settings.Scale.Concurrency} {
			b.Run(fmt.Sprintf("n=%d/concurrency=%d", n, concurrency), func(b *testing.B) {
				var elapsed time.Duration
				var written int
				var ops [3]atomic.Int64 // read, write, lwt
				for i := 0; i < b.N; i++ {
					s := f.settings
					s.Scale.Concurrency = concurrency
					h, err := New(Deps{Settings: s, Store: f.freshStore(b, &ops), TSDB: f.tsdb, NVCF: f.nvcf, Log: slog.New(slog.DiscardHandler)})
					require.NoError(b, err)
					for k := range ops {
						ops[k].Store(0)
					}
					w0 := len(f.sim.Writes())
					t0 := time.Now()
					reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
					elapsed += time.Since(t0)
					require.NoError(b, err)
					require.Equal(b, n, decode(b, reply).Written, "every version changes")
					written += len(f.sim.Writes()) - w0
				}
				w := float64(written)
				b.ReportMetric(w/elapsed.Seconds(), "writes/s")
				b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/bucket")
				b.ReportMetric(float64(ops[2].Load())/w*float64(b.N), "lwt/write")
				b.ReportMetric(float64(ops[1].Load())/w*float64(b.N), "cql-writes/write")
				b.ReportMetric(float64(ops[0].Load())/w*float64(b.N), "cql-reads/write")
			})
		}
	}
}

// freshStore opens a keyspace of its own holding the fixture's versions
// and no scaling state, counting its requests into ops (read, write, lwt).
func (f *fixture) freshStore(b *testing.B, ops *[3]atomic.Int64) *store.Store {
	b.Helper()
	cfg := f.storeCfg
	cfg.Keyspace = testenv.Keyspace(b, "bench_mass")
	cfg.Observer = func(kind string, _ bool) {
		switch kind {
		case "read":
			ops[0].Add(1)
		case "write":
			ops[1].Add(1)
		case "lwt":
			ops[2].Add(1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := store.Open(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(s.Close)
	_, err = s.UpsertVersions(ctx, f.versions, time.Hour)
	require.NoError(b, err)
	return s
}
