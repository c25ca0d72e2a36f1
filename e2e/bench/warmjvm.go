package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"function/shared/buckets"
	"function/shared/store"
)

// warmRounds is how many times the warm-up sends its mix: the measured
// 60,000 versions were three rounds.
const warmRounds = 3

// The first cycle after the import is meant to measure the autoscaler
// cold: tables without its rows, a TSDB whose caches have none of the
// series. From a fresh clone it also measured a Cassandra JVM started a
// minute before, whose compilers had never seen the scale function's
// statements: in the first cycle of the 100k runs of 2026-12-01 its C2
// compiler threads alone spent 18-24 CPU-s (of 42-57 for all of
// Cassandra), most of it after discovery, while the buckets read states
// and wrote them back, on a machine of two cores. The seeding's 100,000
// single-row reads and conditional writes do not reach those paths. A
// production Cassandra (NVCF's own) has been running for days.
//
// Warming takes volume: 20,000 versions (17.5 s) left the first 100k
// cycle's C2 at 18.4 CPU-s, about what a fresh JVM spends; 60,000 (27 s)
// halved it (9.5 CPU-s, Cassandra 24.9 CPU-s in the cycle where the fresh
// JVM spent 40-58). A JVM that had served the test suite for 18 minutes
// spent 1.5 (README): this warm-up leaves the first cycle still partly
// paying for compilation.
//
// warmCassandra sends the statement mix of a cycle (discovery's batched
// upserts, the buckets' range reads of versions and states, batched state
// writes, write claims and their records) to a scratch keyspace of its
// own for warmRounds rounds of n versions, then drops it: the JVM compiles
// what a cycle runs, and the measured keyspace, the TSDB and the
// functions stay as cold as before. The bench prints the JVM's compiler
// CPU before and after it.
func warmCassandra(ctx context.Context, cassandra, keyspace string, n int) error {
	st, err := openStore(ctx, cassandra, keyspace)
	if err != nil {
		return err
	}
	defer dropKeyspace(cassandra, keyspace)
	defer st.Close()
	const ttl = time.Hour
	label := keyspace
	versions := make([]store.ActiveVersion, n)
	for i := range versions {
		fid, vid := versionIDs(label, i)
		versions[i] = store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: fid, FunctionVersionID: vid},
			NcaID: "nca-warm", Invoked: i%2 == 0, Source: "worker"}
	}
	nBuckets := max(1, n/1000)
	// Five in a hundred versions are written each round, as in the bench's
	// world, where the busy 5 % change.
	written := max(1, n/20)
	for round := 0; round < warmRounds; round++ {
		now := time.Now()
		for i := range versions {
			versions[i].LastUpdatedAt = now
		}
		if _, err := st.UpsertVersions(ctx, versions, ttl); err != nil {
			return fmt.Errorf("warm-up upsert: %w", err)
		}
		for b := 0; b < nBuckets; b++ {
			r := buckets.For(b, nBuckets)
			if _, err := st.ReadBucket(ctx, r); err != nil {
				return fmt.Errorf("warm-up bucket read: %w", err)
			}
			if _, err := st.ReadStates(ctx, r); err != nil {
				return fmt.Errorf("warm-up state read: %w", err)
			}
		}
		writes := make([]store.StateWrite, n)
		for i, v := range versions {
			w := store.StateWrite{Key: v.VersionKey}
			w.Update.Watched(now)
			w.Update.Source("worker")
			w.Update.Cost(store.Cost{SecondsPerRequest: 1, Weight: float64(20 + round), WindowEnd: now})
			w.Update.Recommendations(fmt.Sprintf(`[{"at":%d,"count":%d}]`, now.UnixMilli(), workersOf(i)))
			writes[i] = w
		}
		if failed := st.SaveStates(ctx, writes, ttl); len(failed) > 0 {
			return fmt.Errorf("warm-up state writes: %d failed, the first: %v", len(failed), failed[0].Err)
		}
		// Each written version is claimed, recorded and settled, as the
		// scale function does for each version it writes.
		err := inParallel(written, func(i int) error {
			return warmClaim(ctx, st, versions[i].VersionKey, now.UnixMilli(), round, ttl)
		})
		if err != nil {
			return fmt.Errorf("warm-up claims: %w", err)
		}
	}
	return nil
}

