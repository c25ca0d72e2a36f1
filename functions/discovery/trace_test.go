package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"function/functions/scale"
	"function/shared/config"
	"function/shared/nvcf"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// memStore and fixedTSDB stand in for Cassandra and the TSDB in the unit
// tests below; the integration test uses the real servers.
type memStore struct{}

func (memStore) AcquireLock(_ context.Context, name, owner string, ttl time.Duration) (store.Lock, error) {
	return store.Lock{Name: name, Owner: owner, ExpiresAt: time.Now().Add(ttl)}, nil
}
func (memStore) ReleaseLock(context.Context, string, string) error { return nil }
func (memStore) ReadStoredRows(context.Context) (store.StoredRows, error) {
	return store.StoredRows{}, nil
}
func (memStore) UpsertVersions(_ context.Context, v []store.ActiveVersion, _ time.Duration) (int, error) {
	return len(v), nil
}

type fixedTSDB struct{ n int }

func (f fixedTSDB) ActiveVersions(context.Context, time.Time, time.Duration, tsdb.Filters) ([]tsdb.ActiveVersion, tsdb.Skipped, error) {
	var out []tsdb.ActiveVersion
	for i := 0; i < f.n; i++ {
		out = append(out, tsdb.ActiveVersion{FunctionVersion: tsdb.FunctionVersion{
			FunctionID: fmt.Sprintf("f-%d", i), FunctionVersionID: fmt.Sprintf("v-%d", i), NcaID: "nca"}, Invoked: true})
	}
	return out, nil, nil
}

type memSender struct {
	mu   sync.Mutex
	sent []event.Event
}

func (s *memSender) Send(_ context.Context, e event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, e)
	return nil
}

func unitHandler(t *testing.T, sender Sender) *Handler {
	var s config.Settings
	s.NodeID, s.Buckets = "test-node", 4
	s.Discovery = config.Discovery{Period: time.Minute, LockTTL: 30 * time.Second, Lookback: 10 * time.Minute,
		RowTTL: 10 * time.Minute, SendConcurrency: 2, SendAttempts: 1, BucketDeadline: 55 * time.Second}
	h, err := New(Deps{Settings: s, Store: memStore{}, TSDB: fixedTSDB{n: 20}, Sender: sender, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return h
}

func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	return rec
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestBucketEventsCarryTheCycleSpanWhenTracing(t *testing.T) {
	rec := recordSpans(t)
	sender := &memSender{}
	reply, err := unitHandler(t, sender).Handle(context.Background(), tick("tick-traced", time.Now()))
	require.NoError(t, err)
	r := result(t, reply)

	cycles := spansNamed(rec, "discovery.cycle")
	require.Len(t, cycles, 1)
	cycle := cycles[0]
	a := attrs(cycle)
	require.Equal(t, r.Cycle, a["autoscaler.cycle"].AsInt64())
	require.Equal(t, "acquired", a["autoscaler.lock"].AsString())
	require.EqualValues(t, 20, a["autoscaler.versions.found"].AsInt64())
	require.EqualValues(t, 20, a["autoscaler.versions.upserted"].AsInt64())
	require.EqualValues(t, len(r.BucketsSent), a["autoscaler.buckets.sent"].AsInt64())

	require.Len(t, sender.sent, len(r.BucketsSent))
	require.NotEmpty(t, sender.sent)
	for _, e := range sender.sent {
		tp, ok := e.Extensions()["traceparent"].(string)
		require.True(t, ok, "bucket event %s has a traceparent", e.ID())
		require.Equal(t, fmt.Sprintf("00-%s-%s-01", cycle.SpanContext().TraceID(), cycle.SpanContext().SpanID()), tp)
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), telemetry.EventCarrier{Event: &e}))
		require.True(t, sc.IsValid())
	}
}

func TestBucketEventsCarryNothingWhenTracingIsOff(t *testing.T) {
	// OTEL_TRACES_EXPORTER=none installs nothing: the global provider stays
	// a no-op.
	otel.SetTracerProvider(noop.NewTracerProvider())
	shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TraceConfig{Exporter: "none"})
	require.NoError(t, err)
	defer func() { require.NoError(t, shutdown(context.Background())) }()
	sender := &memSender{}
	_, err = unitHandler(t, sender).Handle(context.Background(), tick("tick-untraced", time.Now()))
	require.NoError(t, err)
	require.NotEmpty(t, sender.sent)
	for _, e := range sender.sent {
		require.NotContains(t, e.Extensions(), "traceparent")
		require.NotContains(t, e.Extensions(), "tracestate")
	}
}

