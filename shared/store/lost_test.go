package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/stretchr/testify/require"

	"function/shared/store"
	"function/shared/store/storetest"
	"function/shared/testenv"
	"function/shared/testenv/cqlproxy"
)

// lossyStores opens a keyspace of the test's own on the real Cassandra
// twice: directly (base, to see what really is in a row) and through a
// fault-injecting proxy, with a short request timeout (storetest.Timeout)
// so a swallowed reply costs a second and a half, not ten.
func lossyStores(t *testing.T) (*store.Store, *cqlproxy.Proxy, *storetest.Proxied) {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Hosts = testenv.RequireCassandra(t)
	cfg.Keyspace = testenv.Keyspace(t, "test_lost")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base, err := store.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(base.Close)
	p := storetest.Open(t, cfg)
	return base, p.Proxy, p
}

// requireFaults says the proxy lost Cassandra's answer to one statement that
// Cassandra did run (its reply was a result), or never forwarded it.
func requireFaults(t *testing.T, p *cqlproxy.Proxy, want ...string) {
	t.Helper()
	var got []string
	for _, f := range p.Faults() {
		got = append(got, f.Action.String()+" "+f.Reply)
	}
	require.Equal(t, want, got, "what the proxy did to the driver's requests")
}

// An acquire whose answer is lost is settled by reading the lock back at
// SERIAL: ours when Cassandra applied it, not ours when the request never
// arrived or another owner holds it, and unknown (an error, no guess) when
// the read-back fails too, in which case the lock frees at its TTL.
func TestLostAcquireAnswerIsReadBack(t *testing.T) {
	base, p, proxied := lossyStores(t)
	s, rec := proxied.Store, proxied
	ctx := context.Background()

	t.Run("applied, Cassandra's CAS write timeout", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.WriteTimeout, Times: 1})
		l, err := s.AcquireLock(ctx, "a", "alice", 30*time.Second)
		require.NoError(t, err, "the INSERT applied: the lock is ours")
		require.Equal(t, "alice", l.Owner)
		require.Equal(t, []string{"acquire write_timeout applied"}, rec.TakeLosses())
		held, err := base.ReadLock(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, "alice", held.Owner)
	})
	t.Run("applied, reply never came", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.DropReply, Times: 1})
		l, err := s.AcquireLock(ctx, "b", "alice", 30*time.Second)
		require.NoError(t, err)
		require.Equal(t, "alice", l.Owner)
		require.Equal(t, []string{"acquire client_timeout applied"}, rec.TakeLosses())
	})
	t.Run("request never arrived", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.DropRequest, Times: 1})
		_, err := s.AcquireLock(ctx, "c", "alice", 30*time.Second)
		require.ErrorIs(t, err, store.ErrNotApplied, "read back free: not acquired, and said so")
		require.ErrorIs(t, err, gocql.ErrTimeoutNoResponse, "the driver's timeout is the cause")
		require.Equal(t, []string{"acquire client_timeout not_applied"}, rec.TakeLosses())
		held, err := base.ReadLock(ctx, "c")
		require.NoError(t, err)
		require.Empty(t, held.Owner)
		_, err = s.AcquireLock(ctx, "c", "alice", 30*time.Second)
		require.NoError(t, err, "the retry acquires")
	})
	t.Run("held by another", func(t *testing.T) {
		_, err := base.AcquireLock(ctx, "d", "bob", 30*time.Second)
		require.NoError(t, err)
		p.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.DropReply, Times: 1})
		_, err = s.AcquireLock(ctx, "d", "alice", 30*time.Second)
		var h *store.HeldError
		require.ErrorAs(t, err, &h)
		require.Equal(t, "bob", h.Lock.Owner)
		require.Equal(t, []string{"acquire client_timeout not_applied"}, rec.TakeLosses())
	})
	t.Run("read-back lost too", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.DropReply, Times: 1})
		p.Add(cqlproxy.Rule{Match: storetest.ReadLock, Action: cqlproxy.DropRequest, Times: 1})
		_, err := s.AcquireLock(ctx, "e", "alice", 6*time.Second)
		var u *store.UnknownError
		require.ErrorAs(t, err, &u, "neither acquired nor free: unknown")
		require.Equal(t, []string{"acquire client_timeout unknown"}, rec.TakeLosses())
		// It did apply: alice holds a lock she does not know of, until its
		// TTL and no longer.
		held, err := base.ReadLock(ctx, "e")
		require.NoError(t, err)
		require.Equal(t, "alice", held.Owner)
		require.False(t, held.ExpiresAt.After(time.Now().Add(6*time.Second)), "bounded by the 6 s TTL: %s", held.ExpiresAt)
		require.Eventually(t, func() bool {
			_, err := base.AcquireLock(ctx, "e", "bob", 30*time.Second)
			return err == nil
		}, 15*time.Second, 200*time.Millisecond, "bob acquires once the TTL passed")
	})
	requireFaults(t, p,
		"write_timeout RESULT", // Cassandra ran the INSERT; the driver got a WriteTimeout
		"drop_reply RESULT",
		"drop_request ",
		"drop_reply RESULT",
		"drop_reply RESULT", "drop_request ")
}

