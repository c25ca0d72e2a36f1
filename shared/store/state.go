package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"function/shared/buckets"
)

// ScalingState is what the scale function remembers about a version between
// stateless invocations.
type ScalingState struct {
	VersionKey
	// Exists is false when no state was ever written for the version.
	Exists bool
	// LastRequested is the instance count last accepted by the NVCF API;
	// valid when HasLastRequested.
	LastRequested    int
	HasLastRequested bool
	// AppliedTarget is the instance count the NVCF API reported it targets
	// after the last write (active + pending + allocating); valid when
	// HasAppliedTarget. It differs from LastRequested when the API clamped
	// the request to the version's min or max instances.
	AppliedTarget    int
	HasAppliedTarget bool
	// LastCycle is the cycle (unix milliseconds of its tick) whose decision
	// was last applied. A cycle at or before it never writes again, which is
	// what makes replayed and late bucket events harmless.
	LastCycle     int64
	LastWrittenAt time.Time
	// Status is the NVCF outcome of the last write ("ok", "not_found", ...).
	Status string
	// NotFoundAt is when the NVCF API last answered NotFound, so a deleted
	// function is not retried every cycle.
	NotFoundAt time.Time
	// Recommendations is the policy's recent-recommendation history, opaque
	// to the store (the scale function encodes it).
	Recommendations string
	// WatchSince is when the scale function first decided this version:
	// how far back "no invocation seen" is evidence of idleness.
	WatchSince time.Time
	// Source is the metric source the version was last decided from
	// ("worker", "gateway", "control_plane"; empty before the first
	// decision). It is written only when it changes.
	Source string
	// Cost is the version's learned busy seconds per request; the zero
	// value when nothing was learned yet.
	Cost Cost
	// Backlog is the version's estimated queue; the zero value when none
	// was estimated yet.
	Backlog Backlog
	// Claim is the version's last write claim (claims.go); its Owner is
	// what a new claim must name as the one it replaces.
	Claim ClaimState
	// KeepAlive is what the version's invocations taught about keeping it
	// warm; the zero value when nothing was learned yet.
	KeepAlive KeepAlive
}

// KeepAlive is a version's learned invocation pattern as stored: its idle
// gaps, its cold start, and the pre-warm it is waiting on. Each group of
// columns has its own writer (Save*, Mark*), so that a writer of one never
// overwrites another's newer value with the one it read.
type KeepAlive struct {
	// Histogram is the version's idle histogram in the policy's text
	// encoding, opaque to the store; empty when none was learned.
	Histogram string
	// BurstEnd is the last step of the last invocation burst that a quiet
	// step is known to have followed: where the next idle gap starts.
	BurstEnd time.Time
	// FoldedTo is the first step of the last burst whose preceding gap was
	// folded into Histogram. A gap is folded only when its burst starts
	// after FoldedTo, which is what keeps a replayed or late cycle, or a
	// second replica, from counting the same gap twice.
	FoldedTo time.Time
	// ColdStart is the learned time from a write above zero from zero to
	// the first worker reporting: a decayed mean, its evidence, and the
	// step of the last cold start folded into it.
	ColdStartSeconds, ColdStartWeight float64
	ColdStartAt                       time.Time
	// ColdFrom is when a write took the version above zero from zero and
	// no worker has reported since: the start of a cold start still being
	// measured. Zero when none is.
	ColdFrom time.Time
	// PrewarmAt is when a pre-warm was written and PrewarmFor the end of
	// the burst it counted from (it was written for the burst after that
	// one); both zero when no pre-warm is pending.
	PrewarmAt, PrewarmFor time.Time
}

// Backlog is an estimated queue as stored: requests routed to the version
// and not yet served, as of the end of the last metrics window folded into
// it. Like Cost, a window is folded only when it ends after WindowEnd.
type Backlog struct {
	Requests  float64
	WindowEnd time.Time
	// Prior is the estimate the window ending at WindowEnd was folded
	// onto (policy.Backlog.Prior): a replica or retry that finds this
	// window already folded must still see that it served a queue.
	Prior float64
}