func TestSkippedCycleSpanNamesTheHolder(t *testing.T) {
	rec := recordSpans(t)
	h := unitHandler(t, &memSender{})
	h.d.Store = heldStore{}
	_, err := h.Handle(context.Background(), tick("tick-held", time.Now()))
	require.NoError(t, err)
	a := attrs(spansNamed(rec, "discovery.cycle")[0])
	require.Equal(t, "held", a["autoscaler.lock"].AsString())
	require.Equal(t, "other-node/tick", a["autoscaler.lock.holder"].AsString())
}

type heldStore struct{ memStore }

func (heldStore) AcquireLock(_ context.Context, name, _ string, _ time.Duration) (store.Lock, error) {
	return store.Lock{}, &store.HeldError{Lock: store.Lock{Name: name, Owner: "other-node/tick", ExpiresAt: time.Now().Add(time.Minute)}}
}

// TestOneTraceFromDiscoveryToScale runs a real cycle (VictoriaMetrics,
// Cassandra) whose bucket events go over HTTP, in binary mode, to a scale
// handler (dry-run NVCF): every bucket span and NVCF call span is in the
// cycle's trace.
func TestOneTraceFromDiscoveryToScale(t *testing.T) {
	f := setup(t)
	rec := recordSpans(t)

	t.Setenv("AUTOSCALER_ROLE", "scale")
	t.Setenv("TSDB_URL", "http://127.0.0.1:1")
	t.Setenv("NVCF_DRY_RUN", "true")
	ss, err := config.Load(nil)
	require.NoError(t, err)
	ss.NodeID, ss.Buckets = "scale-node", f.settings.Buckets
	ss.EnvLabel, ss.EnvValue = f.settings.EnvLabel, f.settings.EnvValue
	nc, err := nvcf.New(nvcf.Config{Transport: nvcf.TransportHTTP, DryRun: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	sc, err := scale.New(scale.Deps{Settings: ss, Store: f.store, TSDB: f.tsdb, NVCF: nc, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)

	var mu sync.Mutex
	headers := map[string]string{} // event id -> ce-traceparent header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		headers[e.ID()] = r.Header.Get("Ce-Traceparent")
		mu.Unlock()
		// The request's context, not discovery's: only the event links them.
		if _, err := sc.HandleBucket(r.Context(), *e); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	reply, err := f.handler(t, srv.URL, nil).Handle(context.Background(), tick("tick-trace", time.Now()))
	require.NoError(t, err)
	r := result(t, reply)
	require.NotEmpty(t, r.BucketsSent)

	cycles := spansNamed(rec, "discovery.cycle")
	require.Len(t, cycles, 1)
	cycle := cycles[0].SpanContext()
	buckets := spansNamed(rec, "scale.bucket")
	require.Len(t, buckets, len(r.BucketsSent), "one scale span per bucket event")
	decided := 0
	for _, b := range buckets {
		require.Equal(t, cycle.TraceID(), b.SpanContext().TraceID(), "discovery and scale share one trace")
		require.Equal(t, cycle.SpanID(), b.Parent().SpanID())
		require.True(t, b.Parent().IsRemote(), "the link came over HTTP in the event")
		require.Equal(t, r.Cycle, attrs(b)["autoscaler.cycle"].AsInt64())
		decided += int(attrs(b)["autoscaler.decisions"].AsInt64())
	}
	require.Equal(t, r.Found, decided, "every discovered version was decided under the trace")
	for id, h := range headers {
		require.Contains(t, h, cycle.TraceID().String(), "event %s carried the trace as ce-traceparent", id)
	}
	calls := spansNamed(rec, "nvcf.Autoscale")
	require.NotEmpty(t, calls, "the seeded load asks for writes")
	for _, c := range calls {
		require.Equal(t, cycle.TraceID(), c.SpanContext().TraceID())
	}
}
