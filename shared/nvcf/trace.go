package nvcf

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the client's spans.
const tracerName = "function/shared/nvcf"

// startSpan opens the span of one API call (all its attempts). With
// tracing off the global provider is a no-op and so is the span.
func (c *Client) startSpan(ctx context.Context, name, functionID, versionID string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(append(attrs,
			attribute.String("nvcf.function_id", functionID),
			attribute.String("nvcf.function_version_id", versionID),
			attribute.String("nvcf.transport", c.cfg.Transport),
		)...)
	}
	return ctx, span
}

// endSpan records the call's outcome (and error) and ends the span.
func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if span.IsRecording() {
		span.SetAttributes(append(attrs, attribute.String("nvcf.outcome", Outcome(err)))...)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

// traceAttempt notes one attempt on the call's span: its answer code (the
// span keeps the last one as nvcf.status_code) and how long it took.
func traceAttempt(ctx context.Context, endpoint, code string, d time.Duration, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("nvcf.endpoint", endpoint), attribute.String("nvcf.status_code", code))
	attrs := []attribute.KeyValue{attribute.String("nvcf.status_code", code), attribute.Int64("duration_ms", d.Milliseconds())}
	if err != nil {
		attrs = append(attrs, attribute.String("error", err.Error()))
	}
	span.AddEvent("nvcf.attempt", trace.WithAttributes(attrs...))
}

// Outcome names the class of a call's error: ok, not_found, beyond_limits,
// rate_limited, unauthorized, unavailable, invalid_request, unsupported,
// canceled or error.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrBeyondLimits):
		return "beyond_limits"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrInvalidRequest):
		return "invalid_request"
	case errors.Is(err, ErrUnsupported):
		return "unsupported"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

// injectHeaders adds the W3C trace context of ctx to an outgoing request
// through the global propagator, which is a no-op unless tracing is on.
func injectHeaders(ctx context.Context, carrier propagation.TextMapCarrier) {
	otel.GetTextMapPropagator().Inject(ctx, carrier)
}
