package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"
)

// Lock is a held lease: Owner holds Name until ExpiresAt unless it refreshes.
type Lock struct {
	Name       string
	Owner      string
	AcquiredAt time.Time
	ExpiresAt  time.Time
}

// HeldError is returned when a lock belongs to someone else. It says who
// holds it and until when, so callers can answer "skipped: held by X until T".
type HeldError struct{ Lock Lock }

func (e *HeldError) Error() string {
	return fmt.Sprintf("lock %q held by %q until %s", e.Lock.Name, e.Lock.Owner, e.Lock.ExpiresAt.UTC().Format(time.RFC3339Nano))
}

// ErrNotOwner is returned when refreshing or releasing a lock the caller
// does not hold (it expired, or another owner took it).
var ErrNotOwner = errors.New("not the lock owner")

// AcquireLock takes name for owner for ttl with INSERT ... IF NOT EXISTS.
// Acquiring a lock the caller already holds refreshes it, so a retried
// invocation does not lock itself out. A lost race returns *HeldError.
//
// When the LWT's answer is lost (a timeout: it may or may not have
// applied) the lock is read back at SERIAL: ours means acquired, another
// owner means *HeldError, free means not acquired (an error wrapping
// ErrNotApplied); a failed read-back returns *UnknownError. Neither error
// lets the caller act, and a lock that applied unseen frees at its TTL.
func (s *Store) AcquireLock(ctx context.Context, name, owner string, ttl time.Duration) (Lock, error) {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return Lock{}, fmt.Errorf("acquire lock %q: %w", name, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	l := Lock{Name: name, Owner: owner, AcquiredAt: now, ExpiresAt: now.Add(time.Duration(secs) * time.Second)}
	existing := map[string]interface{}{}
	applied, err := s.session.Query(
		fmt.Sprintf(`INSERT INTO %s (lock_name, node_id, acquired_at, expires_at) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?`, s.tLocks),
		name, owner, l.AcquiredAt, l.ExpiresAt, secs,
	).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		held, rerr := s.readBack(ctx, opAcquire, name, err, func(held Lock) bool { return held.Owner == owner })
		switch {
		case rerr != nil:
			return Lock{}, rerr
		case held.Owner == owner:
			return held, nil
		case held.Owner != "":
			return Lock{}, &HeldError{Lock: held}
		}
		return Lock{}, fmt.Errorf("acquire lock %q: answer lost (%w); read back at SERIAL the lock is free: %w", name, err, ErrNotApplied)
	}
	if applied {
		return l, nil
	}
	held := lockFromRow(name, existing)
	if held.Owner == owner {
		return s.RefreshLock(ctx, name, owner, ttl)
	}
	return Lock{}, &HeldError{Lock: held}
}

// RefreshLock extends owner's lease on name to ttl from now and returns
// the lease as it stands. When the LWT's answer is lost the lock is read
// back at SERIAL: still ours returns the lease read (extended or not, its
// ExpiresAt says until when it holds), another owner or none ErrNotOwner,
// a failed read-back *UnknownError.
func (s *Store) RefreshLock(ctx context.Context, name, owner string, ttl time.Duration) (Lock, error) {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return Lock{}, fmt.Errorf("refresh lock %q: %w", name, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	l := Lock{Name: name, Owner: owner, AcquiredAt: now, ExpiresAt: now.Add(time.Duration(secs) * time.Second)}
	existing := map[string]interface{}{}
	// node_id is written again on purpose: an UPDATE's TTL applies only to
	// the cells it sets, and a node_id cell left with the old TTL would
	// expire first and leave an ownerless row that nobody can acquire.
	applied, err := s.session.Query(
		fmt.Sprintf(`UPDATE %s USING TTL ? SET node_id = ?, acquired_at = ?, expires_at = ? WHERE lock_name = ? IF node_id = ?`, s.tLocks),
		secs, owner, l.AcquiredAt, l.ExpiresAt, name, owner,
	).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		held, rerr := s.readBack(ctx, opRefresh, name, err, func(held Lock) bool {
			return held.Owner == owner && held.ExpiresAt.Equal(l.ExpiresAt)
		})
		switch {
		case rerr != nil:
			return Lock{}, rerr
		case held.Owner == owner:
			return held, nil
		}
		return Lock{}, fmt.Errorf("refresh lock %q by %q: answer lost (%w); read back at SERIAL: %w (%s)", name, owner, err, ErrNotOwner, ownerText(held.Owner))
	}
	if !applied {
		return Lock{}, fmt.Errorf("refresh lock %q by %q: %w (%s)", name, owner, ErrNotOwner, ownerText(rowOwner(existing)))
	}
	return l, nil
}

