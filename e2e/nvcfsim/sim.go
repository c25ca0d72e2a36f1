// Package nvcfsim simulates the write side of the NVCF API for closed-loop
// tests: an in-memory registry of function versions, the HTTP predictions
// endpoints (plain and account-scoped), an OAuth2 client-credentials token
// endpoint and the nvcf.Autoscaler gRPC service; HTTP and gRPC each on its
// own 127.0.0.1 listener, either optionally over TLS.
//
// The simulator clamps requests the way the real API is documented to, so
// the autoscaler under test can stay clamp-free. It records every write,
// can inject faults (429, 503, gRPC Unavailable, ...) and latency, can
// demand bearer tokens, and reports each change of the desired instance
// count so that a data-plane simulator can follow it.
package nvcfsim

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"function/shared/nvcf/nvcfpb"
)

// Function statuses as NVCF reports them. Only ACTIVE versions are scaled.
const (
	StatusActive    = "ACTIVE"
	StatusDeploying = "DEPLOYING"
	StatusInactive  = "INACTIVE"
	StatusError     = "ERROR"
)

// Scaling statuses the simulator answers with. The real API's strings are
// not documented; these name what the simulator did.
const (
	ScalingApplied    = "SCALING_REQUESTED" // the desired count changed
	ScalingNoChange   = "NO_CHANGE"         // the clamped request equals the current desired count
	ScalingNotActive  = "NOT_ACTIVE"        // the function is not ACTIVE: nothing happened
	ScalingOutOfRange = "SPEC_OUT_OF_RANGE" // the current count is outside the spec: nothing happened
)

// Outcomes recorded for a write that did not reach the clamping logic.
const (
	OutcomeNotFound     = "not_found"
	OutcomeBeyondLimits = "beyond_limits"
	OutcomeUnauthorized = "unauthorized"
	OutcomeFault        = "fault"
)

// DeploymentSpec is one entry of a function version's
// deploymentSpecifications: where min/max instances live.
type DeploymentSpec struct {
	GPU          string
	InstanceType string
	MinInstances int
	MaxInstances int
}

// FunctionVersion is one deployed function version known to the simulator.
type FunctionVersion struct {
	FunctionID string
	VersionID  string
	NcaID      string
	// Status is ACTIVE, DEPLOYING, ...; empty means ACTIVE.
	Status string
	Specs  []DeploymentSpec
	// Autoscaling is what RequestDeploymentConfiguration answers, keyed by
	// GPU specification id; nil answers an empty map.
	Autoscaling map[string]*nvcfpb.AutoscalingConfiguration
	// RejectBeyondLimits makes a request above the sum of maxInstances fail
	// with INSTANCE_REQUEST_BEYOND_LIMITS instead of being clamped, so that
	// the client's handling of that error can be exercised.
	RejectBeyondLimits bool
}

// InstanceCounts is the data plane's view of a function version, reported
// back in AutoscalerResponse.
type InstanceCounts struct {
	Active      int
	Pending     int
	Allocating  int
	Terminating int
}

// Write is one recorded call to the write endpoints, whatever its outcome.
type Write struct {
	Time         time.Time
	Transport    string // "http" or "grpc"
	FunctionID   string
	VersionID    string
	NcaID        string // from the account-scoped path, if used
	DeploymentID string
	GPUSpecID    string
	Requested    int
	// Applied is the desired count after the call; for calls that changed
	// nothing it is the unchanged count, for failed calls 0.
	Applied int
	// Outcome is a Scaling* status for answered calls, else an Outcome*.
	Outcome string
}

// DesiredChange is passed to the change callback after a write moved a
// function version's desired instance count.
type DesiredChange struct {
	FunctionID string
	VersionID  string
	Old        int
	New        int
}

// FaultKind selects the error an injected fault answers with.
type FaultKind int

// Fault kinds with their HTTP status and gRPC code.
const (
	// FaultRateLimited answers 429 with Retry-After, or ResourceExhausted
	// with a google.rpc.RetryInfo detail.
	FaultRateLimited FaultKind = iota + 1
	// FaultUnavailable answers 503, or Unavailable.
	FaultUnavailable
	// FaultInternal answers 500, or Internal.
	FaultInternal
	// FaultNotFound answers 404, or NotFound.
	FaultNotFound
	// FaultBeyondLimits answers 422, or InvalidArgument.
	FaultBeyondLimits
)

