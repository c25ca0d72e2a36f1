package scale

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"function/shared/events"
	"function/shared/telemetry"
)

// tracerName is the instrumentation scope of the scale function's spans.
const tracerName = "function/functions/scale"

// startSpan opens the span of one event, as the child of the span context
// the event carries (discovery's cycle span for bucket events).
func startSpan(ctx context.Context, e event.Event, name string) (context.Context, trace.Span) {
	ctx, span := otel.Tracer(tracerName).Start(telemetry.ExtractEvent(ctx, e), name, trace.WithSpanKind(trace.SpanKindConsumer))
	span.SetAttributes(attribute.String("cloudevents.event_id", e.ID()))
	return ctx, span
}

func traceBucket(span trace.Span, b events.Bucket) {
	span.SetAttributes(attribute.Int("autoscaler.bucket", b.Bucket), attribute.Int("autoscaler.buckets", b.Buckets),
		attribute.Int64("autoscaler.cycle", b.Cycle))
}

// traceOutcomes puts the bucket's decisions on its span: how many, and how
// many of each action and reason.
func traceOutcomes(span trace.Span, outcomes []Outcome) {
	if !span.IsRecording() {
		return
	}
	actions, reasons := map[string]int{}, map[string]int{}
	for _, o := range outcomes {
		actions[o.Action]++
		reasons[o.Reason]++
	}
	attrs := []attribute.KeyValue{attribute.Int("autoscaler.decisions", len(outcomes)),
		attribute.Int("autoscaler.written", actions["written"]), attribute.Int("autoscaler.failed", actions["error"])}
	for a, n := range actions {
		attrs = append(attrs, attribute.Int("autoscaler.action."+a, n))
	}
	for r, n := range reasons {
		attrs = append(attrs, attribute.Int("autoscaler.reason."+r, n))
	}
	span.SetAttributes(attrs...)
}