// Cost is a learned busy-seconds-per-request estimate as stored: the
// estimate, the decayed evidence behind it, and the end of the last
// metrics window folded into it. The scale function folds only windows
// that end after WindowEnd, which is what keeps a replayed or late cycle
// from counting the same requests twice.
type Cost struct {
	SecondsPerRequest float64
	Weight            float64
	WindowEnd         time.Time
}

func (s *Store) stateColumns() string {
	return `function_id, function_version_id, last_requested, last_cycle, last_written_at, status, not_found_at, recommendations, watch_since, source, ` +
		`cost_seconds_per_request, cost_weight, cost_window_end, applied_target, backlog_requests, backlog_window_end, backlog_prior, ` +
		`claim_owner, claim_cycle, claim_requested, claim_live, TTL(claim_live), settled_claim, ` +
		`idle_histogram, burst_end, idle_folded_to, cold_start_seconds, cold_start_weight, cold_start_at, cold_from, prewarm_at, prewarm_for`
}

func scanState(scan func(dest ...interface{}) bool) (ScalingState, bool) {
	var st ScalingState
	var lastRequested, appliedTarget *int
	var lastCycle *int64
	var status, recs, source, hist *string
	var costSeconds, costWeight, backlog, backlogPrior, coldSeconds, coldWeight *float64
	var claimCycle *int64
	var claimRequested *int
	var claimOwner, claimLive, settled *string
	var leaseLeft *int
	ka := &st.KeepAlive
	ok := scan(&st.FunctionID, &st.FunctionVersionID, &lastRequested, &lastCycle, &st.LastWrittenAt, &status, &st.NotFoundAt, &recs, &st.WatchSince, &source,
		&costSeconds, &costWeight, &st.Cost.WindowEnd, &appliedTarget, &backlog, &st.Backlog.WindowEnd, &backlogPrior,
		&claimOwner, &claimCycle, &claimRequested, &claimLive, &leaseLeft, &settled,
		&hist, &ka.BurstEnd, &ka.FoldedTo, &coldSeconds, &coldWeight, &ka.ColdStartAt, &ka.ColdFrom, &ka.PrewarmAt, &ka.PrewarmFor)
	if !ok {
		return st, false
	}
	if hist != nil {
		ka.Histogram = *hist
	}
	if coldSeconds != nil && coldWeight != nil {
		ka.ColdStartSeconds, ka.ColdStartWeight = *coldSeconds, *coldWeight
	}
	if claimOwner != nil && *claimOwner != "" {
		c := &st.Claim
		c.Owner = *claimOwner
		if claimCycle != nil {
			c.Cycle = *claimCycle
		}
		if claimRequested != nil {
			c.Requested = *claimRequested
		}
		c.Live = claimLive != nil && *claimLive == c.Owner
		if c.Live && leaseLeft != nil {
			c.LeaseLeft = time.Duration(*leaseLeft) * time.Second
		}
		c.Settled = settled != nil && *settled == c.Owner
	}
	if costSeconds != nil && costWeight != nil {
		st.Cost.SecondsPerRequest, st.Cost.Weight = *costSeconds, *costWeight
	}
	if backlog != nil {
		st.Backlog.Requests = *backlog
	}
	if backlogPrior != nil {
		st.Backlog.Prior = *backlogPrior
	}
	st.Exists = true
	if lastRequested != nil {
		st.LastRequested, st.HasLastRequested = *lastRequested, true
	}
	if appliedTarget != nil {
		st.AppliedTarget, st.HasAppliedTarget = *appliedTarget, true
	}
	if lastCycle != nil {
		st.LastCycle = *lastCycle
	}
	if status != nil {
		st.Status = *status
	}
	if recs != nil {
		st.Recommendations = *recs
	}
	if source != nil {
		st.Source = *source
	}
	return st, true
}