// Fault is an injected error answer.
type Fault struct {
	Kind FaultKind
	// RetryAfter is sent with FaultRateLimited; HTTP rounds it up to whole
	// seconds because Retry-After has no finer unit.
	RetryAfter time.Duration
}

// Call describes an incoming call to a fault schedule.
type Call struct {
	Seq        int    // 1-based across all calls the simulator received
	Endpoint   string // EndpointAutoscale or EndpointDeploymentConfiguration
	Transport  string // "http" or "grpc"
	FunctionID string
	VersionID  string
}

// Endpoints as passed in Call.
const (
	EndpointAutoscale               = "AutoscaleFunction"
	EndpointDeploymentConfiguration = "RequestDeploymentConfiguration"
)

// Options configures Start.
type Options struct {
	// HTTPAddr and GRPCAddr are the listen addresses; empty means
	// 127.0.0.1:0 (an ephemeral port). Use 127.0.0.1 only.
	HTTPAddr string
	GRPCAddr string
	// Logger receives one line per call; nil discards.
	Logger *slog.Logger
	// Now is the clock for recorded writes; nil means time.Now.
	Now func() time.Time
	// ManualInstances stops the simulator from pretending every applied
	// desired count is immediately active; InstanceCounts then come only
	// from SetInstances (the data-plane simulator's job).
	ManualInstances bool
	// GRPCTLS serves gRPC over TLS with this server configuration (see
	// ServerTLS); nil serves plaintext, as local stacks use.
	GRPCTLS *tls.Config
	// HTTPTLS serves the HTTP API and the token endpoint over TLS with
	// this configuration (HTTPURL is then https); nil serves plaintext.
	HTTPTLS *tls.Config
}

// ServerTLS is a server TLS configuration from PEM files: the simulator's
// certificate and key and, when clientCAFile is set, client certificates
// required and verified against it.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("nvcfsim server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("nvcfsim client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nvcfsim client CA %s: no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

type version struct {
	fv        FunctionVersion
	desired   int
	instances InstanceCounts
}

type key struct{ fid, vid string }

// Server is a running simulator. All methods are safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu        sync.Mutex
	versions  map[key]*version
	writes    []Write
	calls     map[key]int
	seq       int
	failNext  int
	fault     Fault
	schedule  func(Call) *Fault
	latency   time.Duration
	tokens    map[string]bool
	oauth     *oauthClient
	onDesired func(DesiredChange)

	inFlight atomic.Int64

	httpLn  net.Listener
	grpcLn  net.Listener
	httpSrv *http.Server
	grpcSrv *grpc.Server
	served  sync.WaitGroup
}

// Start creates a simulator and starts serving HTTP and gRPC. Close stops it.
func Start(opts Options) (*Server, error) {
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		versions: map[key]*version{},
		calls:    map[key]int{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	httpAddr, grpcAddr := opts.HTTPAddr, opts.GRPCAddr
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	if grpcAddr == "" {
		grpcAddr = "127.0.0.1:0"
	}
	var err error
	if s.httpLn, err = net.Listen("tcp", httpAddr); err != nil {
		return nil, fmt.Errorf("listen http %s: %w", httpAddr, err)
	}
	if opts.HTTPTLS != nil {
		s.httpLn = tls.NewListener(s.httpLn, opts.HTTPTLS)
	}
	if s.grpcLn, err = net.Listen("tcp", grpcAddr); err != nil {
		_ = s.httpLn.Close()
		return nil, fmt.Errorf("listen grpc %s: %w", grpcAddr, err)
	}
	// Refused handshakes are what TLS tests provoke: logged at debug, not
	// on the standard logger.
	s.httpSrv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	var grpcOpts []grpc.ServerOption
	if opts.GRPCTLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(opts.GRPCTLS)))
	}
	s.grpcSrv = grpc.NewServer(grpcOpts...)
	nvcfpb.RegisterAutoscalerServer(s.grpcSrv, &grpcService{s: s})

	s.served.Add(2)
	go func() {
		defer s.served.Done()
		if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("nvcfsim http server stopped", "error", err)
		}
	}()
	go func() {
		defer s.served.Done()
		if err := s.grpcSrv.Serve(s.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("nvcfsim grpc server stopped", "error", err)
		}
	}()
	return s, nil
}

// HTTPURL is the base URL of the HTTP API, e.g. http://127.0.0.1:41234
// (https with Options.HTTPTLS).
func (s *Server) HTTPURL() string {
	if s.opts.HTTPTLS != nil {
		return "https://" + s.httpLn.Addr().String()
	}
	return "http://" + s.httpLn.Addr().String()
}

