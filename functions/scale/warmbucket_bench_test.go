package scale

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tsdb"
)

// BenchmarkWarmBucket is the scale function's own CPU for one warm bucket
// of 1,000 versions, as a 100k cycle decides 100 of them: the token-range
// read of the rows and states from the real Cassandra, the bucket's
// PromQL answers from the real VictoriaMetrics, the policy and the decision
// log (JSON, as deployed, to io.Discard). Two cycles run before the timer,
// so every version has its state and the measured cycles write almost
// nothing. It reports this process's CPU seconds per bucket (getrusage,
// user+system: the servers run in their own processes) beside ns/op, which
// waits on the servers and the machine's load.
//
//	flock -s /tmp/stack.lock go test -run '^$' -bench WarmBucket -benchtime 20x ./functions/scale
func BenchmarkWarmBucket(b *testing.B) {
	f := setup(b, 1000)
	// Production's selector bound: a bucket this size is queried in id
	// chunks, as a deployed scale function queries it.
	var err error
	f.tsdb, err = tsdb.New(tsdb.Config{URL: testenv.RequireVM(b), MaxSelectorBytes: f.settings.TSDB.MaxSelectorBytes})
	require.NoError(b, err)
	h, err := New(Deps{Settings: f.settings, Store: f.store, TSDB: f.tsdb, NVCF: f.nvcf, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	require.NoError(b, err)
	decide := func() BucketResult {
		reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
		require.NoError(b, err)
		return decode(b, reply)
	}
	for range 2 {
		require.Equal(b, 1000, decide().Versions)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := 0; i < b.N; i++ {
		r := decide()
		require.Equal(b, 1000, r.Versions)
		require.Zero(b, r.Failed)
	}
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/float64(b.N), "cpu-s/bucket")
}

// processCPU is this process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