// ReadStates returns the scaling state of every version in bucket r.
func (s *Store) ReadStates(ctx context.Context, r buckets.Range) (map[VersionKey]ScalingState, error) {
	iter := s.session.Query(
		fmt.Sprintf(`SELECT %s FROM %s WHERE token(function_id, function_version_id) >= ? AND token(function_id, function_version_id) <= ?`, s.stateColumns(), s.tState),
		r.Start, r.End,
	).WithContext(ctx).PageSize(s.cfg.PageSize).Iter()
	out := map[VersionKey]ScalingState{}
	for {
		st, ok := scanState(iter.Scan)
		if !ok {
			break
		}
		out[st.VersionKey] = st
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read scaling state of %s: %w", r, err)
	}
	return out, nil
}

// ReadState returns one version's state at the configured consistency.
// The scale function re-reads a version with it after losing a write
// claim: the winner's Paxos commit and this read are both quorum, so they
// intersect.
func (s *Store) ReadState(ctx context.Context, key VersionKey) (ScalingState, error) {
	return s.readState(ctx, key, s.cfg.Consistency)
}

func (s *Store) readState(ctx context.Context, key VersionKey, c gocql.Consistency) (ScalingState, error) {
	q := s.session.Query(
		fmt.Sprintf(`SELECT %s FROM %s WHERE function_id = ? AND function_version_id = ?`, s.stateColumns(), s.tState),
		key.FunctionID, key.FunctionVersionID,
	).WithContext(ctx).Consistency(c)
	var scanErr error
	st, ok := scanState(func(dest ...interface{}) bool {
		scanErr = q.Scan(dest...)
		return scanErr == nil
	})
	if !ok {
		if isNotFound(scanErr) {
			return ScalingState{VersionKey: key}, nil
		}
		return ScalingState{}, fmt.Errorf("read scaling state of %s: %w", key, scanErr)
	}
	return st, nil
}

// RecordWrite stores a write of requested for cycle made under no claim,
// with no target reported: how tests and the bench seed a version's
// history.
func (s *Store) RecordWrite(ctx context.Context, key VersionKey, requested int, cycle int64, status string, ttl time.Duration) error {
	return s.RecordWriteTarget(ctx, key, "", requested, -1, cycle, status, ttl)
}

// RecordWriteTarget stores the outcome of an NVCF write for cycle, and
// settles the write claim it was made under (claim, the claim's Owner;
// "" when made under none). target is the count the NVCF API reported
// it targets after the write; a negative target means the answer carried
// none and stores null.
//
// The record is what keeps a replay from writing NVCF again, so a lost
// answer is not taken for either outcome: the row is read back at SERIAL
// and the record counts as made only if it carries this write's own
// last_written_at. Not there is an error wrapping ErrNotApplied; a failed
// read-back is *UnknownError.
func (s *Store) RecordWriteTarget(ctx context.Context, key VersionKey, claim string, requested, target int, cycle int64, status string, ttl time.Duration) error {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("record write for %s: %w", key, err)
	}
	var applied *int
	if target >= 0 {
		applied = &target
	}
	// Cassandra keeps milliseconds: truncated, the timestamp read back
	// equals the one written and marks this very write.
	at := time.Now().UTC().Truncate(time.Millisecond)
	err = s.session.Query(
		fmt.Sprintf(`UPDATE %s USING TTL ? SET last_requested = ?, applied_target = ?, last_cycle = ?, last_written_at = ?, status = ?, settled_claim = ? WHERE function_id = ? AND function_version_id = ?`, s.tState),
		secs, requested, applied, cycle, at, status, nullable(claim), key.FunctionID, key.FunctionVersionID,
	).WithContext(ctx).Idempotent(true).Exec()
	if err == nil {
		return nil
	}
	lost := LostAnswer{Op: opRecord, Name: key.String(), Cause: lostCause(err), Err: err}
	st, rerr := s.readState(context.WithoutCancel(ctx), key, serialRead(s.cfg.SerialConsistency))
	if rerr != nil {
		lost.Resolved, lost.ReadErr = resolvedUnknown, rerr
		s.reportLost(lost)
		return &UnknownError{Op: opRecord, Name: key.String(), Err: fmt.Errorf("record write of %d in cycle %d: %w", requested, cycle, err), ReadErr: rerr}
	}
	if st.LastWrittenAt.Equal(at) && st.HasLastRequested && st.LastRequested == requested && st.LastCycle == cycle {
		lost.Resolved = resolvedApplied
		s.reportLost(lost)
		return nil
	}
	lost.Resolved = resolvedNotApplied
	s.reportLost(lost)
	return fmt.Errorf("record write of %d for %s in cycle %d: answer lost (%w); read back at SERIAL the record is not there: %w", requested, key, cycle, err, ErrNotApplied)
}

