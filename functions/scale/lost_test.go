package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/store"
	"function/shared/store/storetest"
	"function/shared/testenv/cqlproxy"
)

// lossy is one version at 90 % on two instances (the policy wants 3),
// decided by a handler whose Cassandra answers go through a proxy that
// loses them on request.
type lossy struct {
	*fixture
	*storetest.Proxied
	h    *Handler
	key  store.VersionKey
	logs *bytes.Buffer
}

// lossLockTTL is FUNCTION_LOCK_TTL (a write claim's lease) here: long
// enough to outlive two lost answers (storetest.Timeout each) and the
// retry that must meet the claim, short enough to wait out.
const lossLockTTL = 8 * time.Second

func newLossy(t *testing.T) *lossy { return newLossyWithLease(t, lossLockTTL) }

// newLossyWithLease is newLossy with lease as FUNCTION_LOCK_TTL.
func newLossyWithLease(t *testing.T, lease time.Duration) *lossy {
	f := setup(t, 1)
	l := &lossy{fixture: f, Proxied: storetest.Open(t, f.storeCfg), key: f.versions[0].VersionKey, logs: &bytes.Buffer{}}
	s := f.settings
	s.Scale.FunctionLockTTL = lease
	var logMu sync.Mutex
	var err error
	l.h, err = New(Deps{Settings: s, Store: l.Store, TSDB: f.tsdb, NVCF: f.nvcf,
		Log: slog.New(slog.NewJSONHandler(lockedWriter{&logMu, l.logs}, nil))})
	require.NoError(t, err)
	return l
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// decide handles cycle's bucket event and returns the version's outcome
// (zero when the bucket failed) and the handler's error. It does not fail
// the test itself, so Eventually may call it.
func (l *lossy) decide(cycle time.Time) (Outcome, error) {
	reply, err := l.h.HandleBucket(context.Background(), bucketEvent(cycle))
	if err != nil {
		return Outcome{}, err
	}
	var r BucketResult
	if err := json.Unmarshal(reply.Data(), &r); err != nil {
		return Outcome{}, err
	}
	if len(r.Outcomes) != 1 {
		return Outcome{}, fmt.Errorf("want one outcome, got %+v", r.Outcomes)
	}
	return r.Outcomes[0], nil
}

// requireClaimHeld returns the version's write claim as Cassandra holds
// it, which must be one of this handler's, held.
func (l *lossy) requireClaimHeld(t *testing.T) store.ClaimState {
	t.Helper()
	st, err := l.fixture.store.ReadState(context.Background(), l.key)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(st.Claim.Owner, "node-a/"), "claimed by this handler: %+v", st.Claim)
	require.True(t, st.Claim.Held(), "the claim holds the version: %+v", st.Claim)
	return st.Claim
}

// requireRetryLocked redelivers cycle's event while the claim's lease
// lasts and requires the version to be found locked. The lease left is
// checked first, so a machine too slow to retry inside it fails with that
// reason rather than with a confusing write.
func (l *lossy) requireRetryLocked(t *testing.T, cycle time.Time) {
	t.Helper()
	// Cassandra counts the lease in whole seconds: a second of margin.
	st, err := l.fixture.store.ReadState(context.Background(), l.key)
	require.NoError(t, err)
	require.Greater(t, st.Claim.LeaseLeft, time.Second, "the retry comes while the claim's lease lasts: %+v", st.Claim)
	o, err := l.decide(cycle)
	require.NoError(t, err)
	require.Equal(t, "locked", o.Action, "the retry meets the claim")
}

func (l *lossy) nvcfWrites() []int {
	var out []int
	for _, w := range l.sim.Writes() {
		if w.FunctionID == l.key.FunctionID && w.VersionID == l.key.FunctionVersionID {
			out = append(out, w.Requested)
		}
	}
	return out
}

