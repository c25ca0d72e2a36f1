package scale

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"function/shared/nvcf"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// These tests need no server: the store and the TSDB are small in-memory
// stand-ins for the interfaces (one version at 90 % utilization) and the
// NVCF client is the real one in dry-run mode.

var traced = store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: "fn-1", FunctionVersionID: "ver-1"}, NcaID: "nca", Invoked: true,
	Source: string(tsdb.SourceWorker)}

type oneVersionStore struct{ Store }

func (oneVersionStore) ReadBucket(context.Context, bucketsRange) ([]store.ActiveVersion, error) {
	v := traced
	v.LastUpdatedAt = time.Now()
	return []store.ActiveVersion{v}, nil
}
func (oneVersionStore) ReadStates(context.Context, bucketsRange) (map[store.VersionKey]store.ScalingState, error) {
	return map[store.VersionKey]store.ScalingState{}, nil
}
func (oneVersionStore) ReadState(context.Context, store.VersionKey) (store.ScalingState, error) {
	return store.ScalingState{}, nil
}
func (oneVersionStore) ReadVersion(context.Context, store.VersionKey) (store.ActiveVersion, error) {
	return traced, nil
}
func (oneVersionStore) ClaimWrite(context.Context, store.VersionKey, store.WriteClaim, string, time.Duration, time.Duration) error {
	return nil
}
func (oneVersionStore) RecordWriteTarget(context.Context, store.VersionKey, string, int, int, int64, string, time.Duration) error {
	return nil
}
func (oneVersionStore) SaveState(context.Context, store.VersionKey, store.StateUpdate, time.Duration) error {
	return nil
}
func (oneVersionStore) SaveStates(context.Context, []store.StateWrite, time.Duration) []store.FailedStateWrite {
	return nil
}
func (oneVersionStore) SettlePrewarm(context.Context, store.VersionKey, time.Time) (bool, error) {
	return false, nil
}
func (oneVersionStore) TouchVersions(_ context.Context, v []store.ActiveVersion, _ time.Duration) (int, error) {
	return len(v), nil
}
func (oneVersionStore) UpsertVersions(_ context.Context, v []store.ActiveVersion, _ time.Duration) (int, error) {
	return len(v), nil
}

type busyMetrics struct{}

// The trace test's versions are all worker versions.
func (busyMetrics) ControlPlaneMetrics(context.Context, []tsdb.FunctionVersion, time.Time, tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.ControlPlaneMetrics, error) {
	return nil, nil
}

func (busyMetrics) GatewayMetrics(context.Context, []string, time.Time, tsdb.MetricsOptions) (map[string]tsdb.GatewayMetrics, error) {
	return nil, nil
}

func (busyMetrics) BucketMetrics(_ context.Context, vs []tsdb.FunctionVersion, now time.Time, o tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.VersionMetrics, error) {
	out := map[tsdb.FunctionVersion]tsdb.VersionMetrics{}
	for _, v := range vs {
		var u []tsdb.Sample
		for at := now.Add(-o.Lookback); !at.After(now); at = at.Add(o.Step) {
			u = append(u, tsdb.Sample{At: at, Value: 90})
		}
		out[v] = tsdb.VersionMetrics{Utilization: u, Instances: 2, InstancesKnown: true, LastInvokedAt: now, RequestRate: 1}
	}
	return out, nil
}

// recordSpans installs an SDK provider that records every ended span, and
// puts the no-op provider back afterwards.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	return rec
}

