package discovery

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/store/storetest"
	"function/shared/testenv/cqlproxy"
)

// The discovery lock's answers lost on the way back from the real
// Cassandra: an INSERT that applied unseen and whose read-back failed too
// is unknown, so the tick answers 503 and sends nothing; Knative's retry of
// the same tick (same owner) finds the lock its own and runs the cycle.
// An INSERT whose answer is a CAS write timeout is read back as acquired.
func TestLostLockAnswersNeitherSkipNorDoubleACycle(t *testing.T) {
	f, h, p, sk := proxied(t)
	ctx := context.Background()

	p.Proxy.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.DropReply, Times: 1})
	p.Proxy.Add(cqlproxy.Rule{Match: storetest.ReadLock, Action: cqlproxy.DropRequest, Times: 1})
	_, err := h.Handle(ctx, tick("tick-lost", time.Now()))
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "%v", err)
	require.ErrorContains(t, err, "outcome unknown")
	require.Equal(t, []string{"acquire client_timeout unknown"}, p.TakeLosses())
	require.Zero(t, sk.calls.Load(), "nothing sent on an unknown lock")
	held, err := f.store.ReadLock(ctx, LockName)
	require.NoError(t, err)
	require.Equal(t, "test-node/tick-lost", held.Owner, "the INSERT applied unseen")

	reply, err := h.Handle(ctx, tick("tick-lost", time.Now()))
	require.NoError(t, err, "the retry re-enters its own lease")
	r := result(t, reply)
	require.False(t, r.Skipped)
	require.Equal(t, len(f.want), r.Found)
	require.Len(t, sk.got, len(r.BucketsSent))

	require.NoError(t, f.store.ReleaseLock(ctx, LockName, "test-node/tick-lost"))
	p.Proxy.Add(cqlproxy.Rule{Match: storetest.Acquire, Action: cqlproxy.WriteTimeout, Times: 1})
	reply, err = h.Handle(ctx, tick("tick-next", time.Now()))
	require.NoError(t, err)
	require.False(t, result(t, reply).Skipped, "read back at SERIAL the lock is ours")
	require.Equal(t, []string{"acquire write_timeout applied"}, p.TakeLosses())
}

// Without the stored rows discovery cannot tell which rows need a write:
// the tick answers 503, writes and sends nothing, and gives the lease back,
// so Knative's retry of the same tick runs the whole cycle.
func TestUnreadableStoredRowsAnswerRetryableAndWriteNothing(t *testing.T) {
	f, h, p, sk := proxied(t)
	ctx := context.Background()

	p.Proxy.Add(cqlproxy.Rule{Match: "TTL(nca_id) FROM", Action: cqlproxy.DropRequest, Times: 100})
	_, err := h.Handle(ctx, tick("tick-unread", time.Now()))
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "%v", err)
	require.ErrorContains(t, err, "read stored rows")
	require.Zero(t, sk.calls.Load(), "nothing sent")
	stored, err := f.store.ReadStoredRows(ctx)
	require.NoError(t, err)
	require.Empty(t, stored.Invoked)
	require.Empty(t, stored.Running)

	p.Proxy.Clear()
	reply, err := h.Handle(ctx, tick("tick-unread", time.Now()))
	require.NoError(t, err, "the retry runs the cycle")
	r := result(t, reply)
	require.Equal(t, map[string]int{writeNew: len(f.want)}, r.Writes)
	require.Len(t, sk.got, len(r.BucketsSent))
}

// proxied is the fixture with a handler whose Cassandra is reached through
// a fault-injecting proxy, and the sink it sends to.
func proxied(t *testing.T) (*fixture, *Handler, *storetest.Proxied, *sink) {
	f := setup(t)
	sk := newSink(t, 0, false)
	p := storetest.Open(t, f.storeCfg)
	s := f.settings
	s.Discovery.Sink = sk.srv.URL
	h, err := New(Deps{Settings: s, Store: p.Store, TSDB: f.tsdb, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return f, h, p, sk
}