// RecordOutcome stores a non-write outcome (such as NotFound) for cycle, so
// the next cycle can see it without asking the NVCF API again, and
// settles the write claim it was asked under (claim; "" for none).
func (s *Store) RecordOutcome(ctx context.Context, key VersionKey, claim string, cycle int64, status string, notFoundAt time.Time, ttl time.Duration) error {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("record outcome for %s: %w", key, err)
	}
	var nf interface{}
	if !notFoundAt.IsZero() {
		nf = notFoundAt.UTC()
	}
	err = s.session.Query(
		fmt.Sprintf(`UPDATE %s USING TTL ? SET last_cycle = ?, status = ?, not_found_at = ?, settled_claim = ? WHERE function_id = ? AND function_version_id = ?`, s.tState),
		secs, cycle, status, nf, nullable(claim), key.FunctionID, key.FunctionVersionID,
	).WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("record outcome %q for %s in cycle %d: %w", status, key, cycle, err)
	}
	return nil
}

// StateUpdate is a set of plain (unconditional) column writes to one
// version's state row, made by SaveState as one UPDATE. The scale function
// gathers a version's writes of a cycle in one: a version seen for the
// first time used to cost six writes (watch mark, recommendations, source,
// cost, backlog, idle histogram), about 600,000 at 100,000 versions, and
// each is a request both sides handle and a mutation Cassandra applies.
// Every column group keeps its own setter, as it kept its own writer, so
// an update carries only the groups the cycle changed and never
// overwrites another writer's newer value with one it read. A later set
// of a column replaces an earlier one, as a later write would.
type StateUpdate struct {
	cols []string
	vals []interface{}
}

func (u *StateUpdate) set(col string, v interface{}) {
	for i, c := range u.cols {
		if c == col {
			u.vals[i] = v
			return
		}
	}
	u.cols = append(u.cols, col)
	u.vals = append(u.vals, v)
}

// Empty reports whether the update sets nothing.
func (u *StateUpdate) Empty() bool { return len(u.cols) == 0 }

// Columns are the columns the update sets, in the order first set.
func (u *StateUpdate) Columns() []string { return append([]string(nil), u.cols...) }

// Recommendations sets the policy's recent-recommendation history
// (opaque to the store). Losing a race here only loses one sample of
// stabilization history, never a decision.
func (u *StateUpdate) Recommendations(encoded string) { u.set("recommendations", encoded) }

// Watched sets when the scale function started watching the version;
// callers set it once per version (they check WatchSince first).
func (u *StateUpdate) Watched(at time.Time) { u.set("watch_since", at.UTC()) }

// Source sets the metric source the version is decided from; callers set
// it only when it changes. A lost race only repeats it.
func (u *StateUpdate) Source(source string) { u.set("source", source) }

// Cost sets a version's learned cost. It is not under the version's write
// claim: two replicas deciding the same cycle fold the same window into
// the same stored estimate and write the same value, and a replica that
// reads the newer estimate skips the window (its end is not after
// WindowEnd).
func (u *StateUpdate) Cost(c Cost) {
	u.set("cost_seconds_per_request", c.SecondsPerRequest)
	u.set("cost_weight", c.Weight)
	u.set("cost_window_end", c.WindowEnd.UTC())
}

// Backlog sets a version's estimated queue; like Cost, replicas fold the
// same window into the same value, and one that reads the newer estimate
// skips the window.
func (u *StateUpdate) Backlog(b Backlog) {
	u.set("backlog_requests", b.Requests)
	u.set("backlog_window_end", b.WindowEnd.UTC())
	u.set("backlog_prior", b.Prior)
}

