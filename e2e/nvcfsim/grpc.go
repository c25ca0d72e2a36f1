package nvcfsim

import (
	"context"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"function/shared/nvcf/nvcfpb"
)

// grpcService is the nvcf.Autoscaler front end.
type grpcService struct {
	nvcfpb.UnimplementedAutoscalerServer
	s *Server
}

func authorization(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// AutoscaleFunction implements nvcfpb.AutoscalerServer.
func (g *grpcService) AutoscaleFunction(ctx context.Context, req *nvcfpb.AutoscalerRequest) (*nvcfpb.AutoscalerResponse, error) {
	resp, cerr := g.s.autoscale(ctx, autoscaleCall{
		transport:     "grpc",
		authorization: authorization(ctx),
		functionID:    req.GetFunctionId(),
		versionID:     req.GetFunctionVersionId(),
		deploymentID:  req.GetDeploymentId(),
		gpuSpecID:     req.GetGpuSpecificationId(),
		requested:     int(req.GetRequiredNumberOfInstances()),
	})
	if cerr != nil {
		return nil, grpcError(cerr)
	}
	return resp, nil
}

// RequestDeploymentConfiguration implements nvcfpb.AutoscalerServer.
func (g *grpcService) RequestDeploymentConfiguration(ctx context.Context, req *nvcfpb.DeploymentConfigurationRequest) (*nvcfpb.DeploymentConfigurationResponse, error) {
	configs, cerr := g.s.deploymentConfiguration(ctx, authorization(ctx), req.GetFunctionId(), req.GetFunctionVersionId())
	if cerr != nil {
		return nil, grpcError(cerr)
	}
	return &nvcfpb.DeploymentConfigurationResponse{Configs: configs}, nil
}

func grpcError(e *callError) error {
	switch e.kind {
	case errUnauthorized:
		return status.Error(codes.Unauthenticated, e.msg)
	case errNotFound:
		return status.Error(codes.NotFound, e.msg)
	case errBeyondLimits:
		return status.Error(codes.InvalidArgument, e.msg)
	case errRateLimited:
		st := status.New(codes.ResourceExhausted, e.msg)
		if e.retryAfter > 0 {
			// RetryInfo is gRPC's standard way to say when to come back.
			if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.retryAfter)}); err == nil {
				st = withInfo
			}
		}
		return st.Err()
	case errUnavailable:
		return status.Error(codes.Unavailable, e.msg)
	default:
		return status.Error(codes.Internal, e.msg)
	}
}