// GRPCAddr is the host:port of the gRPC service.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// Close stops both servers, letting in-flight calls finish for up to ctx's
// deadline (5 s if ctx has none) before cutting them off.
func (s *Server) Close(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	grpcDone := make(chan struct{})
	go func() {
		s.grpcSrv.GracefulStop()
		close(grpcDone)
	}()
	httpErr := s.httpSrv.Shutdown(ctx)
	select {
	case <-grpcDone:
	case <-ctx.Done():
		// GracefulStop waits for streams forever; a stuck client must not
		// hang the test suite.
		s.grpcSrv.Stop()
		<-grpcDone
	}
	s.served.Wait()
	if httpErr != nil {
		return fmt.Errorf("shut down nvcfsim http server: %w", httpErr)
	}
	return nil
}

// InFlight is the number of calls being handled right now (including ones
// held by SetLatency), so a test can wait until a call has arrived.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// Register adds a function version or replaces its definition. A new version
// starts at the sum of its specs' minInstances, as a fresh deployment would;
// a replaced one keeps its desired count, so the new specs may leave it out
// of range (which the real API answers by doing nothing).
func (s *Server) Register(fv FunctionVersion) {
	if fv.Status == "" {
		fv.Status = StatusActive
	}
	fv.Specs = slices.Clone(fv.Specs)
	fv.Autoscaling = cloneConfigs(fv.Autoscaling)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{fv.FunctionID, fv.VersionID}
	if v, ok := s.versions[k]; ok {
		v.fv = fv
		return
	}
	minSum, _ := sums(fv.Specs)
	v := &version{fv: fv, desired: minSum}
	if !s.opts.ManualInstances {
		v.instances.Active = minSum
	}
	s.versions[k] = v
}

// Remove forgets a function version; later calls for it answer not found.
func (s *Server) Remove(functionID, versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.versions, key{functionID, versionID})
}

// SetStatus changes a version's status; it reports whether the version exists.
func (s *Server) SetStatus(functionID, versionID, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.versions[key{functionID, versionID}]
	if ok {
		v.fv.Status = status
	}
	return ok
}

// SetInstances records the data plane's instance counts for a version, which
// later AutoscalerResponses report; it reports whether the version exists.
func (s *Server) SetInstances(functionID, versionID string, c InstanceCounts) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.versions[key{functionID, versionID}]
	if ok {
		v.instances = c
	}
	return ok
}

// Desired is the version's current desired instance count.
func (s *Server) Desired(functionID, versionID string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.versions[key{functionID, versionID}]
	if !ok {
		return 0, false
	}
	return v.desired, true
}

// OnDesiredChange sets a callback run after every write that changed a
// desired count. It runs on the request's goroutine, outside the
// simulator's lock, so it may call back into the Server; nil removes it.
func (s *Server) OnDesiredChange(fn func(DesiredChange)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onDesired = fn
}

// Writes returns a copy of every recorded write call, oldest first.
func (s *Server) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// Calls is the number of write calls received for a version, including
// failed, faulted and unauthorized ones.
func (s *Server) Calls(functionID, versionID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key{functionID, versionID}]
}

// ResetRecords forgets recorded writes and call counts (not the registry).
func (s *Server) ResetRecords() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = nil
	s.calls = map[key]int{}
}

// FailNext makes the next n calls (any endpoint, any transport) answer with
// fault f. It replaces an earlier FailNext that has not run out.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.fault = n, f
}

// SetFaultSchedule installs a function consulted on every call after
// FailNext's budget is spent; a nil result lets the call through. nil
// removes the schedule. It runs under the simulator's lock: it must not
// call back into the Server.
func (s *Server) SetFaultSchedule(fn func(Call) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schedule = fn
}

// SetLatency delays every call by d before it is handled.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetAcceptedTokens makes every call require "Authorization: Bearer <t>"
// with t among tokens (401 / Unauthenticated otherwise). No tokens turns
// authentication off.
func (s *Server) SetAcceptedTokens(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = nil
	if len(tokens) > 0 {
		s.tokens = map[string]bool{}
		for _, t := range tokens {
			s.tokens[t] = true
		}
	}
}

// Clamp applies the NVCF API's documented rule: a request <= 0 or below the
// sum of minInstances becomes that sum, else it is capped at the sum of
// maxInstances.
func Clamp(requested, minSum, maxSum int) int {
	if requested <= 0 || requested < minSum {
		return minSum
	}
	return min(requested, maxSum)
}