// Idle sets a version's idle histogram with the burst bounds it was
// folded up to; replicas fold the same gap into the same value, and one
// that reads the newer row skips the gap (its burst does not start after
// FoldedTo).
func (u *StateUpdate) Idle(k KeepAlive) {
	u.set("idle_histogram", k.Histogram)
	u.set("burst_end", nullTime(k.BurstEnd))
	u.set("idle_folded_to", nullTime(k.FoldedTo))
}

// ColdStart sets a version's learned cold start and ends the measurement
// it came from (cold_from); replicas that measured the same cold start
// write the same value.
func (u *StateUpdate) ColdStart(k KeepAlive) {
	u.set("cold_start_seconds", k.ColdStartSeconds)
	u.set("cold_start_weight", k.ColdStartWeight)
	u.set("cold_start_at", nullTime(k.ColdStartAt))
	u.set("cold_from", nullTime(k.ColdFrom))
}

// ColdFrom sets when a write took the version above zero from zero: the
// start of a cold start to measure.
func (u *StateUpdate) ColdFrom(at time.Time) { u.set("cold_from", nullTime(at)) }

// Prewarm sets a pre-warm written at `at` for the burst expected at
// `burst`; zero times clear the marker once its outcome has been counted.
func (u *StateUpdate) Prewarm(at, burst time.Time) {
	u.set("prewarm_at", nullTime(at))
	u.set("prewarm_for", nullTime(burst))
}

// SaveState makes u's writes to key's state row as one UPDATE with a
// fresh TTL. An empty update writes nothing.
func (s *Store) SaveState(ctx context.Context, key VersionKey, u StateUpdate, ttl time.Duration) error {
	if u.Empty() {
		return nil
	}
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("save %s of %s: %w", strings.Join(u.cols, ", "), key, err)
	}
	stmt, args := s.stateStatement(key, u, secs)
	if err := s.session.Query(stmt, args...).WithContext(ctx).Idempotent(true).Exec(); err != nil {
		return fmt.Errorf("save %s of %s: %w", strings.Join(u.cols, ", "), key, err)
	}
	return nil
}

// stateStatement is u's UPDATE of key's row. Columns go in a fixed order:
// one statement text, prepared once, per set of columns.
func (s *Store) stateStatement(key VersionKey, u StateUpdate, ttlSecs int) (string, []interface{}) {
	idx := make([]int, len(u.cols))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return u.cols[idx[a]] < u.cols[idx[b]] })
	sets := make([]string, len(idx))
	args := make([]interface{}, 0, len(idx)+3)
	args = append(args, ttlSecs)
	for i, j := range idx {
		sets[i] = u.cols[j] + " = ?"
		args = append(args, u.vals[j])
	}
	args = append(args, key.FunctionID, key.FunctionVersionID)
	return fmt.Sprintf(`UPDATE %s USING TTL ? SET %s WHERE function_id = ? AND function_version_id = ?`, s.tState, strings.Join(sets, ", ")), args
}

// StateWrite is one version's update, for SaveStates.
type StateWrite struct {
	Key    VersionKey
	Update StateUpdate
}

// StateBatch and stateBatchBytes bound what SaveStates sends in one
// request: Cassandra's defaults log a warning for every unlogged batch of
// more than 10 partitions (unlogged_batch_across_partitions_warn_threshold)
// or 5 KiB (batch_size_warn_threshold), and refuse one of 50 KiB. A first
// decision's update is about 200 bytes; an idle histogram may grow one
// to about 3 KiB, which then goes alone or with a few others.
const (
	StateBatch      = 10
	stateBatchBytes = 4 << 10
)

// size estimates w's share of a batch's size: its key and its values,
// a text value by its length and any other by a generous 8 bytes.
func (w StateWrite) size() int {
	n := len(w.Key.FunctionID) + len(w.Key.FunctionVersionID)
	for i, v := range w.Update.vals {
		n += len(w.Update.cols[i])
		if s, ok := v.(string); ok {
			n += len(s)
		} else {
			n += 8
		}
	}
	return n
}

