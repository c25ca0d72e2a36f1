package nvcfsim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"function/shared/nvcf/nvcfpb"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	s.Register(FunctionVersion{FunctionID: "f", VersionID: "v", NcaID: "nca",
		Specs: []DeploymentSpec{{GPU: "L40", MinInstances: 1, MaxInstances: 4}}})
	return s
}

func put(t *testing.T, url, body string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func grpcClient(t *testing.T, s *Server) nvcfpb.AutoscalerClient {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return nvcfpb.NewAutoscalerClient(conn)
}

func TestClamp(t *testing.T) {
	for _, tc := range []struct{ req, min, max, want int }{
		{5, 2, 10, 5},
		{0, 2, 10, 2},
		{-1, 2, 10, 2},
		{1, 2, 10, 2},
		{11, 2, 10, 10},
		{0, 0, 10, 0},
		{3, 0, 0, 0},
	} {
		require.Equal(t, tc.want, Clamp(tc.req, tc.min, tc.max), "%+v", tc)
	}
}

func TestHTTPPredictionBothPaths(t *testing.T) {
	s := start(t, Options{})
	resp := put(t, s.HTTPURL()+"/v2/nvcf/predictions/functions/f/versions/v",
		`{"requiredNumberOfInstances": 3, "predictedAt": "2025-01-01T00:00:00Z"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body predictionResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, predictionResponse{ActiveInstances: 3, FunctionStatus: StatusActive, ScalingStatus: ScalingApplied}, body)

	resp = put(t, s.HTTPURL()+"/v2/nvcf/accounts/nca/predictions/functions/f/versions/v",
		`{"requiredNumberOfInstances": 9, "predictedAt": "2025-01-01T00:00:00Z", "deploymentId": "d"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got, _ := s.Desired("f", "v")
	require.Equal(t, 4, got)
	w := s.Writes()[1]
	require.Equal(t, "nca", w.NcaID)
	require.Equal(t, "d", w.DeploymentID)
	require.Equal(t, 9, w.Requested)
	require.Equal(t, 4, w.Applied)

	resp = put(t, s.HTTPURL()+"/v2/nvcf/accounts/other/predictions/functions/f/versions/v",
		`{"requiredNumberOfInstances": 2}`, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	for _, bad := range []string{`{`, `{}`, `{"requiredNumberOfInstances": 2, "predictedAt": "yesterday"}`} {
		resp = put(t, s.HTTPURL()+"/v2/nvcf/predictions/functions/f/versions/v", bad, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
	}
	require.Equal(t, 3, s.Calls("f", "v"), "malformed bodies are not writes")
}

func TestBearerTokens(t *testing.T) {
	s := start(t, Options{})
	s.SetAcceptedTokens("good")
	url := s.HTTPURL() + "/v2/nvcf/predictions/functions/f/versions/v"
	body := `{"requiredNumberOfInstances": 2}`
	require.Equal(t, http.StatusUnauthorized, put(t, url, body, nil).StatusCode)
	require.Equal(t, http.StatusUnauthorized, put(t, url, body, http.Header{"Authorization": {"Bearer bad"}}).StatusCode)
	require.Equal(t, http.StatusOK, put(t, url, body, http.Header{"Authorization": {"Bearer good"}}).StatusCode)

	c := grpcClient(t, s)
	_, err := c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v", RequiredNumberOfInstances: 2})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer good")
	_, err = c.AutoscaleFunction(ctx, &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v", RequiredNumberOfInstances: 2})
	require.NoError(t, err)

	s.SetAcceptedTokens()
	require.Equal(t, http.StatusOK, put(t, url, body, nil).StatusCode, "no tokens, no auth")
}

func TestFaults(t *testing.T) {
	s := start(t, Options{})
	url := s.HTTPURL() + "/v2/nvcf/predictions/functions/f/versions/v"
	body := `{"requiredNumberOfInstances": 2}`

	s.FailNext(1, Fault{Kind: FaultRateLimited, RetryAfter: 1500 * time.Millisecond})
	resp := put(t, url, body, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "2", resp.Header.Get("Retry-After"), "rounded up to whole seconds")

	c := grpcClient(t, s)
	s.FailNext(1, Fault{Kind: FaultRateLimited, RetryAfter: 1500 * time.Millisecond})
	_, err := c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v"})
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code())
	require.Len(t, st.Details(), 1)
	require.Equal(t, 1500*time.Millisecond, st.Details()[0].(*errdetails.RetryInfo).GetRetryDelay().AsDuration())

	wantHTTP := map[FaultKind]int{FaultUnavailable: 503, FaultInternal: 500, FaultNotFound: 404, FaultBeyondLimits: 422}
	wantGRPC := map[FaultKind]codes.Code{FaultUnavailable: codes.Unavailable, FaultInternal: codes.Internal,
		FaultNotFound: codes.NotFound, FaultBeyondLimits: codes.InvalidArgument}
	for kind, code := range wantHTTP {
		s.FailNext(1, Fault{Kind: kind})
		require.Equal(t, code, put(t, url, body, nil).StatusCode)
		s.FailNext(1, Fault{Kind: kind})
		_, err := c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v"})
		require.Equal(t, wantGRPC[kind], status.Code(err))
	}

	// A schedule sees every call and fails every other one.
	var mu sync.Mutex
	var seen []Call
	s.SetFaultSchedule(func(c Call) *Fault {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c)
		if c.Seq%2 == 0 {
			return &Fault{Kind: FaultUnavailable}
		}
		return nil
	})
	codesSeen := []int{put(t, url, body, nil).StatusCode, put(t, url, body, nil).StatusCode}
	require.ElementsMatch(t, []int{200, 503}, codesSeen)
	// This is call 13 overall (odd), so it passes.
	_, err = c.RequestDeploymentConfiguration(context.Background(), &nvcfpb.DeploymentConfigurationRequest{FunctionId: "f", FunctionVersionId: "v"})
	require.NoError(t, err)
	mu.Lock()
	require.Len(t, seen, 3)
	require.Equal(t, EndpointAutoscale, seen[0].Endpoint)
	require.Equal(t, "http", seen[0].Transport)
	require.Equal(t, EndpointDeploymentConfiguration, seen[2].Endpoint)
	require.Equal(t, "grpc", seen[2].Transport)
	mu.Unlock()

	for _, w := range s.Writes()[:2] {
		require.Equal(t, OutcomeFault, w.Outcome)
	}
}

func TestDesiredChangeCallback(t *testing.T) {
	s := start(t, Options{ManualInstances: true})
	var mu sync.Mutex
	var changes []DesiredChange
	var seenDesired []int
	s.OnDesiredChange(func(c DesiredChange) {
		// Calling back into the server must not deadlock.
		d, _ := s.Desired(c.FunctionID, c.VersionID)
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, c)
		seenDesired = append(seenDesired, d)
	})
	c := grpcClient(t, s)
	for _, n := range []int32{3, 3, 10, 0} {
		_, err := c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v", RequiredNumberOfInstances: n})
		require.NoError(t, err)
	}
	mu.Lock()
	require.Equal(t, []DesiredChange{
		{FunctionID: "f", VersionID: "v", Old: 1, New: 3},
		{FunctionID: "f", VersionID: "v", Old: 3, New: 4},
		{FunctionID: "f", VersionID: "v", Old: 4, New: 1},
	}, changes)
	require.Equal(t, []int{3, 4, 1}, seenDesired, "the callback runs after the change is visible")
	mu.Unlock()

	// With ManualInstances the counts come from the data plane only.
	require.True(t, s.SetInstances("f", "v", InstanceCounts{Active: 1, Pending: 2, Terminating: 3}))
	resp, err := c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v", RequiredNumberOfInstances: 3})
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.GetActiveInstances())
	require.EqualValues(t, 2, resp.GetPendingInstances())
	require.EqualValues(t, 3, resp.GetTerminatingInstances())
	require.False(t, s.SetInstances("x", "y", InstanceCounts{}))
}

func TestRegistryAndRecords(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := start(t, Options{Now: func() time.Time { return now }})
	s.Register(FunctionVersion{FunctionID: "a", VersionID: "1", Status: StatusDeploying})
	vs := s.Versions()
	require.Len(t, vs, 2)
	require.Equal(t, "a", vs[0].FunctionID)
	require.Equal(t, StatusDeploying, vs[0].Status)
	require.Equal(t, StatusActive, vs[1].Status, "empty status means ACTIVE")

	c := grpcClient(t, s)
	_, err := c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v", RequiredNumberOfInstances: 2})
	require.NoError(t, err)
	require.Equal(t, now, s.Writes()[0].Time)

	s.Remove("f", "v")
	_, ok := s.Desired("f", "v")
	require.False(t, ok)
	_, err = c.AutoscaleFunction(context.Background(), &nvcfpb.AutoscalerRequest{FunctionId: "f", FunctionVersionId: "v", RequiredNumberOfInstances: 2})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Equal(t, 2, s.Calls("f", "v"))
	require.Equal(t, OutcomeNotFound, s.Writes()[1].Outcome)

	s.ResetRecords()
	require.Empty(t, s.Writes())
	require.Zero(t, s.Calls("f", "v"))
}

func TestCloseWaitsForInFlightCalls(t *testing.T) {
	s, err := Start(Options{})
	require.NoError(t, err)
	s.Register(FunctionVersion{FunctionID: "f", VersionID: "v", Specs: []DeploymentSpec{{MinInstances: 0, MaxInstances: 4}}})
	s.SetLatency(100 * time.Millisecond)

	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, s.HTTPURL()+"/v2/nvcf/predictions/functions/f/versions/v",
			strings.NewReader(`{"requiredNumberOfInstances": 2}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}()
	// Wait until the call is inside the server before closing.
	require.Eventually(t, func() bool { return s.InFlight() > 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, s.Close(context.Background()))
	require.Equal(t, http.StatusOK, <-done)
	got, _ := s.Desired("f", "v")
	require.Equal(t, 2, got)
}

// The token endpoint issues its token only for the client credentials
// grant, the right client and the autoscaler scope, each refusal with
// RFC 6749's error code, and the API then accepts the token it issued.
func TestOAuthTokenEndpoint(t *testing.T) {
	s := start(t, Options{})
	tokenURL := s.HTTPURL() + OAuthTokenPath
	post := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(tokenURL, form)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, body
	}
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {"autoscaler"}, "client_secret": {"s3cret"}, "scope": {"autoscaler:auth"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for key, vs := range good {
			f[key] = vs
		}
		f.Set(k, v)
		return f
	}

	resp, err := http.PostForm(tokenURL, good)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "no client registered yet")
	resp.Body.Close()

	s.SetOAuthClient("autoscaler", "s3cret", "tok-1")
	for _, tc := range []struct {
		form   url.Values
		status int
		code   string
	}{
		{with("grant_type", "password"), http.StatusBadRequest, "unsupported_grant_type"},
		{with("client_secret", "wrong"), http.StatusUnauthorized, "invalid_client"},
		{with("scope", "admin"), http.StatusBadRequest, "invalid_scope"},
	} {
		status, body := post(tc.form)
		require.Equal(t, tc.status, status)
		require.Equal(t, tc.code, body["error"])
	}
	require.Zero(t, s.TokenFetches())
	status, body := post(good)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "tok-1", body["access_token"])
	require.Equal(t, 1, s.TokenFetches())

	prediction := s.HTTPURL() + "/v2/nvcf/predictions/functions/f/versions/v"
	require.Equal(t, http.StatusUnauthorized, put(t, prediction, `{"requiredNumberOfInstances":2}`, nil).StatusCode)
	require.Equal(t, http.StatusOK, put(t, prediction, `{"requiredNumberOfInstances":2}`, http.Header{"Authorization": {"Bearer tok-1"}}).StatusCode)
}
