package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/extensions"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// resetGlobal puts back OpenTelemetry's no-op globals after a test that
// installed a provider.
func resetGlobal(t *testing.T) {
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
}

func TestSetupTracingNoneInstallsNothing(t *testing.T) {
	before := otel.GetTracerProvider()
	beforeProp := otel.GetTextMapPropagator()
	for _, exporter := range []string{"", TracesNone} {
		shutdown, err := SetupTracing(context.Background(), TraceConfig{Exporter: exporter, ServiceName: "x", SampleRatio: 1})
		require.NoError(t, err)
		require.Same(t, before, otel.GetTracerProvider(), "the global provider is untouched")
		require.Equal(t, beforeProp, otel.GetTextMapPropagator())
		_, span := otel.Tracer("t").Start(context.Background(), "s")
		require.False(t, span.IsRecording(), "spans are no-ops")
		require.False(t, span.SpanContext().IsValid(), "and carry no context to propagate")
		span.End()
		require.NoError(t, shutdown(context.Background()))
	}
}

func TestSetupTracingStdoutExportsOnShutdown(t *testing.T) {
	resetGlobal(t)
	var out bytes.Buffer
	shutdown, err := SetupTracing(context.Background(), TraceConfig{
		Exporter: TracesStdout, ServiceName: "nvcf-autoscaler-test", InstanceID: "node-1", SampleRatio: 1,
		Stdout: &out, Log: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, span := otel.Tracer("t").Start(context.Background(), "discovery.cycle")
	require.True(t, span.IsRecording())
	// The W3C propagator is global too, so outgoing NVCF calls carry it.
	h := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, h)
	require.Contains(t, h["traceparent"], span.SpanContext().TraceID().String())
	span.End()
	require.NoError(t, shutdown(context.Background()), "shutdown flushes the batch")
	require.Contains(t, out.String(), `"Name":"discovery.cycle"`)
	require.Contains(t, out.String(), `"Value":"nvcf-autoscaler-test"`, "service.name is on the resource")
	require.Contains(t, out.String(), `"Value":"node-1"`, "service.instance.id is on the resource")
}

func TestSetupTracingOTLPHonoursStandardVariables(t *testing.T) {
	resetGlobal(t)
	type request struct{ path, auth, contentType string }
	got := make(chan request, 4)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- request{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type")}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	// The exporter reads the standard variables itself.
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.URL+"/custom/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20x")
	shutdown, err := SetupTracing(context.Background(), TraceConfig{Exporter: TracesOTLP, ServiceName: "s", SampleRatio: 1})
	require.NoError(t, err)
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	require.True(t, ok, "an SDK provider is installed")
	_, span := otel.Tracer("t").Start(context.Background(), "scale.bucket")
	span.End()
	require.NoError(t, shutdown(context.Background()))
	select {
	case r := <-got:
		require.Equal(t, "/custom/traces", r.path)
		require.Equal(t, "Bearer x", r.auth)
		require.Equal(t, "application/x-protobuf", r.contentType)
	default:
		t.Fatal("no OTLP export reached the endpoint named by OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	}
}

func TestSetupTracingRejectsUnknownExporter(t *testing.T) {
	_, err := SetupTracing(context.Background(), TraceConfig{Exporter: "jaeger"})
	require.ErrorContains(t, err, "OTEL_TRACES_EXPORTER")
	_, err = SetupTracing(context.Background(), TraceConfig{Exporter: TracesStdout, SampleRatio: 2})
	require.ErrorContains(t, err, "OTEL_TRACES_SAMPLER_ARG")
}

func TestEventCarrierRoundTrip(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, sender := tp.Tracer("t").Start(context.Background(), "sender")
	defer sender.End()

	e := event.New()
	e.SetID("1")
	e.SetType("t")
	e.SetSource("s")
	InjectEvent(ctx, &e)
	require.NoError(t, e.Validate())

	// sdk-go's distributed tracing extension reads what the carrier wrote.
	dt, ok := extensions.GetDistributedTracingExtension(e)
	require.True(t, ok)
	require.Contains(t, dt.TraceParent, sender.SpanContext().TraceID().String())

	// The extension survives the wire (structured JSON here; binary HTTP
	// mode is exercised by the discovery -> scale integration test).
	raw, err := json.Marshal(e)
	require.NoError(t, err)
	var back event.Event
	require.NoError(t, json.Unmarshal(raw, &back))
	got := trace.SpanContextFromContext(ExtractEvent(context.Background(), back))
	require.True(t, got.IsValid())
	require.True(t, got.IsRemote())
	require.Equal(t, sender.SpanContext().TraceID(), got.TraceID())
	require.Equal(t, sender.SpanContext().SpanID(), got.SpanID())
	require.True(t, got.IsSampled())

	// No span context: nothing is written.
	plain := event.New()
	InjectEvent(context.Background(), &plain)
	require.Empty(t, plain.Extensions())
	require.False(t, trace.SpanContextFromContext(ExtractEvent(context.Background(), plain)).IsValid())
}