func warmClaim(ctx context.Context, st *store.Store, key store.VersionKey, cycle int64, round int, ttl time.Duration) error {
	prev, err := st.ReadState(ctx, key)
	if err != nil {
		return err
	}
	owner := fmt.Sprintf("warm-%d-%d", cycle, round)
	if err := st.ClaimWrite(ctx, key, store.WriteClaim{Owner: owner, Cycle: cycle, Requested: round + 1}, prev.Claim.Owner, time.Minute, ttl); err != nil {
		return err
	}
	if err := st.RecordWriteTarget(ctx, key, owner, round+1, -1, cycle, "ok", ttl); err != nil {
		return err
	}
	return st.SettleClaim(ctx, key, owner, ttl)
}

// compilerGroups are the thread groups whose CPU is the JIT's.
var compilerGroups = []string{"JIT C2", "JIT C1"}

// compilerCPU is a sample's CPU seconds in the JIT's threads.
func compilerCPU(s threadSample) float64 {
	total := 0.0
	for _, t := range s.threads {
		if slices.Contains(compilerGroups, t.group) {
			total += t.cpu
		}
	}
	return total
}

// compilersQuiet is the JIT's CPU, in seconds a second, under which its
// queue is taken as drained; idle compiler threads of an otherwise quiet
// JVM measure 0.00-0.01.
const compilersQuiet = 0.05

// settleCompilers waits, polling every interval for at most limit, until
// the JIT's threads of a JVM spend less than compilersQuiet a second over
// two intervals running: what the warm-up made hot is queued for
// compilation, and a machine of two cores has one C2 thread to compile
// it, so the queue outlives the load that filled it, by 4-11 s and
// 1.4-3.2 CPU-s in the 100k runs of 2026-12-01, which would otherwise be
// billed to the first cycle. (That queue is not why the first cycle still
// compiles: it compiles 838 methods of its own, README.) It returns how
// long it waited, the JIT's CPU meanwhile, and whether it went quiet
// (false: limit reached, or the process is gone).
func settleCompilers(ctx context.Context, sample func() (float64, bool), interval, limit time.Duration) (waited time.Duration, cpu float64, quiet bool) {
	start := time.Now()
	first, ok := sample()
	if !ok {
		return 0, 0, false
	}
	prev, calm := first, 0
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return time.Since(start), prev - first, false
		case <-time.After(interval):
		}
		now, ok := sample()
		if !ok {
			return time.Since(start), prev - first, false
		}
		if (now-prev)/interval.Seconds() < compilersQuiet {
			calm++
		} else {
			calm = 0
		}
		prev = now
		if calm >= 2 {
			return time.Since(start), prev - first, true
		}
	}
	return time.Since(start), prev - first, false
}

// compilersSettleLimit bounds the wait for the JIT after the warm-up; a
// JVM still compiling then is measured as it is (and the report says so).
const compilersSettleLimit = 90 * time.Second

// CompilersSettle is the wait after the warm-up for the JVM's compilers.
type CompilersSettle struct {
	WaitedS float64 `json:"waitedSeconds"`
	// CPUS is the compiler threads' CPU seconds during the wait.
	CPUS float64 `json:"compilerCpuSeconds"`
	// Quiet is false when the wait ended at its limit.
	Quiet bool `json:"quiet"`
}

// String is the wait as the bench prints it after the warm-up's time.
func (c *CompilersSettle) String() string {
	if c == nil {
		return ""
	}
	if !c.Quiet {
		return fmt.Sprintf(", compilers still busy after %.0fs more (%.1f CPU-s in them meanwhile)", c.WaitedS, c.CPUS)
	}
	return fmt.Sprintf(", then %.0fs until its compilers went quiet (%.1f CPU-s in them meanwhile)", c.WaitedS, c.CPUS)
}
