package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/buckets"
	"function/shared/testenv"
)

// openTestStore opens a store in a keyspace of its own, so tests never see
// each other's rows on the shared server, and drops it afterwards.
func openTestStore(t *testing.T) *Store {
	t.Helper()
	hosts := testenv.RequireCassandra(t)
	cfg := DefaultConfig()
	cfg.Hosts = hosts
	cfg.Keyspace = fmt.Sprintf("test_store_%d_%d", time.Now().UnixNano()%1e9, rand.Intn(1e6))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = s.session.Query(`DROP KEYSPACE IF EXISTS ` + cfg.Keyspace).Exec()
		s.Close()
	})
	return s
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	require.NoError(t, ok.Validate())
	for name, mut := range map[string]func(*Config){
		"no hosts":       func(c *Config) { c.Hosts = nil },
		"bad keyspace":   func(c *Config) { c.Keyspace = "drop table x;" },
		"upper keyspace": func(c *Config) { c.Keyspace = "Nvcf" },
		"replication":    func(c *Config) { c.Replication = "SimpleStrategy" },
		"timeout":        func(c *Config) { c.Timeout = 0 },
		"page size":      func(c *Config) { c.PageSize = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		require.Error(t, c.Validate(), name)
	}
}

func TestSchemaIsIdempotent(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	require.NoError(t, s.EnsureSchema(ctx))
	require.NoError(t, s.EnsureSchema(ctx))
	require.NoError(t, s.Ping(ctx))
}

// With SkipSchema (the chart's schema Job creates the tables), Open refuses
// a keyspace that lacks them, naming what is missing, and accepts one that
// has them.
func TestSkipSchemaChecksTables(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := s.cfg
	cfg.SkipSchema = true
	checked, err := Open(ctx, cfg)
	require.NoError(t, err, "the schema exists: Open must accept it")
	checked.Close()

	cfg.Keyspace = s.cfg.Keyspace + "_absent"
	_, err = Open(ctx, cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), "lacks tables recently_invoked_functions, running_functions_without_invocations, scaling_state, locks")
}

func TestLockRaceHasExactlyOneWinner(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	const racers = 50
	winners, errs := race(racers, func(owner string) error {
		_, err := s.AcquireLock(ctx, "discovery", owner, 30*time.Second)
		return err
	})
	var held []*HeldError
	var other []error
	for _, err := range errs {
		var h *HeldError
		if errors.As(err, &h) {
			held = append(held, h)
		} else {
			other = append(other, err)
		}
	}
	require.Empty(t, other)
	require.Len(t, winners, 1, "exactly one racer must win")
	require.Len(t, held, racers-1)
	for _, h := range held {
		require.Equal(t, winners[0], h.Lock.Owner, "a loser must be told who holds the lock")
		require.WithinDuration(t, time.Now().Add(30*time.Second), h.Lock.ExpiresAt, 10*time.Second)
		require.Contains(t, h.Error(), winners[0])
	}
	l, err := s.ReadLock(ctx, "discovery")
	require.NoError(t, err)
	require.Equal(t, winners[0], l.Owner)
}