// The write claim applies but its answer is lost (Cassandra's WriteTimeout
// of WriteType CAS): read back at SERIAL the claim is ours, so the decision
// is written, once, and the replay writes nothing.
func TestLostClaimAnswerThatAppliedWritesOnce(t *testing.T) {
	l := newLossy(t)
	cycle := time.Now()
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.WriteTimeout, Times: 1})
	o, err := l.decide(cycle)
	require.NoError(t, err)
	require.Equal(t, "written", o.Action, "%+v", o)
	require.Equal(t, []string{"claim write_timeout applied"}, l.TakeLosses())
	require.Equal(t, "RESULT", l.Proxy.Faults()[0].Reply, "Cassandra ran the claim; only its answer was lost")

	o, err = l.decide(cycle)
	require.NoError(t, err)
	require.Contains(t, []string{"already_applied", "unchanged"}, o.Action, "the replay finds the write recorded")
	require.Equal(t, []int{3}, l.nvcfWrites(), "one NVCF write")
}

// The write claim never reaches Cassandra: read back the version is not
// claimed, so nothing is written and the bucket answers 503; Knative's
// retry claims and writes, once.
func TestLostClaimRequestAnswers503AndTheRetryWrites(t *testing.T) {
	l := newLossy(t)
	cycle := time.Now()
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.DropRequest, Times: 1})
	_, err := l.decide(cycle)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "a retry can help: %v", err)
	require.ErrorContains(t, err, "1 of 1 NVCF writes failed")
	require.Equal(t, []string{"claim client_timeout not_applied"}, l.TakeLosses())
	require.Empty(t, l.nvcfWrites())
	st, err := l.fixture.store.ReadState(context.Background(), l.key)
	require.NoError(t, err)
	require.Empty(t, st.Claim.Owner, "no claim left behind")

	o, err := l.decide(cycle)
	require.NoError(t, err)
	require.Equal(t, "written", o.Action)
	require.Equal(t, []int{3}, l.nvcfWrites())
}

// The write claim applies, its answer is lost and so is the read-back:
// the outcome is unknown, so nothing is written (503). The claim, applied
// unseen, blocks the retry (nothing written twice) and frees when its
// lease ends, after which the next cycle writes.
func TestUnknownClaimWritesNothingAndFreesWithItsLease(t *testing.T) {
	l := newLossy(t)
	cycle := time.Now()
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.Claim, Action: cqlproxy.DropReply, Times: 1})
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.ReadState, Action: cqlproxy.DropRequest, Times: 1})
	_, err := l.decide(cycle)
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "%v", err)
	require.Contains(t, l.logs.String(), "outcome unknown", "the version's decision line says why")
	require.Equal(t, []string{"claim client_timeout unknown"}, l.TakeLosses())
	require.Empty(t, l.nvcfWrites(), "an unknown claim is not acted on")

	held := l.requireClaimHeld(t)
	require.LessOrEqual(t, held.LeaseLeft, lossLockTTL, "held no longer than FUNCTION_LOCK_TTL")

	l.requireRetryLocked(t, cycle)
	require.Empty(t, l.nvcfWrites())

	// Cycles after it decide again; the first one after the TTL writes.
	require.Eventually(t, func() bool {
		l.fixture.keepReporting(t)
		o, err := l.decide(time.Now())
		return err == nil && o.Action == "written"
	}, 4*lossLockTTL, 250*time.Millisecond)
	require.Equal(t, []int{3}, l.nvcfWrites())
	require.Empty(t, l.TakeLosses())
}

// The cycle record applies but its answer is lost: read back at SERIAL it
// is there, so the write counts as recorded (no 503) and the replay is
// already applied.
func TestLostRecordAnswerThatAppliedIsNoFailure(t *testing.T) {
	l := newLossy(t)
	cycle := time.Now()
	// Times covers the driver's own retries of this idempotent write; the
	// rule is cleared once the event is handled.
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.Record, Action: cqlproxy.WriteTimeout, WriteType: "SIMPLE", Times: 3})
	o, err := l.decide(cycle)
	l.Proxy.Clear()
	require.NoError(t, err)
	require.Equal(t, "written", o.Action)
	require.Equal(t, []string{"record write_timeout applied"}, l.TakeLosses())

	o, err = l.decide(cycle)
	require.NoError(t, err)
	require.Contains(t, []string{"already_applied", "unchanged"}, o.Action, "the replay finds the write recorded")
	require.Equal(t, []int{3}, l.nvcfWrites())
}