// SaveStates makes each write as SaveState would, several of them (see
// StateBatch) in one unlogged batch. Each update is still its own mutation of
// its own partition, applied or not on its own (an unlogged batch is not
// atomic, and nothing here needs it to be); what the batch saves is a
// request per update, which both sides pay for: in the first cycle after
// an import, one plain write per version was most of the cycle's CQL
// requests. A batch holds neighbours on the ring (ringBatches), in
// whatever order the caller passes the writes.
//
// It returns every write it did not make, each with its own batch's
// error (a write whose turn came after ctx ended was not sent, and says
// so); none when all were made. A failed batch may have applied some of
// its updates, which is harmless as each is idempotent.
func (s *Store) SaveStates(ctx context.Context, writes []StateWrite, ttl time.Duration) []FailedStateWrite {
	rest := make([]StateWrite, 0, len(writes))
	for _, w := range writes {
		if !w.Update.Empty() {
			rest = append(rest, w)
		}
	}
	secs, err := ttlSeconds(ttl)
	if err != nil {
		failed := make([]FailedStateWrite, len(rest))
		for i, w := range rest {
			failed[i] = FailedStateWrite{StateWrite: w, Err: fmt.Errorf("save states: %w", err)}
		}
		return failed
	}
	chunks := ringBatches(rest, func(w StateWrite) VersionKey { return w.Key }, stateBatchLen)
	// A few batches in flight: a bucket's writes are made together at its
	// end, and one at a time they would wait a round trip each.
	errs := sendEach(ctx, len(chunks), saveStatesParallelism, func(i int) error {
		b := s.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
		for _, w := range chunks[i] {
			stmt, args := s.stateStatement(w.Key, w.Update, secs)
			b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: stmt, Args: args, Idempotent: true})
		}
		return s.session.ExecuteBatch(b)
	})
	var failed []FailedStateWrite
	for i, err := range errs {
		if err == nil {
			continue
		}
		chunk := chunks[i]
		err = fmt.Errorf("save states of %s and %d more: %w", chunk[0].Key, len(chunk)-1, err)
		for _, w := range chunk {
			failed = append(failed, FailedStateWrite{StateWrite: w, Err: err})
		}
	}
	return failed
}

// FailedStateWrite is a write SaveStates did not make, with why: the error
// of its own batch, shared with that batch's writes and no other's.
type FailedStateWrite struct {
	StateWrite
	Err error
}

// saveStatesParallelism bounds SaveStates' batches in flight.
const saveStatesParallelism = 4

// stateBatchLen is how many of writes go in the next batch: at least one,
// at most StateBatch, and no more than stateBatchBytes of them unless
// the first alone is more.
func stateBatchLen(writes []StateWrite) int {
	n, bytes := 1, writes[0].size()
	for n < min(StateBatch, len(writes)) && bytes+writes[n].size() <= stateBatchBytes {
		bytes += writes[n].size()
		n++
	}
	return n
}

// SettlePrewarm clears the pending pre-warm marked at `at` if it is still
// that one, and reports whether this call cleared it. Its outcome (used,
// late, wasted) is counted by the one caller that cleared it, however many
// replicas and replayed events see the same evidence: a conditional write,
// one Paxos round per pre-warm. An error (a lost answer among them) means
// "not known to be cleared": the caller does not count, so an outcome may
// go uncounted, never counted twice.
func (s *Store) SettlePrewarm(ctx context.Context, key VersionKey, at time.Time) (bool, error) {
	existing := map[string]interface{}{}
	applied, err := s.session.Query(
		fmt.Sprintf(`UPDATE %s SET prewarm_at = null, prewarm_for = null WHERE function_id = ? AND function_version_id = ? IF prewarm_at = ?`, s.tState),
		key.FunctionID, key.FunctionVersionID, at.UTC(),
	).WithContext(ctx).MapScanCAS(existing)
	if err != nil {
		return false, fmt.Errorf("settle pre-warm of %s: %w", key, err)
	}
	return applied, nil
}

// nullTime stores the zero time as null, which reads back as the zero time.
func nullTime(t time.Time) interface{} {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func isNotFound(err error) bool { return errors.Is(err, gocql.ErrNotFound) }
