package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Trace exporters (OTEL_TRACES_EXPORTER).
const (
	TracesNone   = "none"
	TracesOTLP   = "otlp"
	TracesStdout = "stdout"
)

// TraceConfig selects the span exporter. The zero value turns tracing off.
type TraceConfig struct {
	// Exporter is none (or empty), otlp or stdout. otlp sends OTLP/HTTP;
	// the exporter itself reads OTEL_EXPORTER_OTLP_ENDPOINT,
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS and the
	// other standard variables.
	Exporter string
	// ServiceName is the resource's service.name.
	ServiceName string
	// InstanceID is the resource's service.instance.id (the node id).
	InstanceID string
	// SampleRatio is the fraction of new traces kept; a span with a parent
	// (a bucket event from discovery) follows the parent's decision.
	SampleRatio float64
	// Stdout is where the stdout exporter writes (nil: os.Stdout).
	Stdout io.Writer
	// Log receives the SDK's export errors (nil: slog.Default()).
	Log *slog.Logger
}

// SetupTracing installs the global tracer provider and the W3C propagator
// for cfg.Exporter and returns the function that flushes and stops them.
// With none nothing is installed: the global provider stays OpenTelemetry's
// no-op, so spans cost an interface call and export nothing.
func SetupTracing(ctx context.Context, cfg TraceConfig) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	var exp sdktrace.SpanExporter
	switch cfg.Exporter {
	case "", TracesNone:
		return noop, nil
	case TracesOTLP:
		exp, err = otlptracehttp.New(ctx)
	case TracesStdout:
		w := cfg.Stdout
		if w == nil {
			w = os.Stdout
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	default:
		return noop, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none, otlp or stdout", cfg.Exporter)
	}
	if err != nil {
		return noop, fmt.Errorf("%s trace exporter: %w", cfg.Exporter, err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.ServiceName)}
	if cfg.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", cfg.InstanceID))
	}
	// OTEL_RESOURCE_ATTRIBUTES adds to the resource; the configured service
	// name comes last so it wins.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithFromEnv(), resource.WithAttributes(attrs...))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return noop, fmt.Errorf("trace resource: %w", err)
	}
	if !(cfg.SampleRatio >= 0 && cfg.SampleRatio <= 1) {
		return noop, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%g: want a fraction in [0, 1]", cfg.SampleRatio)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "error", err.Error())
	}))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}

// EndSpan records err on span (if any) and ends it.
func EndSpan(span trace.Span, err error) {
	SpanError(span, err)
	span.End()
}

// SpanError marks span failed with err; a nil err does nothing.
func SpanError(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// eventTrace is the W3C Trace Context propagator used on CloudEvents. It
// is fixed rather than the global one so that a trace crosses the Broker
// whatever else the process propagates.
var eventTrace propagation.TraceContext

// EventCarrier carries W3C trace context in a CloudEvent's traceparent and
// tracestate extension attributes (the CloudEvents distributed tracing
// extension, sdk-go's extensions.DistributedTracingExtension). In binary
// HTTP mode they travel as the ce-traceparent and ce-tracestate headers.
type EventCarrier struct{ Event *event.Event }

// Get returns the extension's value as a string ("" when absent).
func (c EventCarrier) Get(key string) string {
	v, ok := c.Event.Extensions()[key]
	if !ok {
		return ""
	}
	s, err := types.ToString(v)
	if err != nil {
		return ""
	}
	return s
}

// Set sets the extension; the propagator only sets valid names.
func (c EventCarrier) Set(key, value string) { c.Event.SetExtension(key, value) }

// Keys lists the event's extension names.
func (c EventCarrier) Keys() []string {
	ext := c.Event.Extensions()
	keys := make([]string, 0, len(ext))
	for k := range ext {
		keys = append(keys, k)
	}
	return keys
}

// InjectEvent writes the span context of ctx into e. It writes nothing when
// ctx has no valid span context, which is the case with tracing off.
func InjectEvent(ctx context.Context, e *event.Event) {
	eventTrace.Inject(ctx, EventCarrier{Event: e})
}

// ExtractEvent returns ctx with the remote span context e carries, if any,
// so a span started from it is the sender's child.
func ExtractEvent(ctx context.Context, e event.Event) context.Context {
	return eventTrace.Extract(ctx, EventCarrier{Event: &e})
}