// NVCF is written but the record never reaches Cassandra, however often
// it is tried while the claim holds: the bucket
// answers 503 and the claim stays unsettled, so the retry finds the
// version locked and writes nothing. When the claim's lease ends the next
// cycle decides again; with no record it writes the same count a second
// time, the bounded residue (NVCF treats a repeated count as a no-op),
// and says it writes over an unconfirmed claim of that count.
func TestUnrecordedWriteKeepsTheClaimSoTheRetryWritesNothing(t *testing.T) {
	// Twice the usual lease: the record is tried for half of it, and
	// the retry below must still come while it lasts.
	const lease = 2 * lossLockTTL
	l := newLossyWithLease(t, lease)
	cycle := time.Now()
	// An outage longer than the claim's lease: every record tried is lost.
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.Record, Action: cqlproxy.DropRequest, Times: 1000})
	_, err := l.decide(cycle)
	l.Proxy.Clear()
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "%v", err)
	losses := l.TakeLosses()
	require.NotEmpty(t, losses)
	for _, loss := range losses {
		require.Equal(t, "record client_timeout not_applied", loss)
	}
	require.Equal(t, []int{3}, l.nvcfWrites())
	require.Contains(t, l.logs.String(), "write claim left unsettled until its lease ends")
	claimed := l.requireClaimHeld(t)
	require.Equal(t, 3, claimed.Requested)

	l.requireRetryLocked(t, cycle)
	require.Equal(t, []int{3}, l.nvcfWrites(), "the retry does not write again")

	var o Outcome
	require.Eventually(t, func() bool {
		// the workers still report at the same utilization: the same
		// decision, written once the claim has expired
		l.fixture.keepReporting(t)
		var err error
		o, err = l.decide(time.Now())
		return err == nil && o.Action == "written"
	}, 4*lease, 250*time.Millisecond)
	require.Equal(t, []int{3, 3}, l.nvcfWrites())
	require.Contains(t, o.Detail, fmt.Sprintf("the claim of cycle %d for 3 expired unconfirmed", claimed.Cycle))
}

// NVCF is written and the record is lost, but Cassandra answers again
// while the claim holds: the record is tried again and lands, so the write
// counts (no 503), and neither the replay nor a later cycle writes it
// again. The lease is long enough for the lost record (storetest.Timeout)
// and its read-back to end well inside its first half.
func TestLostRecordIsTriedAgainWhileTheClaimHolds(t *testing.T) {
	l := newLossyWithLease(t, 20*time.Second)
	cycle := time.Now()
	l.Proxy.Add(cqlproxy.Rule{Match: storetest.Record, Action: cqlproxy.DropRequest, Times: 1})
	o, err := l.decide(cycle)
	l.Proxy.Clear()
	require.NoError(t, err)
	require.Equal(t, "written", o.Action, "%+v", o)
	require.Equal(t, []string{"record client_timeout not_applied"}, l.TakeLosses(), "the first record was lost")
	require.Contains(t, l.logs.String(), "trying the record again while the claim holds")
	st, err := l.fixture.store.ReadState(context.Background(), l.key)
	require.NoError(t, err)
	require.Equal(t, cycle.UnixMilli(), st.LastCycle, "recorded")
	require.True(t, st.Claim.Settled, "the claim is settled: %+v", st.Claim)

	o, err = l.decide(cycle)
	require.NoError(t, err)
	require.Contains(t, []string{"already_applied", "unchanged"}, o.Action, "the replay finds the write recorded")
	o, err = l.decide(time.Now())
	require.NoError(t, err)
	require.Equal(t, "unchanged", o.Action, "a later cycle finds the count recorded")
	require.Equal(t, []int{3}, l.nvcfWrites(), "written once")
}
