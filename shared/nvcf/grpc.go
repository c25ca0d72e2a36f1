package nvcf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"function/shared/nvcf/nvcfpb"
	"function/shared/tlsfiles"
)

// grpcTransport speaks nvcf.Autoscaler.
type grpcTransport struct {
	conn   *grpc.ClientConn
	client nvcfpb.AutoscalerClient
	tls    *tlsfiles.Files // nil for plaintext
	tlsCfg *tls.Config
	addr   string
}

func newGRPCTransport(cfg Config) (*grpcTransport, error) {
	creds := insecure.NewCredentials()
	var files *tlsfiles.Files
	var tc *tls.Config
	if !cfg.GRPCInsecure {
		var err error
		if tc, err = cfg.GRPCTLS.Config(); err != nil {
			return nil, fmt.Errorf("nvcf grpc tls: %w", err)
		}
		if host, _, err := net.SplitHostPort(cfg.GRPCAddr); err == nil {
			tc = tlsfiles.ForURLHost(tc, host) // an IP address sends no server name
		}
		creds, files = grpccreds.NewTLS(tc), &cfg.GRPCTLS
	}
	// NewClient does not dial; the connection comes up on first use and
	// gRPC reconnects by itself after failures.
	conn, err := grpc.NewClient(cfg.GRPCAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("nvcf grpc client for %s: %w", cfg.GRPCAddr, err)
	}
	return &grpcTransport{conn: conn, client: nvcfpb.NewAutoscalerClient(conn), tls: files, tlsCfg: tc, addr: cfg.GRPCAddr}, nil
}

// explain puts the TLS setting to check in front of a failed handshake's
// message: gRPC reports it as Unavailable with the handshake error as
// text only (see tlsfiles.Files.Diagnose). A refused handshake becomes the
// answer's cause, so that it matches tlsfiles.ErrRefused and is not tried
// again within the call.
func (g *grpcTransport) explain(ctx context.Context, err error) error {
	var ae *APIError
	if g.tls != nil && errors.As(err, &ae) && ae.Code == codes.Unavailable.String() {
		diagnosed := g.tls.Diagnose(ctx, g.addr, g.tlsCfg, errors.New(ae.Message))
		ae.Message = diagnosed.Error()
		if errors.Is(diagnosed, tlsfiles.ErrRefused) {
			ae.cause = tlsfiles.ErrRefused
		}
	}
	return err
}

func (g *grpcTransport) autoscaleEndpoint() string { return EndpointAutoscaleFunction }

// withToken adds the bearer token (and, with tracing on, the W3C trace
// context) as call metadata. It is done per call instead of with
// PerRPCCredentials because those refuse plaintext connections, which local
// stacks use.
func withToken(ctx context.Context, token string) context.Context {
	tc := propagation.MapCarrier{}
	injectHeaders(ctx, tc)
	for k, v := range tc {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (g *grpcTransport) autoscale(ctx context.Context, r Request, token string) (Result, string, error) {
	req := &nvcfpb.AutoscalerRequest{
		FunctionId:                r.FunctionID,
		FunctionVersionId:         r.FunctionVersionID,
		RequiredNumberOfInstances: int32(r.Instances), // range checked by Client.Autoscale
	}
	if r.DeploymentID != "" {
		req.DeploymentId = &r.DeploymentID
	}
	if r.GPUSpecID != "" {
		req.GpuSpecificationId = &r.GPUSpecID
	}
	resp, err := g.client.AutoscaleFunction(withToken(ctx, token), req)
	if err != nil {
		code, ae := grpcError(EndpointAutoscaleFunction, err)
		return Result{}, code, g.explain(ctx, ae)
	}
	return Result{
		ActiveInstances:      int(resp.GetActiveInstances()),
		PendingInstances:     int(resp.GetPendingInstances()),
		AllocatingInstances:  int(resp.GetAllocatingInstances()),
		TerminatingInstances: int(resp.GetTerminatingInstances()),
		FunctionStatus:       resp.GetFunctionStatus(),
		ScalingStatus:        resp.GetScalingStatus(),
	}, codes.OK.String(), nil
}

func (g *grpcTransport) deploymentConfiguration(ctx context.Context, functionID, versionID, token string) (map[string]AutoscalingConfig, string, error) {
	resp, err := g.client.RequestDeploymentConfiguration(withToken(ctx, token), &nvcfpb.DeploymentConfigurationRequest{
		FunctionId:        functionID,
		FunctionVersionId: versionID,
	})
	if err != nil {
		code, ae := grpcError(EndpointDeploymentConfigRPC, err)
		return nil, code, g.explain(ctx, ae)
	}
	return fromProtoConfigs(resp.GetConfigs()), codes.OK.String(), nil
}

func (g *grpcTransport) close() error {
	if err := g.conn.Close(); err != nil {
		return fmt.Errorf("close nvcf grpc connection: %w", err)
	}
	return nil
}

// grpcError classifies a failed call. Errors that are not gRPC statuses
// (they should not happen with a generated client) count as transport
// errors and are retried.
func grpcError(endpoint string, err error) (string, error) {
	st, ok := status.FromError(err)
	if !ok {
		return CodeTransportError, err
	}
	msg := st.Message()
	if len(msg) > maxErrorBody {
		msg = msg[:maxErrorBody]
	}
	ae := &APIError{Endpoint: endpoint, Code: st.Code().String(), Message: msg}
	switch st.Code() {
	case codes.NotFound:
		ae.class = ErrNotFound
	case codes.InvalidArgument:
		ae.class = ErrBeyondLimits
	case codes.Unauthenticated, codes.PermissionDenied:
		ae.class = ErrUnauthorized
	case codes.ResourceExhausted:
		ae.class, ae.transient = ErrRateLimited, true
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				ae.RetryAfter = ri.GetRetryDelay().AsDuration()
			}
		}
	case codes.Unavailable:
		ae.class, ae.transient = ErrUnavailable, true
	case codes.DeadlineExceeded, codes.Canceled:
		// Per-attempt timeout; Client.do stops if the caller's own context
		// is what ended.
		ae.transient = true
	}
	return ae.Code, ae
}