// ReleaseLock deletes name if owner holds it. When the LWT's answer is
// lost the lock is read back at SERIAL: not ours any more is a release
// (nil when free, ErrNotOwner when another owner took it); still ours is
// an error wrapping ErrNotApplied naming when its TTL frees it; a failed
// read-back is *UnknownError.
func (s *Store) ReleaseLock(ctx context.Context, name, owner string) error {
	existing := map[string]interface{}{}
	applied, err := s.session.Query(
		fmt.Sprintf(`DELETE FROM %s WHERE lock_name = ? IF node_id = ?`, s.tLocks), name, owner,
	).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		held, rerr := s.readBack(ctx, opRelease, name, err, func(held Lock) bool { return held.Owner == "" })
		switch {
		case rerr != nil:
			return rerr
		case held.Owner == "":
			return nil
		case held.Owner == owner:
			return fmt.Errorf("release lock %q: answer lost (%w); read back at SERIAL still held until %s, when its TTL frees it: %w",
				name, err, held.ExpiresAt.UTC().Format(time.RFC3339Nano), ErrNotApplied)
		}
		return fmt.Errorf("release lock %q by %q: answer lost (%w); read back at SERIAL: %w (%s)", name, owner, err, ErrNotOwner, ownerText(held.Owner))
	}
	if !applied {
		return fmt.Errorf("release lock %q by %q: %w (%s)", name, owner, ErrNotOwner, ownerText(rowOwner(existing)))
	}
	return nil
}

// readBack settles a lock LWT whose answer was lost (err) by reading the
// lock at SERIAL, which completes any Paxos round in progress and so shows
// whether the LWT applied. applied says, from the lock read, whether it did,
// for the LostAnswer report. A failed read-back is *UnknownError.
func (s *Store) readBack(ctx context.Context, op, name string, err error, applied func(Lock) bool) (Lock, error) {
	// The caller's context may be what expired; the read-back still gets
	// one request timeout of its own.
	held, rerr := s.ReadLock(context.WithoutCancel(ctx), name)
	lost := LostAnswer{Op: op, Name: name, Cause: lostCause(err), Err: err}
	if rerr != nil {
		lost.Resolved, lost.ReadErr = resolvedUnknown, rerr
		s.reportLost(lost)
		return Lock{}, &UnknownError{Op: op, Name: name, Err: err, ReadErr: rerr}
	}
	lost.Resolved = resolvedNotApplied
	if applied(held) {
		lost.Resolved = resolvedApplied
	}
	s.reportLost(lost)
	return held, nil
}

// ReadLock returns the current holder of name with a serial read, which sees
// the outcome of every LWT that completed before it. A free lock returns an
// empty Owner.
func (s *Store) ReadLock(ctx context.Context, name string) (Lock, error) {
	row := map[string]interface{}{}
	err := s.session.Query(
		fmt.Sprintf(`SELECT node_id, acquired_at, expires_at FROM %s WHERE lock_name = ?`, s.tLocks), name,
	).WithContext(ctx).Consistency(serialRead(s.cfg.SerialConsistency)).MapScan(row)
	if errors.Is(err, gocql.ErrNotFound) {
		return Lock{Name: name}, nil
	}
	if err != nil {
		return Lock{}, fmt.Errorf("read lock %q: %w", name, err)
	}
	return lockFromRow(name, row), nil
}

// serialRead maps the configured serial consistency onto the read
// consistency that makes a plain SELECT linearizable with LWTs.
func serialRead(sc gocql.SerialConsistency) gocql.Consistency {
	if sc == gocql.Serial {
		return gocql.Consistency(gocql.Serial)
	}
	return gocql.Consistency(gocql.LocalSerial)
}

func lockFromRow(name string, row map[string]interface{}) Lock {
	l := Lock{Name: name}
	l.Owner, _ = row["node_id"].(string)
	l.AcquiredAt, _ = row["acquired_at"].(time.Time)
	l.ExpiresAt, _ = row["expires_at"].(time.Time)
	return l
}

func rowOwner(row map[string]interface{}) string {
	owner, _ := row["node_id"].(string)
	return owner
}

func ownerText(owner string) string {
	if owner == "" {
		return "lock is free"
	}
	return fmt.Sprintf("held by %q", owner)
}
