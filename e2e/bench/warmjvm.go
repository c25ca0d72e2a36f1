package main

import (
	"context"
	"fmt"
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