// Refresh and release answers lost are read back too: a refresh that
// applied returns the extended lease, a release that applied is a release,
// and one that never arrived leaves the lock held and says until when.
func TestLostRefreshAndReleaseAnswersAreReadBack(t *testing.T) {
	base, p, proxied := lossyStores(t)
	s, rec := proxied.Store, proxied
	ctx := context.Background()
	first, err := s.AcquireLock(ctx, "r", "alice", 5*time.Second)
	require.NoError(t, err)

	p.Add(cqlproxy.Rule{Match: storetest.Refresh, Action: cqlproxy.WriteTimeout, Times: 1})
	time.Sleep(10 * time.Millisecond) // a later lease than the first, to tell them apart
	l, err := s.RefreshLock(ctx, "r", "alice", 30*time.Second)
	require.NoError(t, err)
	require.True(t, l.ExpiresAt.After(first.ExpiresAt.Add(20*time.Second)), "the refresh applied: the lease read back is the new one: %s", l.ExpiresAt)
	require.Equal(t, []string{"refresh write_timeout applied"}, rec.TakeLosses())

	p.Add(cqlproxy.Rule{Match: storetest.Release, Action: cqlproxy.DropRequest, Times: 1})
	err = s.ReleaseLock(ctx, "r", "alice")
	require.ErrorIs(t, err, store.ErrNotApplied, "still ours: not released")
	require.ErrorContains(t, err, "when its TTL frees it")
	require.Equal(t, []string{"release client_timeout not_applied"}, rec.TakeLosses())

	p.Add(cqlproxy.Rule{Match: storetest.Release, Action: cqlproxy.DropReply, Times: 1})
	require.NoError(t, s.ReleaseLock(ctx, "r", "alice"), "the DELETE applied: released")
	require.Equal(t, []string{"release client_timeout applied"}, rec.TakeLosses())
	held, err := base.ReadLock(ctx, "r")
	require.NoError(t, err)
	require.Empty(t, held.Owner)
	requireFaults(t, p, "write_timeout RESULT", "drop_request ", "drop_reply RESULT")
}

// The cycle record (what keeps a replay from writing NVCF twice) is read
// back when its answer is lost: there means recorded, absent an error.
func TestLostRecordAnswerIsReadBack(t *testing.T) {
	base, p, proxied := lossyStores(t)
	s, rec := proxied.Store, proxied
	ctx := context.Background()
	key := store.VersionKey{FunctionID: "f", FunctionVersionID: "v"}

	// Times covers the driver's own retries of this idempotent write.
	p.Add(cqlproxy.Rule{Match: storetest.Record, Action: cqlproxy.WriteTimeout, WriteType: "SIMPLE", Times: 3})
	require.NoError(t, s.RecordWriteTarget(ctx, key, "", 4, 4, 1000, "ok", time.Hour), "it applied: recorded")
	require.Equal(t, []string{"record write_timeout applied"}, rec.TakeLosses())

	p.Clear()
	p.Add(cqlproxy.Rule{Match: storetest.Record, Action: cqlproxy.DropRequest, Times: 3})
	err := s.RecordWriteTarget(ctx, key, "", 6, 6, 2000, "ok", time.Hour)
	require.ErrorIs(t, err, store.ErrNotApplied)
	require.Equal(t, []string{"record client_timeout not_applied"}, rec.TakeLosses())
	st, err := base.ReadState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, 4, st.LastRequested, "the first record stands")
	require.Equal(t, int64(1000), st.LastCycle)

	p.Clear()
	p.Add(cqlproxy.Rule{Match: storetest.Record, Action: cqlproxy.DropReply, Times: 3})
	p.Add(cqlproxy.Rule{Match: storetest.ReadState, Action: cqlproxy.DropRequest, Times: 1})
	err = s.RecordWriteTarget(ctx, key, "", 8, 8, 3000, "ok", time.Hour)
	var u *store.UnknownError
	require.ErrorAs(t, err, &u)
	require.True(t, errors.Is(err, gocql.ErrTimeoutNoResponse))
	require.Equal(t, []string{"record client_timeout unknown"}, rec.TakeLosses())
}

