package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"function/shared/buckets"
	"function/shared/config"
	"function/shared/events"
	"function/shared/store"
	"function/shared/testenv"
	"function/shared/tsdb"
	"function/shared/tsdb/tsdbtest"
)

// sink is a fake K_SINK on 127.0.0.1: it fails the first failFirst sends
// (or all, with failAll) and records every event it accepted by id.
type sink struct {
	srv       *httptest.Server
	failFirst int32
	failAll   bool
	calls     atomic.Int32
	mu        sync.Mutex
	got       map[string]int // event id -> deliveries accepted
	payloads  map[string]events.Bucket
	// onAccept, when set, sees each accepted bucket event as it arrives.
	onAccept func(events.Bucket)
}

func newSink(t *testing.T, failFirst int32, failAll bool) *sink {
	s := &sink{failFirst: failFirst, failAll: failAll, got: map[string]int{}, payloads: map[string]events.Bucket{}}
	// A plain handler reading binary-mode CloudEvents: the sink must answer
	// concurrent deliveries independently, as the Broker's ingress does.
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.calls.Add(1)
		if s.failAll || n <= s.failFirst {
			http.Error(w, "sink down", http.StatusServiceUnavailable)
			return
		}
		var b events.Bucket
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.Header.Get("Ce-Type") != events.TypeBucket {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		if s.onAccept != nil {
			s.onAccept(b)
		}
		s.mu.Lock()
		s.got[r.Header.Get("Ce-Id")]++
		s.payloads[r.Header.Get("Ce-Id")] = b
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

type fixture struct {
	store    *store.Store
	storeCfg store.Config // how store was opened
	tsdb     *tsdb.Client
	settings config.Settings
	run      string
	want     map[string]bool // version id -> invoked
}

// setup seeds a few hundred versions into the real VictoriaMetrics under a
// run label (used as the environment filter) and opens a keyspace of the
// test's own on the real Cassandra.
func setup(t *testing.T) *fixture {
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	ctx := context.Background()
	f := &fixture{run: fmt.Sprintf("disc%d", time.Now().UnixNano()), want: map[string]bool{}}
	extra := map[string]string{"test_env": f.run}
	var ws []tsdbtest.Worker
	for i := 0; i < 150; i++ {
		ws = append(ws, tsdbtest.Worker{FunctionID: fmt.Sprintf("f-%03d", i), FunctionVersionID: fmt.Sprintf("v-%03d", i), NcaID: "nca",
			Instances: 1, Utilization: 0.4, RequestsPerSecond: 1, Extra: extra})
		f.want[fmt.Sprintf("v-%03d", i)] = true
	}
	for i := 0; i < 150; i++ {
		ws = append(ws, tsdbtest.Worker{FunctionID: fmt.Sprintf("g-%03d", i), FunctionVersionID: fmt.Sprintf("w-%03d", i), NcaID: "nca",
			Instances: 2, Utilization: 0.1, Extra: extra})
		f.want[fmt.Sprintf("w-%03d", i)] = false
	}
	ws = append(ws, tsdbtest.Worker{FunctionID: "bad id", FunctionVersionID: "x", Instances: 1, Extra: extra})
	now := time.Now()
	require.NoError(t, tsdbtest.ImportVM(ctx, vm, tsdbtest.Generate(ws, now.Add(-5*time.Minute), now)))

	sc := store.DefaultConfig()
	sc.Hosts = hosts
	sc.Keyspace = testenv.Keyspace(t, "test_disc")
	st, err := store.Open(ctx, sc)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	f.store, f.storeCfg = st, sc
	f.tsdb, err = tsdb.New(tsdb.Config{URL: vm, MaxAttempts: 2, MaxBackoff: 50 * time.Millisecond})
	require.NoError(t, err)

	f.settings.NodeID = "test-node"
	f.settings.Buckets = 16
	f.settings.EnvLabel, f.settings.EnvValue = "test_env", f.run
	f.settings.Discovery = config.Discovery{Period: time.Minute, LockTTL: 30 * time.Second, Lookback: 10 * time.Minute,
		RowTTL: 10 * time.Minute, SendConcurrency: 8, SendAttempts: 4, BucketDeadline: 55 * time.Second}
	return f
}

func (f *fixture) handler(t *testing.T, sinkURL string, tc TSDB) *Handler {
	s := f.settings
	s.Discovery.Sink = sinkURL
	if tc == nil {
		tc = f.tsdb
	}
	h, err := New(Deps{Settings: s, Store: f.store, TSDB: tc, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return h
}

func tick(id string, at time.Time) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetType(events.TypePing)
	e.SetSource("/apis/v1/namespaces/nvcf/pingsources/autoscaler")
	e.SetTime(at)
	return e
}

func result(t *testing.T, reply *event.Event) Result {
	var r Result
	require.NotNil(t, reply)
	require.NoError(t, json.Unmarshal(reply.Data(), &r))
	return r
}

func statusOf(err error) int {
	var r *cehttp.Result
	if errors.As(err, &r) {
		return r.StatusCode
	}
	return 0
}

func TestDiscoveryFindsUpsertsAndFansOut(t *testing.T) {
	f := setup(t)
	sk := newSink(t, 0, false)
	h := f.handler(t, sk.srv.URL, nil)
	at := time.Now()
	reply, err := h.Handle(context.Background(), tick("tick-1", at))
	require.NoError(t, err)
	r := result(t, reply)
	require.Equal(t, len(f.want), r.Found, "the discovered set is exactly the versions with requests or workers")
	require.Equal(t, 150, r.Invoked)
	require.Equal(t, len(f.want), r.Upserted)
	require.Equal(t, 1, r.Invalid["invalid function_id"])

	// Cassandra holds exactly the discovered set, bucket by bucket.
	wantBuckets := map[int]int{}
	for b := 0; b < f.settings.Buckets; b++ {
		rows, err := f.store.ReadBucket(context.Background(), buckets.For(b, f.settings.Buckets))
		require.NoError(t, err)
		for _, v := range rows {
			invoked, ok := f.want[v.FunctionVersionID]
			require.True(t, ok, "unexpected row %s", v.VersionKey)
			require.Equal(t, invoked, v.Invoked, "%s", v.VersionKey)
		}
		if len(rows) > 0 {
			wantBuckets[b] = len(rows)
		}
	}
	// One event per non-empty bucket, with a deterministic id and payload.
	require.Len(t, sk.got, len(wantBuckets))
	cycle, _ := events.CycleOf(tick("x", at), at, 0)
	for b, n := range wantBuckets {
		id := events.BucketEventID(cycle, b, f.settings.Buckets)
		require.Equal(t, 1, sk.got[id], "bucket %d", b)
		require.Equal(t, n, sk.payloads[id].Versions)
		require.Equal(t, cycle, sk.payloads[id].Cycle)
	}
	require.ElementsMatch(t, keys(wantBuckets), r.BucketsSent)
}

func keys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A tick whose time is far ahead (a PingSource with a wrong clock, or a
// hand-made event) runs a cycle at the receive time: its bucket events
// carry a cycle the scale function accepts, and not one that would make
// every real cycle until then look like a replay.
func TestTickAheadOfTheClockIsTakenAsNow(t *testing.T) {
	f := setup(t)
	f.settings.ClockSkew = 10 * time.Second
	sk := newSink(t, 0, false)
	before := time.Now().Truncate(time.Second)
	reply, err := f.handler(t, sk.srv.URL, nil).Handle(context.Background(), tick("ahead", time.Now().Add(24*time.Hour)))
	require.NoError(t, err)
	after := time.Now()
	r := result(t, reply)
	require.GreaterOrEqual(t, r.Cycle, before.UnixMilli(), "cycle %s", events.FormatCycle(r.Cycle))
	require.LessOrEqual(t, r.Cycle, after.UnixMilli(), "cycle %s", events.FormatCycle(r.Cycle))
	require.NotEmpty(t, sk.payloads)
	for id, b := range sk.payloads {
		require.Equal(t, r.Cycle, b.Cycle, id)
		require.Equal(t, time.UnixMilli(r.Cycle).Add(f.settings.Discovery.BucketDeadline), b.Deadline.Local(), id)
	}

	// Within the skew the tick's own time stands, so a retry keeps its cycle.
	at := time.Now().Add(5 * time.Second)
	cycle, clamped := events.CycleOf(tick("near", at), time.Now(), f.settings.ClockSkew)
	require.False(t, clamped)
	require.Equal(t, at.Truncate(time.Second).UnixMilli(), cycle)
}

func TestConcurrentTicksOnlyOneWorks(t *testing.T) {
	f := setup(t)
	sk := newSink(t, 0, false)
	h1, h2 := f.handler(t, sk.srv.URL, nil), f.handler(t, sk.srv.URL, nil)
	at := time.Now()
	var wg sync.WaitGroup
	results := make([]Result, 2)
	for i, h := range []*Handler{h1, h2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := h.Handle(context.Background(), tick(fmt.Sprintf("tick-%d", i), at))
			require.NoError(t, err)
			results[i] = result(t, reply)
		}()
	}
	wg.Wait()
	skipped := 0
	for _, r := range results {
		if r.Skipped {
			skipped++
			require.Contains(t, r.SkipReason, "held by test-node/tick-")
			require.Contains(t, r.SkipReason, "until")
		} else {
			require.Equal(t, len(f.want), r.Found)
		}
	}
	require.Equal(t, 1, skipped, "exactly one invocation does the work")
}

func TestFlakySinkStillDeliversEveryBucketOnce(t *testing.T) {
	f := setup(t)
	sk := newSink(t, 5, false)
	h := f.handler(t, sk.srv.URL, nil)
	reply, err := h.Handle(context.Background(), tick("tick-flaky", time.Now()))
	require.NoError(t, err)
	r := result(t, reply)
	require.Empty(t, r.BucketsFail)
	require.Len(t, sk.got, len(r.BucketsSent))
	for id, n := range sk.got {
		require.Equal(t, 1, n, "%s delivered %d times", id, n)
	}
	require.Equal(t, int32(len(r.BucketsSent)+5), sk.calls.Load(), "the 5 failed sends were retried, nothing more")
}

func TestDeadSinkAnswersRetryableListingBuckets(t *testing.T) {
	f := setup(t)
	sk := newSink(t, 0, true)
	h := f.handler(t, sk.srv.URL, nil)
	_, err := h.Handle(context.Background(), tick("tick-dead", time.Now()))
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err))
	require.Contains(t, err.Error(), "buckets [")
	// The lease was given back, so Knative's retry can run the cycle.
	l, err := f.store.ReadLock(context.Background(), LockName)
	require.NoError(t, err)
	require.Empty(t, l.Owner)
}

func TestTSDBDownUpsertsNothing(t *testing.T) {
	f := setup(t)
	sk := newSink(t, 0, false)
	// First a good cycle, so Cassandra has rows to keep.
	h := f.handler(t, sk.srv.URL, nil)
	_, err := h.Handle(context.Background(), tick("tick-good", time.Now()))
	require.NoError(t, err)
	before := countRows(t, f)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	ln.Close()
	down, err := tsdb.New(tsdb.Config{URL: dead, MaxAttempts: 2, MaxBackoff: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, f.store.ReleaseLock(context.Background(), LockName, "test-node/tick-good"))
	sent := sk.calls.Load()
	_, err = f.handler(t, sk.srv.URL, down).Handle(context.Background(), tick("tick-down", time.Now()))
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "a TSDB outage is worth a retry")
	require.Contains(t, err.Error(), "query active versions")
	require.Equal(t, sent, sk.calls.Load(), "no bucket events without fresh data")
	require.Equal(t, before, countRows(t, f), "Cassandra keeps the previous rows")
}

func countRows(t *testing.T, f *fixture) int {
	rows, err := f.store.ReadBucket(context.Background(), buckets.For(0, 1))
	require.NoError(t, err)
	return len(rows)
}

// The second cycle writes only the rows that need it: one whose nca_id
// changed and one close to expiry; every other found version's row is
// left alone and stays readable.
func TestSecondCycleWritesOnlyChangedAndDueRows(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sk := newSink(t, 0, false)
	h := f.handler(t, sk.srv.URL, nil)
	reply, err := h.Handle(ctx, tick("first", time.Now()))
	require.NoError(t, err)
	r := result(t, reply)
	require.Equal(t, map[string]int{writeNew: len(f.want)}, r.Writes)
	require.Equal(t, len(f.want), r.Upserted)
	require.NoError(t, f.store.ReleaseLock(ctx, LockName, f.settings.NodeID+"/first"))

	changed := store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: "f-001", FunctionVersionID: "v-001"},
		NcaID: "nca-before", Invoked: true, Source: "worker"}
	due := store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: "g-002", FunctionVersionID: "w-002"},
		NcaID: "nca", Source: "worker"}
	_, err = f.store.UpsertVersions(ctx, []store.ActiveVersion{changed}, f.settings.Discovery.RowTTL)
	require.NoError(t, err)
	_, err = f.store.UpsertVersions(ctx, []store.ActiveVersion{due}, time.Minute)
	require.NoError(t, err)

	reply, err = h.Handle(ctx, tick("second", time.Now()))
	require.NoError(t, err)
	r = result(t, reply)
	require.Equal(t, map[string]int{writeChanged: 1, writeDue: 1}, r.Writes)
	require.Equal(t, 2, r.Upserted)
	require.Equal(t, len(f.want)-2, r.Unchanged)
	require.Equal(t, len(f.want), r.Found)

	stored, err := f.store.ReadStoredRows(ctx)
	require.NoError(t, err)
	require.Equal(t, "nca", stored.Invoked[changed.VersionKey].NcaID)
	require.Greater(t, stored.Running[due.VersionKey].TTL, f.settings.Discovery.RowTTL-time.Minute, "the due row lives a whole TTL again")
	require.Len(t, stored.Invoked, 150)
	require.Len(t, stored.Running, 150)
}
