package store

// Cassandra's "unknown" answers. A write whose answer does not arrive (the
// coordinator's Paxos round timed out, the driver's own timeout fired, the
// connection broke) may or may not have applied: Cassandra documents a
// WriteTimeout of WriteType CAS as exactly that, and a client-side timeout
// says even less. Assuming "not applied" would let two replicas both think
// they hold a lock or have a cycle written twice; assuming "applied" would
// lose a decision. So every such answer is settled by reading the row back
// at SERIAL consistency, which completes any Paxos round in progress before
// it answers, and only that read decides.

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocql/gocql"
)

// What a lost answer was for (LostAnswer.Op).
const (
	opAcquire = "acquire"
	opRefresh = "refresh"
	opRelease = "release"
	opRecord  = "record"
	opClaim   = "claim"
)

// How the read-back settled it (LostAnswer.Resolved).
const (
	resolvedApplied    = "applied"
	resolvedNotApplied = "not_applied"
	resolvedUnknown    = "unknown"
)

// LostAnswer reports one write whose answer was lost and what the SERIAL
// read-back made of it; Config.OnLostAnswer receives one per loss.
type LostAnswer struct {
	// Op is acquire, refresh or release (a lock's LWT), claim (a
	// version's write claim) or record (a version's cycle record after an
	// NVCF write).
	Op string
	// Name is the lock's name, or the version of a claim or cycle record.
	Name string
	// Cause classifies Err: write_timeout (Cassandra's WriteTimeout, the
	// WriteType is in Err), cas_write_unknown, client_timeout (no answer
	// within CASSANDRA_TIMEOUT or the caller's deadline) or error.
	Cause string
	Err   error
	// Resolved is applied, not_applied, or unknown when the read-back
	// failed too (ReadErr).
	Resolved string
	ReadErr  error
}

// UnknownError is returned when a write's answer was lost and reading it
// back at SERIAL failed too: it may or may not have applied. A caller must
// act on neither guess; it answers 503 so the event is retried, and a lock
// that did apply frees itself at its TTL.
type UnknownError struct {
	Op, Name string
	Err      error // the write's
	ReadErr  error // the read-back's
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("%s %q: outcome unknown: %v; read back at SERIAL failed: %v", e.Op, e.Name, e.Err, e.ReadErr)
}

// Unwrap exposes both causes to errors.Is and errors.As.
func (e *UnknownError) Unwrap() []error { return []error{e.Err, e.ReadErr} }

// ErrNotApplied says a write whose answer was lost turned out, read back at
// SERIAL, not to have applied.
var ErrNotApplied = errors.New("not applied")

// lostCause names why an answer was lost, for logs and metrics.
func lostCause(err error) string {
	var wt *gocql.RequestErrWriteTimeout
	var cu *gocql.RequestErrCASWriteUnknown
	switch {
	case errors.As(err, &wt):
		return "write_timeout"
	case errors.As(err, &cu):
		return "cas_write_unknown"
	case errors.Is(err, gocql.ErrTimeoutNoResponse), errors.Is(err, context.DeadlineExceeded):
		return "client_timeout"
	}
	return "error"
}

func (s *Store) reportLost(l LostAnswer) {
	if s.cfg.OnLostAnswer != nil {
		s.cfg.OnLostAnswer(l)
	}
}