func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(rec.Ended()))
	return nil
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func dryRunHandler(t *testing.T) *Handler {
	c, err := nvcf.New(nvcf.Config{Transport: nvcf.TransportHTTP, DryRun: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	s := defaultSettings(t)
	s.Buckets = 1
	h, err := New(Deps{Settings: s, Store: oneVersionStore{}, TSDB: busyMetrics{}, NVCF: c, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return h
}

func TestBucketSpanIsChildOfTheSendersSpan(t *testing.T) {
	rec := recordSpans(t)
	// The sender is another process with its own provider (discovery).
	sender := sdktrace.NewTracerProvider()
	sctx, cycle := sender.Tracer("discovery").Start(context.Background(), "discovery.cycle")
	e := bucketEvent(time.Now())
	telemetry.InjectEvent(sctx, &e)
	cycle.End()

	reply, err := dryRunHandler(t).HandleBucket(context.Background(), e)
	require.NoError(t, err)
	res := decode(t, reply)
	require.Equal(t, "written", res.Outcomes[0].Action)

	bucket := spanNamed(t, rec, "scale.bucket")
	require.Equal(t, cycle.SpanContext().TraceID(), bucket.Parent().TraceID(), "one trace from discovery to scale")
	require.Equal(t, cycle.SpanContext().SpanID(), bucket.Parent().SpanID(), "the bucket span is the cycle span's child")
	require.True(t, bucket.Parent().IsRemote())
	require.Equal(t, cycle.SpanContext().TraceID(), bucket.SpanContext().TraceID())
	require.Equal(t, trace.SpanKindConsumer, bucket.SpanKind())
	a := attrs(bucket)
	require.EqualValues(t, 0, a["autoscaler.bucket"].AsInt64())
	require.Equal(t, res.Cycle, a["autoscaler.cycle"].AsInt64())
	require.EqualValues(t, 1, a["autoscaler.versions"].AsInt64())
	require.EqualValues(t, 1, a["autoscaler.decisions"].AsInt64())
	require.EqualValues(t, 1, a["autoscaler.written"].AsInt64())
	require.EqualValues(t, 1, a["autoscaler.action.written"].AsInt64())

	// The NVCF call is the bucket span's child, with what it asked for.
	call := spanNamed(t, rec, "nvcf.Autoscale")
	require.Equal(t, bucket.SpanContext().SpanID(), call.Parent().SpanID())
	require.Equal(t, trace.SpanKindClient, call.SpanKind())
	c := attrs(call)
	require.Equal(t, "fn-1", c["nvcf.function_id"].AsString())
	require.Equal(t, "ver-1", c["nvcf.function_version_id"].AsString())
	require.Equal(t, int64(res.Outcomes[0].Desired), c["nvcf.instances"].AsInt64())
	require.Equal(t, "ok", c["nvcf.outcome"].AsString())
	require.True(t, c["nvcf.dry_run"].AsBool())
}

func TestBucketSpanRecordsErrors(t *testing.T) {
	rec := recordSpans(t)
	e := bucketEvent(time.Now())
	_ = e.SetData(event.ApplicationJSON, map[string]any{"bucket": 5, "buckets": 1, "cycle": 1, "deadline": time.Now().Add(time.Minute)})
	_, err := dryRunHandler(t).HandleBucket(context.Background(), e)
	require.Error(t, err)
	bucket := spanNamed(t, rec, "scale.bucket")
	require.False(t, bucket.Parent().IsValid(), "no trace context in the event: a new trace")
	require.Equal(t, "Error", bucket.Status().Code.String())
	require.NotEmpty(t, bucket.Events(), "the error is recorded as a span event")
	require.Equal(t, "exception", bucket.Events()[0].Name)
}

func TestActivationSpan(t *testing.T) {
	rec := recordSpans(t)
	_, err := dryRunHandler(t).HandleActivate(context.Background(), activateEvent("act-1", "fn-1", "ver-1"))
	require.NoError(t, err)
	act := spanNamed(t, rec, "scale.activate")
	a := attrs(act)
	require.Equal(t, "fn-1", a["nvcf.function_id"].AsString())
	require.Equal(t, "written", a["autoscaler.action"].AsString())
	require.EqualValues(t, 1, a["autoscaler.desired"].AsInt64())
	call := spanNamed(t, rec, "nvcf.Autoscale")
	require.Equal(t, act.SpanContext().SpanID(), call.Parent().SpanID())
}

// With tracing off (the default) the handlers run under the no-op provider
// and the event's context, if any, passes through untouched.
func TestBucketWithoutTracing(t *testing.T) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	reply, err := dryRunHandler(t).HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	require.Equal(t, "written", decode(t, reply).Outcomes[0].Action)
}
