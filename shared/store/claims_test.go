package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Racers that all decided from the same state (no claim yet) claim the
// version at once: exactly one claim applies, every other is told who won,
// and the winner's claim holds the version until it is settled.
func TestOneOfManyRacingClaimsApplies(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	key := VersionKey{FunctionID: "f", FunctionVersionID: "v"}
	const racers = 16
	winners, errs := race(racers, func(owner string) error {
		return s.ClaimWrite(ctx, key, WriteClaim{Owner: owner, Cycle: 1000, Requested: 3}, "", 30*time.Second, time.Hour)
	})
	var taken []*ClaimTakenError
	var other []error
	for _, err := range errs {
		var c *ClaimTakenError
		if errors.As(err, &c) {
			taken = append(taken, c)
		} else {
			other = append(other, err)
		}
	}
	require.Empty(t, other)
	require.Len(t, winners, 1, "exactly one racer must win")
	require.Len(t, taken, racers-1)
	for _, c := range taken {
		require.Equal(t, winners[0], c.Owner, "a loser is told who claimed")
	}
	st, err := s.ReadState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, WriteClaim{Owner: winners[0], Cycle: 1000, Requested: 3}, st.Claim.WriteClaim)
	require.True(t, st.Claim.Held(), "%+v", st.Claim)
	require.False(t, st.Claim.Unconfirmed())
	require.InDelta(t, 30, st.Claim.LeaseLeft.Seconds(), 5, "the lease is Cassandra's TTL")
}

// A claim is the token the next one must name: a claim naming an older
// token fails, the record settles the claim (the version is free at once,
// however long the lease), and the next claim names the settled one.
func TestClaimsChainThroughTheirTokens(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	key := VersionKey{FunctionID: "f", FunctionVersionID: "v"}
	require.NoError(t, s.ClaimWrite(ctx, key, WriteClaim{Owner: "a", Cycle: 1000, Requested: 3}, "", time.Minute, time.Hour))
	require.NoError(t, s.RecordWriteTarget(ctx, key, "a", 3, 3, 1000, "ok", time.Hour))
	st, err := s.ReadState(ctx, key)
	require.NoError(t, err)
	require.True(t, st.Claim.Settled)
	require.False(t, st.Claim.Held(), "a recorded claim holds nothing")
	require.Equal(t, 3, st.LastRequested)
	require.Equal(t, int64(1000), st.LastCycle)

	err = s.ClaimWrite(ctx, key, WriteClaim{Owner: "stale", Cycle: 2000, Requested: 4}, "", time.Minute, time.Hour)
	var c *ClaimTakenError
	require.ErrorAs(t, err, &c, "decided from a state read before claim a")
	require.Equal(t, "a", c.Owner)

	require.NoError(t, s.ClaimWrite(ctx, key, WriteClaim{Owner: "b", Cycle: 2000, Requested: 4}, "a", time.Minute, time.Hour))
	require.NoError(t, s.SettleClaim(ctx, key, "b", time.Hour))
	st, err = s.ReadState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "b", st.Claim.Owner)
	require.False(t, st.Claim.Held(), "a claim given up holds nothing")
	require.Equal(t, 3, st.LastRequested, "giving a claim up records no write")
	require.NoError(t, s.SettleClaim(ctx, key, "a", time.Hour))
	st, err = s.ReadState(ctx, key)
	require.NoError(t, err)
	require.False(t, st.Claim.Settled, "settling a replaced claim settles nothing current")
}

// A claim nobody settles holds the version for its lease and no longer;
// then it reads as unconfirmed (its write's outcome is unknown) and the
// next claim may replace it.
func TestUnsettledClaimExpiresWithItsLease(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	key := VersionKey{FunctionID: "f", FunctionVersionID: "v"}
	require.NoError(t, s.ClaimWrite(ctx, key, WriteClaim{Owner: "a", Cycle: 1000, Requested: 3}, "", 2*time.Second, time.Hour))
	st, err := s.ReadState(ctx, key)
	require.NoError(t, err)
	require.True(t, st.Claim.Held())
	require.LessOrEqual(t, st.Claim.LeaseLeft, 2*time.Second)
	require.Eventually(t, func() bool {
		st, err = s.ReadState(ctx, key)
		return err == nil && !st.Claim.Live
	}, 10*time.Second, 200*time.Millisecond, "the lease ends")
	require.True(t, st.Claim.Unconfirmed(), "%+v", st.Claim)
	require.Equal(t, WriteClaim{Owner: "a", Cycle: 1000, Requested: 3}, st.Claim.WriteClaim, "what the unconfirmed write was stays known")
	require.NoError(t, s.ClaimWrite(ctx, key, WriteClaim{Owner: "b", Cycle: 2000, Requested: 3}, "a", time.Minute, time.Hour))
}