// race runs try for racers owners ("racer-00", ...) at once and returns
// the owners it succeeded for and the errors of the others.
func race(racers int, try func(owner string) error) (winners []string, errs []error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := make(chan struct{})
	for i := 0; i < racers; i++ {
		owner := fmt.Sprintf("racer-%02d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := try(owner)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				winners = append(winners, owner)
			} else {
				errs = append(errs, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return winners, errs
}

func TestOnlyTheOwnerRefreshesAndReleases(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	_, err := s.AcquireLock(ctx, "fn:a:b", "alice", 30*time.Second)
	require.NoError(t, err)

	require.ErrorIs(t, errOf(s.RefreshLock(ctx, "fn:a:b", "mallory", 30*time.Second)), ErrNotOwner)
	require.ErrorIs(t, s.ReleaseLock(ctx, "fn:a:b", "mallory"), ErrNotOwner)
	l, err := s.ReadLock(ctx, "fn:a:b")
	require.NoError(t, err)
	require.Equal(t, "alice", l.Owner, "a non-owner must not disturb the lock")

	// Re-acquiring a held lock by its owner is a refresh (retried events).
	_, err = s.AcquireLock(ctx, "fn:a:b", "alice", 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, errOf(s.RefreshLock(ctx, "fn:a:b", "alice", 30*time.Second)))
	require.NoError(t, s.ReleaseLock(ctx, "fn:a:b", "alice"))
	require.ErrorIs(t, s.ReleaseLock(ctx, "fn:a:b", "alice"), ErrNotOwner, "a released lock is free")

	_, err = s.AcquireLock(ctx, "fn:a:b", "bob", 30*time.Second)
	require.NoError(t, err, "after release another owner acquires at once")
}

func TestLockExpiresAfterTTL(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	_, err := s.AcquireLock(ctx, "discovery", "alice", 2*time.Second)
	require.NoError(t, err)
	// A refresh rewrites node_id with the new TTL; the row must still expire
	// as a whole afterwards.
	require.NoError(t, errOf(s.RefreshLock(ctx, "discovery", "alice", 2*time.Second)))
	_, err = s.AcquireLock(ctx, "discovery", "bob", 2*time.Second)
	var h *HeldError
	require.ErrorAs(t, err, &h)

	require.Eventually(t, func() bool {
		_, err := s.AcquireLock(ctx, "discovery", "bob", 30*time.Second)
		return err == nil
	}, 10*time.Second, 250*time.Millisecond, "bob must acquire once alice's TTL passed")
	require.ErrorIs(t, errOf(s.RefreshLock(ctx, "discovery", "alice", 2*time.Second)), ErrNotOwner)
}

func TestSubSecondTTLIsRejected(t *testing.T) {
	s := openTestStore(t)
	_, err := s.AcquireLock(context.Background(), "x", "a", 500*time.Millisecond)
	require.ErrorContains(t, err, "resolution")
}

func randomVersions(rng *rand.Rand, n int) []ActiveVersion {
	out := make([]ActiveVersion, n)
	for i := range out {
		out[i] = ActiveVersion{
			VersionKey: VersionKey{
				FunctionID:        fmt.Sprintf("fn-%08x-%d", rng.Uint32(), i),
				FunctionVersionID: fmt.Sprintf("ver-%08x", rng.Uint32()),
			},
			NcaID:   fmt.Sprintf("nca-%d", rng.Intn(50)),
			Invoked: rng.Intn(2) == 0,
		}
	}
	return out
}

func TestBucketsCoverEveryVersionExactlyOnce(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(42))
	versions := randomVersions(rng, 10000)
	// A version present in both tables must still be read once.
	versions = append(versions, ActiveVersion{VersionKey: versions[0].VersionKey, NcaID: versions[0].NcaID, Invoked: !versions[0].Invoked})
	n, err := s.UpsertVersions(ctx, versions, time.Hour)
	require.NoError(t, err)
	require.Equal(t, len(versions), n)
	s.cfg.PageSize = 333 // force many pages per bucket

	want := map[VersionKey]bool{}
	for _, v := range versions[:10000] {
		want[v.VersionKey] = true
	}
	for _, count := range []int{1, 7, 128} {
		got := map[VersionKey]int{}
		for _, r := range buckets.All(count) {
			rows, err := s.ReadBucket(ctx, r)
			require.NoError(t, err)
			for _, v := range rows {
				got[v.VersionKey]++
				require.Equal(t, r.Index, buckets.OfVersion(v.FunctionID, v.FunctionVersionID, count),
					"our Murmur3 must place %s in the bucket Cassandra's token range returned it from", v.VersionKey)
			}
		}
		require.Len(t, got, len(want), "buckets=%d", count)
		for k, c := range got {
			require.True(t, want[k], "unexpected %s", k)
			require.Equal(t, 1, c, "buckets=%d: %s read %d times", count, k, c)
		}
	}
}

func TestTokenMatchesCassandra(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(7))
	versions := randomVersions(rng, 500)
	// Lengths around the 16-byte block size and high bytes exercise
	// Cassandra's signed-byte tail handling.
	runes := []rune("aé€中😀")
	for i := 0; i < 40; i++ {
		r := make([]rune, i)
		for j := range r {
			r[j] = runes[rng.Intn(len(runes))]
		}
		versions = append(versions, ActiveVersion{VersionKey: VersionKey{FunctionID: string(r) + "é", FunctionVersionID: fmt.Sprint(i)}})
	}
	for i := range versions {
		versions[i].Invoked = true
	}
	_, err := s.UpsertVersions(ctx, versions, time.Hour)
	require.NoError(t, err)
	for _, v := range versions {
		var tok int64
		require.NoError(t, s.session.Query(
			`SELECT token(function_id, function_version_id) FROM `+s.tInvoked+` WHERE function_id = ? AND function_version_id = ?`,
			v.FunctionID, v.FunctionVersionID).Scan(&tok))
		require.Equal(t, tok, buckets.Token(v.FunctionID, v.FunctionVersionID), "token of %q", v.VersionKey)
	}
}

// Discovery's rows go to a request as ring neighbours of one table,
// whatever order they come in: a row Cassandra refuses (text that is not
// UTF-8) loses exactly the rows of its table that neighbour it on the
// ring, the rest land, and the count says how many did.
func TestUpsertVersionsBatchesRingNeighbours(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []VersionKey
	for i := 0; i < 2*StateBatch+3; i++ {
		k := VersionKey{FunctionID: fmt.Sprintf("f%d", i), FunctionVersionID: "v"}
		// A state row gives the key a token to ask Cassandra for, in a
		// table whose partition key is the versions' own.
		require.NoError(t, s.RecordWrite(ctx, k, 1, 1, "ok", time.Hour))
		keys = append(keys, k)
	}
	ring := ringOrder(t, s, s.tState, keys)
	var versions []ActiveVersion
	for i := range ring {
		versions = append(versions, ActiveVersion{VersionKey: ring[len(ring)-1-i], NcaID: "n", Invoked: true})
	}
	// Running rows of other versions, interleaved: a batch is of one table.
	for i := range 5 {
		versions = append(versions[:2*i+1], append([]ActiveVersion{{VersionKey: VersionKey{FunctionID: fmt.Sprintf("r%d", i), FunctionVersionID: "v"}, NcaID: "n"}}, versions[2*i+1:]...)...)
	}
	bad := ring[StateBatch+2]
	for i := range versions {
		if versions[i].VersionKey == bad && versions[i].Invoked {
			versions[i].NcaID = "\xff"
		}
	}
	lost := map[VersionKey]bool{}
	for _, k := range ring[StateBatch : 2*StateBatch] {
		lost[k] = true
	}

	n, err := s.UpsertVersions(ctx, versions, time.Hour)
	require.ErrorContains(t, err, "1 of 4 batches failed")
	require.Equal(t, len(versions)-StateBatch, n)
	for _, v := range versions {
		got, err := s.ReadVersion(ctx, v.VersionKey)
		if lost[v.VersionKey] {
			require.ErrorIs(t, err, ErrNotActive, "%s: a ring neighbour of the refused row", v.VersionKey)
			continue
		}
		require.NoError(t, err, "%s", v.VersionKey)
		require.Equal(t, v.Invoked, got.Invoked, "%s", v.VersionKey)
	}
}

func TestRowExpiresAfterTTL(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	v := ActiveVersion{VersionKey: VersionKey{FunctionID: "f", FunctionVersionID: "v"}, NcaID: "n", Invoked: true}
	_, err := s.UpsertVersions(ctx, []ActiveVersion{v}, 2*time.Second)
	require.NoError(t, err)
	got, err := s.ReadVersion(ctx, v.VersionKey)
	require.NoError(t, err)
	require.Equal(t, "n", got.NcaID)
	require.Eventually(t, func() bool {
		_, err := s.ReadVersion(ctx, v.VersionKey)
		return errors.Is(err, ErrNotActive)
	}, 10*time.Second, 250*time.Millisecond, "the row must disappear once its TTL passed")
	rows, err := s.ReadBucket(ctx, buckets.For(0, 1))
	require.NoError(t, err)
	require.Empty(t, rows)
}

func TestScalingStateRoundTrip(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	k := VersionKey{FunctionID: "f1", FunctionVersionID: "v1"}
	st, err := s.ReadState(ctx, k)
	require.NoError(t, err)
	require.False(t, st.Exists)
	require.False(t, st.HasLastRequested)

	require.NoError(t, s.RecordWrite(ctx, k, 4, 1700000000000, "ok", time.Hour))
	var recs StateUpdate
	recs.Recommendations(`[{"c":4}]`)
	require.NoError(t, s.SaveState(ctx, k, recs, time.Hour))
	st, err = s.ReadState(ctx, k)
	require.NoError(t, err)
	require.True(t, st.Exists)
	require.True(t, st.HasLastRequested)
	require.Equal(t, 4, st.LastRequested)
	require.Equal(t, int64(1700000000000), st.LastCycle)
	require.Equal(t, "ok", st.Status)
	require.Equal(t, `[{"c":4}]`, st.Recommendations)

	nf := time.Now().Truncate(time.Millisecond)
	require.NoError(t, s.RecordOutcome(ctx, k, "", 1700000060000, "not_found", nf, time.Hour))
	all, err := s.ReadStates(ctx, buckets.For(buckets.OfVersion(k.FunctionID, k.FunctionVersionID, 7), 7))
	require.NoError(t, err)
	require.Contains(t, all, k)
	require.Equal(t, "not_found", all[k].Status)
	require.True(t, nf.Equal(all[k].NotFoundAt))
	require.Equal(t, 4, all[k].LastRequested, "an outcome keeps the last accepted count")

	require.True(t, all[k].WatchSince.IsZero())
	watched := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var watch StateUpdate
	watch.Watched(watched)
	require.NoError(t, s.SaveState(ctx, k, watch, time.Hour))
	st, err = s.ReadState(ctx, k)
	require.NoError(t, err)
	require.True(t, watched.Equal(st.WatchSince))
}

func TestInvokedRowsAgeOutButTouchesKeepRunningRows(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	k := VersionKey{FunctionID: "f", FunctionVersionID: "v"}
	seen := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	_, err := s.UpsertVersions(ctx, []ActiveVersion{{VersionKey: k, NcaID: "n", Invoked: true, LastUpdatedAt: seen}}, 2*time.Second)
	require.NoError(t, err)
	rows, err := s.ReadBucket(ctx, buckets.For(0, 1))
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.True(t, rows[0].Invoked)
	require.True(t, seen.Equal(rows[0].InvokedAt))

	// The scale function's TTL refresh must not fake an invocation.
	_, err = s.TouchVersions(ctx, rows, time.Hour)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		rows, err := s.ReadBucket(ctx, buckets.For(0, 1))
		return err == nil && len(rows) == 1 && !rows[0].Invoked && rows[0].InvokedAt.IsZero()
	}, 10*time.Second, 250*time.Millisecond, "the invoked row ages out; the touched running row stays")
}

func TestUnreachableClusterFailsWithContext(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Hosts = []string{"127.0.0.1:1"}
	cfg.ConnectTimeout = time.Second
	_, err := Open(context.Background(), cfg)
	require.ErrorContains(t, err, "127.0.0.1:1")
}

// errOf keeps the error of a call that also returns the lease.
func errOf(_ Lock, err error) error { return err }