func sums(specs []DeploymentSpec) (minSum, maxSum int) {
	for _, sp := range specs {
		minSum += sp.MinInstances
		maxSum += sp.MaxInstances
	}
	return minSum, maxSum
}

func cloneConfigs(m map[string]*nvcfpb.AutoscalingConfiguration) map[string]*nvcfpb.AutoscalingConfiguration {
	if m == nil {
		return nil
	}
	out := make(map[string]*nvcfpb.AutoscalingConfiguration, len(m))
	for k, v := range m {
		out[k] = proto.Clone(v).(*nvcfpb.AutoscalingConfiguration)
	}
	return out
}

// errKind is a transport-neutral failure, mapped to an HTTP status or a gRPC
// code by each front end.
type errKind int

const (
	errNone errKind = iota
	errUnauthorized
	errNotFound
	errBeyondLimits
	errRateLimited
	errUnavailable
	errInternal
)

type callError struct {
	kind       errKind
	msg        string
	retryAfter time.Duration
}

func (e *callError) Error() string { return e.msg }

func faultError(f *Fault) *callError {
	switch f.Kind {
	case FaultRateLimited:
		return &callError{kind: errRateLimited, msg: "injected: rate limited", retryAfter: f.RetryAfter}
	case FaultUnavailable:
		return &callError{kind: errUnavailable, msg: "injected: unavailable"}
	case FaultNotFound:
		return &callError{kind: errNotFound, msg: "injected: function not found"}
	case FaultBeyondLimits:
		return &callError{kind: errBeyondLimits, msg: "injected: beyond limits"}
	default:
		return &callError{kind: errInternal, msg: "injected: internal error"}
	}
}

// admit runs the steps every call shares, in the order a real gateway would:
// latency, authentication, then injected faults.
func (s *Server) admit(ctx context.Context, c Call, authorization string) *callError {
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &callError{kind: errUnavailable, msg: "call abandoned by client"}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	c.Seq = s.seq
	if s.tokens != nil {
		tok, ok := bearer(authorization)
		if !ok || !s.tokens[tok] {
			return &callError{kind: errUnauthorized, msg: "missing or invalid bearer token"}
		}
	}
	if s.failNext > 0 {
		s.failNext--
		return faultError(&s.fault)
	}
	if s.schedule != nil {
		if f := s.schedule(c); f != nil {
			return faultError(f)
		}
	}
	return nil
}

func bearer(h string) (string, bool) {
	const prefix = "Bearer "
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return "", false
	}
	return h[len(prefix):], true
}

// autoscaleCall is a transport-neutral write request.
type autoscaleCall struct {
	transport     string
	authorization string
	ncaID         string // set only by the account-scoped HTTP path
	functionID    string
	versionID     string
	deploymentID  string
	gpuSpecID     string
	requested     int
}

// autoscale handles one write from either front end.
func (s *Server) autoscale(ctx context.Context, in autoscaleCall) (*nvcfpb.AutoscalerResponse, *callError) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	c := Call{Endpoint: EndpointAutoscale, Transport: in.transport, FunctionID: in.functionID, VersionID: in.versionID}
	w := Write{
		Transport:    in.transport,
		FunctionID:   in.functionID,
		VersionID:    in.versionID,
		NcaID:        in.ncaID,
		DeploymentID: in.deploymentID,
		GPUSpecID:    in.gpuSpecID,
		Requested:    in.requested,
	}
	if cerr := s.admit(ctx, c, in.authorization); cerr != nil {
		w.Outcome = OutcomeFault
		if cerr.kind == errUnauthorized {
			w.Outcome = OutcomeUnauthorized
		}
		s.record(w)
		return nil, cerr
	}

	s.mu.Lock()
	resp, change, cerr := s.applyLocked(in, &w)
	s.recordLocked(w)
	cb := s.onDesired
	s.mu.Unlock()

	s.log.Info("nvcfsim write", "transport", in.transport, "function_id", in.functionID,
		"function_version_id", in.versionID, "requested", in.requested, "applied", w.Applied, "outcome", w.Outcome)
	if change != nil && cb != nil {
		cb(*change)
	}
	return resp, cerr
}

