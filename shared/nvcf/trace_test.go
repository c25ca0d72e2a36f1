package nvcf

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"function/e2e/nvcfsim"
	"function/shared/nvcf/nvcfpb"
)

// traceOn installs what SetupTracing installs (an SDK provider and the W3C
// propagator), recording spans, until the test ends.
func traceOn(t *testing.T) *tracetest.SpanRecorder {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	return rec
}

func onlySpan(t *testing.T, rec *tracetest.SpanRecorder) (sdktrace.ReadOnlySpan, map[attribute.Key]attribute.Value) {
	t.Helper()
	spans := rec.Ended()
	require.Len(t, spans, 1)
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range spans[0].Attributes() {
		m[kv.Key] = kv.Value
	}
	return spans[0], m
}

func TestAutoscaleSpanPerCall(t *testing.T) {
	ok := map[string]string{TransportHTTP: "200", TransportGRPC: "OK"}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			rec := traceOn(t)
			sim := startSim(t)
			c, _ := newClient(t, tr, sim, nil)
			sim.FailNext(2, nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable})

			_, err := autoscale(c, 4)
			require.NoError(t, err)
			span, a := onlySpan(t, rec)
			require.Equal(t, "nvcf.Autoscale", span.Name())
			require.Equal(t, trace.SpanKindClient, span.SpanKind())
			require.Equal(t, fid, a["nvcf.function_id"].AsString())
			require.Equal(t, vid, a["nvcf.function_version_id"].AsString())
			require.EqualValues(t, 4, a["nvcf.instances"].AsInt64())
			require.Equal(t, tr, a["nvcf.transport"].AsString())
			require.EqualValues(t, 3, a["nvcf.attempts"].AsInt64())
			require.Equal(t, ok[tr], a["nvcf.status_code"].AsString(), "the last attempt's answer")
			require.Equal(t, "ok", a["nvcf.outcome"].AsString())
			require.Equal(t, "Unset", span.Status().Code.String())
			require.Len(t, span.Events(), 3, "one event per attempt")

			rec2 := traceOn(t)
			_, err = c.Autoscale(context.Background(), Request{FunctionID: "nope", FunctionVersionID: vid, Instances: 3})
			require.ErrorIs(t, err, ErrNotFound)
			span, a = onlySpan(t, rec2)
			require.Equal(t, "not_found", a["nvcf.outcome"].AsString())
			require.Equal(t, "Error", span.Status().Code.String())
			require.Equal(t, "exception", span.Events()[len(span.Events())-1].Name, "the error is recorded")
		})
	}
}

func TestDeploymentConfigurationSpan(t *testing.T) {
	rec := traceOn(t)
	sim := startSim(t)
	c, _ := newClient(t, TransportGRPC, sim, nil)
	_, err := c.DeploymentConfiguration(context.Background(), fid, vid)
	require.NoError(t, err)
	span, a := onlySpan(t, rec)
	require.Equal(t, "nvcf.DeploymentConfiguration", span.Name())
	require.Equal(t, "ok", a["nvcf.outcome"].AsString())
	require.Equal(t, EndpointDeploymentConfigRPC, a["nvcf.endpoint"].AsString())
}

// The W3C trace context goes to the NVCF API with tracing on (HTTP headers,
// gRPC metadata) and not at all with tracing off.
func TestTraceContextSentToTheAPI(t *testing.T) {
	httpSeen := make(chan string, 2)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpSeen <- r.Header.Get("Traceparent")
		w.WriteHeader(http.StatusOK)
	}))
	defer hs.Close()
	grpcSeen := make(chan string, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	nvcfpb.RegisterAutoscalerServer(gs, &metadataServer{seen: grpcSeen})
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	call := func(transport string) {
		c, err := New(Config{Transport: transport, BaseURL: hs.URL, GRPCAddr: ln.Addr().String(), GRPCInsecure: true,
			Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		defer c.Close()
		_, err = autoscale(c, 1)
		require.NoError(t, err)
	}

	// Off: the default global propagator injects nothing.
	otel.SetTracerProvider(noop.NewTracerProvider())
	call(TransportHTTP)
	call(TransportGRPC)
	require.Empty(t, <-httpSeen)
	require.Empty(t, <-grpcSeen)

	rec := traceOn(t)
	call(TransportHTTP)
	call(TransportGRPC)
	spans := rec.Ended()
	require.Len(t, spans, 2)
	require.Contains(t, <-httpSeen, spans[0].SpanContext().TraceID().String())
	require.Contains(t, <-grpcSeen, spans[1].SpanContext().TraceID().String())
}

type metadataServer struct {
	nvcfpb.UnimplementedAutoscalerServer
	seen chan string
}

func (s *metadataServer) AutoscaleFunction(ctx context.Context, _ *nvcfpb.AutoscalerRequest) (*nvcfpb.AutoscalerResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := ""
	if tp := md.Get("traceparent"); len(tp) > 0 {
		v = tp[0]
	}
	s.seen <- v
	return &nvcfpb.AutoscalerResponse{}, nil
}