// A write claim whose answer is lost is settled by reading the state row
// back at SERIAL: claimed when Cassandra applied it, not claimed when the
// request never arrived, taken when another writer claimed first, and
// unknown (an error, no guess) when the read-back fails too, in which
// case the claim, applied, holds the version until its lease ends.
func TestLostClaimAnswerIsReadBack(t *testing.T) {
	base, p, proxied := lossyStores(t)
	s, rec := proxied.Store, proxied
	ctx := context.Background()
	claim := func(version, owner, prev string, lease time.Duration) error {
		key := store.VersionKey{FunctionID: "f", FunctionVersionID: version}
		return s.ClaimWrite(ctx, key, store.WriteClaim{Owner: owner, Cycle: 1000, Requested: 3}, prev, lease, time.Hour)
	}
	state := func(version string) store.ScalingState {
		st, err := base.ReadState(ctx, store.VersionKey{FunctionID: "f", FunctionVersionID: version})
		require.NoError(t, err)
		return st
	}

	t.Run("applied, Cassandra's CAS write timeout", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.WriteTimeout, Times: 1})
		require.NoError(t, claim("a", "alice", "", 30*time.Second), "the claim applied: ours")
		require.Equal(t, []string{"claim write_timeout applied"}, rec.TakeLosses())
		require.Equal(t, "alice", state("a").Claim.Owner)
	})
	t.Run("request never arrived", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.DropRequest, Times: 1})
		err := claim("b", "alice", "", 30*time.Second)
		require.ErrorIs(t, err, store.ErrNotApplied, "read back unclaimed: not claimed, and said so")
		require.ErrorIs(t, err, gocql.ErrTimeoutNoResponse, "the driver's timeout is the cause")
		require.Equal(t, []string{"claim client_timeout not_applied"}, rec.TakeLosses())
		require.Empty(t, state("b").Claim.Owner)
		require.NoError(t, claim("b", "alice-retry", "", 30*time.Second), "the retry claims")
	})
	t.Run("claimed by another first", func(t *testing.T) {
		key := store.VersionKey{FunctionID: "f", FunctionVersionID: "c"}
		require.NoError(t, base.ClaimWrite(ctx, key, store.WriteClaim{Owner: "bob", Cycle: 1000, Requested: 3}, "", 30*time.Second, time.Hour))
		p.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.DropReply, Times: 1})
		err := claim("c", "alice", "", 30*time.Second)
		var taken *store.ClaimTakenError
		require.ErrorAs(t, err, &taken)
		require.Equal(t, "bob", taken.Owner)
		require.Equal(t, []string{"claim client_timeout not_applied"}, rec.TakeLosses())
	})
	t.Run("read-back lost too", func(t *testing.T) {
		p.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.DropReply, Times: 1})
		p.Add(cqlproxy.Rule{Match: storetest.ReadState, Action: cqlproxy.DropRequest, Times: 1})
		err := claim("d", "alice", "", 6*time.Second)
		var u *store.UnknownError
		require.ErrorAs(t, err, &u, "neither claimed nor free: unknown")
		require.Equal(t, []string{"claim client_timeout unknown"}, rec.TakeLosses())
		// It did apply: alice holds a claim she does not know of, until
		// its lease ends and no longer.
		st := state("d")
		require.Equal(t, "alice", st.Claim.Owner)
		require.True(t, st.Claim.Held())
		require.LessOrEqual(t, st.Claim.LeaseLeft, 6*time.Second, "bounded by the 6 s lease")
		require.Eventually(t, func() bool { return !state("d").Claim.Held() }, 15*time.Second, 200*time.Millisecond)
		require.True(t, state("d").Claim.Unconfirmed(), "expired unsettled: its outcome stays unknown")
	})
	requireFaults(t, p,
		"write_timeout RESULT", // Cassandra ran the batch; the driver got a WriteTimeout
		"drop_request ",
		"drop_reply RESULT",
		"drop_reply RESULT", "drop_request ")
}