func (s *Server) applyLocked(in autoscaleCall, w *Write) (*nvcfpb.AutoscalerResponse, *DesiredChange, *callError) {
	v, ok := s.versions[key{in.functionID, in.versionID}]
	if !ok || (in.ncaID != "" && v.fv.NcaID != "" && v.fv.NcaID != in.ncaID) {
		w.Outcome = OutcomeNotFound
		return nil, nil, &callError{kind: errNotFound, msg: fmt.Sprintf("function version %s/%s not found", in.functionID, in.versionID)}
	}
	minSum, maxSum := sums(v.fv.Specs)
	w.Applied = v.desired
	switch {
	case v.fv.Status != StatusActive:
		w.Outcome = ScalingNotActive
		return s.responseLocked(v, ScalingNotActive), nil, nil
	case v.desired < minSum || v.desired > maxSum:
		w.Outcome = ScalingOutOfRange
		return s.responseLocked(v, ScalingOutOfRange), nil, nil
	case v.fv.RejectBeyondLimits && in.requested > maxSum:
		w.Applied = 0
		w.Outcome = OutcomeBeyondLimits
		return nil, nil, &callError{kind: errBeyondLimits,
			msg: fmt.Sprintf("%d instances requested, at most %d allowed", in.requested, maxSum)}
	}
	applied := Clamp(in.requested, minSum, maxSum)
	w.Applied = applied
	if applied == v.desired {
		w.Outcome = ScalingNoChange
		return s.responseLocked(v, ScalingNoChange), nil, nil
	}
	change := &DesiredChange{FunctionID: in.functionID, VersionID: in.versionID, Old: v.desired, New: applied}
	v.desired = applied
	if !s.opts.ManualInstances {
		v.instances = InstanceCounts{Active: applied}
	}
	w.Outcome = ScalingApplied
	resp := s.responseLocked(v, ScalingApplied)
	if s.opts.ManualInstances {
		// The data plane provisions later, but the API's answer already
		// counts the new target: the missing instances as pending, the
		// surplus as terminating. Callers read what NVCF targets (and
		// whether it clamped their request) from active + pending +
		// allocating.
		targeted := resp.ActiveInstances + resp.PendingInstances + resp.AllocatingInstances
		switch diff := int32(applied) - targeted; {
		case diff > 0:
			resp.PendingInstances += diff
		case diff < 0:
			cut := min(-diff, resp.PendingInstances)
			resp.PendingInstances -= cut
			resp.ActiveInstances -= -diff - cut
			resp.TerminatingInstances += -diff - cut
		}
	}
	return resp, change, nil
}

func (s *Server) responseLocked(v *version, scaling string) *nvcfpb.AutoscalerResponse {
	return &nvcfpb.AutoscalerResponse{
		ActiveInstances:      int32(v.instances.Active),
		PendingInstances:     int32(v.instances.Pending),
		AllocatingInstances:  int32(v.instances.Allocating),
		TerminatingInstances: int32(v.instances.Terminating),
		FunctionStatus:       v.fv.Status,
		ScalingStatus:        scaling,
	}
}

func (s *Server) record(w Write) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(w)
}

func (s *Server) recordLocked(w Write) {
	w.Time = s.now()
	s.writes = append(s.writes, w)
	s.calls[key{w.FunctionID, w.VersionID}]++
}

// deploymentConfiguration handles RequestDeploymentConfiguration.
func (s *Server) deploymentConfiguration(ctx context.Context, authorization, functionID, versionID string) (map[string]*nvcfpb.AutoscalingConfiguration, *callError) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	c := Call{Endpoint: EndpointDeploymentConfiguration, Transport: "grpc", FunctionID: functionID, VersionID: versionID}
	if cerr := s.admit(ctx, c, authorization); cerr != nil {
		return nil, cerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.versions[key{functionID, versionID}]
	if !ok {
		return nil, &callError{kind: errNotFound, msg: fmt.Sprintf("function version %s/%s not found", functionID, versionID)}
	}
	return cloneConfigs(v.fv.Autoscaling), nil
}

// Versions lists the registered function versions ordered by function id
// and version id, e.g. for a simulator main that prints its state.
func (s *Server) Versions() []FunctionVersion {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FunctionVersion, 0, len(s.versions))
	for _, v := range s.versions {
		fv := v.fv
		fv.Specs = slices.Clone(fv.Specs)
		fv.Autoscaling = cloneConfigs(fv.Autoscaling)
		out = append(out, fv)
	}
	slices.SortFunc(out, func(a, b FunctionVersion) int {
		return cmp.Or(cmp.Compare(a.FunctionID, b.FunctionID), cmp.Compare(a.VersionID, b.VersionID))
	})
	return out
}
