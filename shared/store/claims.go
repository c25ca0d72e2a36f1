package store

// Write claims: one Paxos round per NVCF write.
//
// Before claims, every write took a per-version lock (an LWT INSERT),
// re-read the state row under it, wrote NVCF, recorded the cycle and
// released the lock (a second LWT): two Paxos rounds a write, which is
// what bounded a mass change to about 240 writes a second on one node.
// A claim is the lock and the freshness check in one conditional write on
// the version's own state row:
//
//   - claim_owner is a token, unique per write attempt, that every claim
//     replaces; the claim applies only IF claim_owner is still the token
//     the caller read with the state it decided from. So a claim applies
//     only if nobody claimed the version since that read, which is what
//     the re-read under the lock used to prove, and of two replicas
//     racing for one version exactly one wins.
//   - claim_live holds the token too, under a short TTL (FUNCTION_LOCK_TTL):
//     while it lives and the claim is not settled, the claim is held, and
//     others find the version locked. Its expiry is Cassandra's clock, as
//     the lock's was, so replicas' clocks need not agree.
//   - settled_claim is written by the plain write that records the
//     outcome (or gives the claim up), never by an LWT: a claim is open
//     while claim_owner differs from it. Plain writes never touch the
//     cells a Paxos round writes, so no plain write races an LWT's
//     timestamp.
//
// The two TTLs need two statements; a conditional batch on one partition
// is still one Paxos round.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// WriteClaim is a claim on a version's next NVCF write: who makes it (a
// token unique per attempt), for which cycle and which count.
type WriteClaim struct {
	Owner     string
	Cycle     int64
	Requested int
}

// ClaimState is a version's last claim as read with its state.
type ClaimState struct {
	WriteClaim
	// Live is true while the claim's lease (FUNCTION_LOCK_TTL from when it
	// was made) lasts.
	Live bool
	// LeaseLeft is how long a live claim's lease has left, in Cassandra's
	// whole seconds.
	LeaseLeft time.Duration
	// Settled is true once the claim's outcome was recorded or the claim
	// given up.
	Settled bool
}

// Held reports whether the claim stops another write now: made, neither
// settled nor expired.
func (c ClaimState) Held() bool { return c.Owner != "" && !c.Settled && c.Live }

// Unconfirmed reports whether the claim expired unsettled: its writer may
// or may not have written NVCF (it stopped, or the record of its write
// was lost), so the outcome of that write is unknown.
func (c ClaimState) Unconfirmed() bool { return c.Owner != "" && !c.Settled && !c.Live }

// ClaimTakenError says a claim did not apply because the version was
// claimed since its state was read; Owner is the claim found.
type ClaimTakenError struct {
	Key   VersionKey
	Owner string
}

func (e *ClaimTakenError) Error() string {
	return fmt.Sprintf("claim write of %s: claimed since the state was read (by %q)", e.Key, e.Owner)
}

// ClaimWrite claims key's next NVCF write for c.Owner, provided the last
// claim is still prev (the Owner of the ClaimState the caller decided
// from; "" for none). lease bounds how long the claim stops others; ttl is
// the state row's. A claim made since returns *ClaimTakenError.
//
// When the answer is lost the row is read back at SERIAL: carrying
// c.Owner means claimed; prev still there is an error wrapping
// ErrNotApplied; another owner *ClaimTakenError; a failed read-back
// *UnknownError. Neither error lets the caller write NVCF, and a claim
// that applied unseen stops others only until lease.
func (s *Store) ClaimWrite(ctx context.Context, key VersionKey, c WriteClaim, prev string, lease, ttl time.Duration) error {
	leaseSecs, err := ttlSeconds(lease)
	if err != nil {
		return fmt.Errorf("claim write of %s: lease: %w", key, err)
	}
	stateSecs, err := ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("claim write of %s: %w", key, err)
	}
	b := s.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	b.Query(fmt.Sprintf(`UPDATE %s USING TTL ? SET claim_owner = ?, claim_cycle = ?, claim_requested = ? WHERE function_id = ? AND function_version_id = ? IF claim_owner = ?`, s.tState),
		stateSecs, c.Owner, c.Cycle, c.Requested, key.FunctionID, key.FunctionVersionID, nullable(prev))
	b.Query(fmt.Sprintf(`UPDATE %s USING TTL ? SET claim_live = ? WHERE function_id = ? AND function_version_id = ?`, s.tState),
		leaseSecs, c.Owner, key.FunctionID, key.FunctionVersionID)
	existing := map[string]interface{}{}
	applied, iter, err := s.session.MapExecuteBatchCAS(b, existing)
	if iter != nil {
		_ = iter.Close()
	}
	if err != nil {
		return s.settleLostClaim(ctx, key, c, prev, err)
	}
	if applied {
		return nil
	}
	owner, _ := existing["claim_owner"].(string)
	return &ClaimTakenError{Key: key, Owner: owner}
}

// settleLostClaim reads a claim whose answer was lost (err) back at
// SERIAL, which completes any Paxos round in progress on the row.
func (s *Store) settleLostClaim(ctx context.Context, key VersionKey, c WriteClaim, prev string, err error) error {
	lost := LostAnswer{Op: opClaim, Name: key.String(), Cause: lostCause(err), Err: err}
	st, rerr := s.readState(context.WithoutCancel(ctx), key, serialRead(s.cfg.SerialConsistency))
	if rerr != nil {
		lost.Resolved, lost.ReadErr = resolvedUnknown, rerr
		s.reportLost(lost)
		return &UnknownError{Op: opClaim, Name: key.String(), Err: err, ReadErr: rerr}
	}
	lost.Resolved = resolvedNotApplied
	if st.Claim.Owner == c.Owner {
		lost.Resolved = resolvedApplied
	}
	s.reportLost(lost)
	switch st.Claim.Owner {
	case c.Owner:
		return nil
	case prev:
		return fmt.Errorf("claim write of %s: answer lost (%w); read back at SERIAL the version is not claimed: %w", key, err, ErrNotApplied)
	}
	return &ClaimTakenError{Key: key, Owner: st.Claim.Owner}
}

// SettleClaim gives owner's claim on key up without a record: the write
// it claimed was not made, or its outcome was recorded elsewhere. It is a
// plain write (see above); writing it for a claim that never applied, or
// was since replaced, changes nothing, since only the current owner's
// claim reads as settled.
func (s *Store) SettleClaim(ctx context.Context, key VersionKey, owner string, ttl time.Duration) error {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("settle claim on %s: %w", key, err)
	}
	err = s.session.Query(
		fmt.Sprintf(`UPDATE %s USING TTL ? SET settled_claim = ? WHERE function_id = ? AND function_version_id = ?`, s.tState),
		secs, owner, key.FunctionID, key.FunctionVersionID,
	).WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("settle claim %q on %s: %w", owner, key, err)
	}
	return nil
}

// nullable binds "" as CQL null, which is what an absent cell compares
// equal to in a condition.
func nullable(s string) interface{} {
	if s == "" {
		return nil
	}
	return s
}

// IsClaimTaken reports whether err says the version was claimed by
// someone else.
func IsClaimTaken(err error) bool {
	var t *ClaimTakenError
	return errors.As(err, &t)
}
