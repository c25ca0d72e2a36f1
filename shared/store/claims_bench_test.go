package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"function/shared/testenv"
)

// BenchmarkMassChange is the Cassandra side of a cycle in which n versions
// all change their desired count, against the real Cassandra, written the
// way the scale function wrote before write claims (lock: acquire the
// version's lock, read its state under it, record, release) and the way it
// writes now (claim: one conditional write on the state row, then the
// record), with inflight writes at once (what SCALE_CONCURRENCY times the
// buckets a replica handles at once puts on one node). Each run starts on
// fresh rows. It reports LWTs (Paxos rounds) per write, writes per second
// and the seconds the n writes take (go test prints the CPU model above
// them); the NVCF call itself is not part of it (BenchmarkMassChangeBucket
// in functions/scale and e2e/bench time the whole path).
//
//	flock -s /tmp/stack.lock go test -run '^$' -bench MassChange -benchtime 1x ./shared/store
func BenchmarkMassChange(b *testing.B) {
	var lwts, plain atomic.Int64
	s := openBenchStore(b, func(kind string, failed bool) {
		switch kind {
		case "lwt":
			lwts.Add(1)
		case "write":
			plain.Add(1)
		}
	})
	for _, n := range []int{1000, 10000} {
		for _, inflight := range []int{16, 64} {
			for _, scheme := range []string{"lock", "claim"} {
				b.Run(fmt.Sprintf("n=%d/inflight=%d/%s", n, inflight, scheme), func(b *testing.B) {
					var elapsed time.Duration
					var lwt, write int64
					for i := 0; i < b.N; i++ {
						keys := make([]VersionKey, n)
						run := fmt.Sprintf("%s-%d-%d", scheme, time.Now().UnixNano(), i)
						for j := range keys {
							keys[j] = VersionKey{FunctionID: fmt.Sprintf("%s-f%05d", run, j), FunctionVersionID: "v"}
						}
						l0, w0 := lwts.Load(), plain.Load()
						t0 := time.Now()
						massChange(b, s, scheme, keys, inflight)
						elapsed += time.Since(t0)
						lwt, write = lwt+lwts.Load()-l0, write+plain.Load()-w0
					}
					writes := float64(n * b.N)
					b.ReportMetric(float64(lwt)/writes, "lwt/write")
					b.ReportMetric(float64(write)/writes, "plain/write")
					b.ReportMetric(writes/elapsed.Seconds(), "writes/s")
					b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/cycle")
				})
			}
		}
	}
}

// massChange writes a new count for every key, inflight at once.
func massChange(b *testing.B, s *Store, scheme string, keys []VersionKey, inflight int) {
	ctx := context.Background()
	const cycle = 1_700_000_000_000
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	for i, key := range keys {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			owner := fmt.Sprintf("bench/%d/%d", cycle, i)
			var err error
			if scheme == "lock" {
				err = lockedWrite(ctx, s, key, owner, cycle)
			} else {
				err = claimedWrite(ctx, s, key, owner, cycle)
			}
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d %s writes failed, first: %v", n, len(keys), scheme, first.Load())
	}
}

// lockedWrite is the write path before claims, as functions/scale ran it.
func lockedWrite(ctx context.Context, s *Store, key VersionKey, owner string, cycle int64) error {
	name := "fn:" + key.FunctionID + ":" + key.FunctionVersionID
	if _, err := s.AcquireLock(ctx, name, owner, 15*time.Second); err != nil {
		return err
	}
	if _, err := s.ReadState(ctx, key); err != nil {
		return err
	}
	if err := s.RecordWriteTarget(ctx, key, "", 3, 3, cycle, "ok", time.Hour); err != nil {
		return err
	}
	return s.ReleaseLock(ctx, name, owner)
}

// claimedWrite is the write path with a claim; the state it decides from
// comes from the bucket's range scan, which both paths pay anyway.
func claimedWrite(ctx context.Context, s *Store, key VersionKey, owner string, cycle int64) error {
	if err := s.ClaimWrite(ctx, key, WriteClaim{Owner: owner, Cycle: cycle, Requested: 3}, "", 15*time.Second, time.Hour); err != nil {
		return err
	}
	return s.RecordWriteTarget(ctx, key, owner, 3, 3, cycle, "ok", time.Hour)
}

// openBenchStore opens a store in a keyspace of its own, with an observer.
func openBenchStore(b *testing.B, observe func(kind string, failed bool)) *Store {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Hosts = testenv.RequireCassandra(b)
	cfg.Keyspace = testenv.Keyspace(b, "bench_store")
	cfg.Observer = observe
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}
