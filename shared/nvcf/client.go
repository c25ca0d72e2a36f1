// Package nvcf is the client of the NVCF API's write side: it asks NVCF to
// run a number of instances of a function version, and reads the user's
// per-function autoscaling configuration.
//
// Two transports exist: the legacy HTTP predictions PUT and the current
// nvcf.Autoscaler gRPC service (see nvcfpb). The client adds what a
// well-behaved caller of a shared control plane needs: bearer or OAuth2
// client-credentials auth, a client-side rate limit that sheds load instead
// of queueing without bound, bounded retries with jittered exponential
// back-off that honour Retry-After, and errors classified so the caller can
// tell "try again later" from "stop asking" (see Retryable).
//
// The client does not clamp to min/max instances: the NVCF API does.
package nvcf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/time/rate"

	"function/shared/nvcf/nvcfpb"
)

// Request is one desired instance count for a function version.
type Request struct {
	FunctionID        string
	FunctionVersionID string
	// NcaID is the account id; required when Config.AccountScoped.
	NcaID string
	// DeploymentID and GPUSpecID narrow the request to one deployment or
	// GPU specification; optional (DeploymentID travels over HTTP only when
	// account-scoped, GPUSpecID over gRPC only).
	DeploymentID string
	GPUSpecID    string
	// Instances is the desired count. The API turns <= 0 into the sum of
	// minInstances and caps it at the sum of maxInstances.
	Instances int
}

// Result is the API's answer to a write. Over HTTP the instance counts and
// statuses are filled only if the server sends them (the legacy API's
// response body is not documented).
type Result struct {
	// Requested echoes Request.Instances.
	Requested            int
	ActiveInstances      int
	PendingInstances     int
	AllocatingInstances  int
	TerminatingInstances int
	FunctionStatus       string
	ScalingStatus        string
	// Attempts is how many attempts the call took (0 in dry-run).
	Attempts int
	// DryRun is true when nothing was sent.
	DryRun bool
}

// ScalingStatusDryRun is Result.ScalingStatus of a dry-run write.
const ScalingStatusDryRun = "DRY_RUN"

// AutoscalingConfig is a function version's autoscaling policy for one GPU
// specification, as configured by its owner.
type AutoscalingConfig struct {
	ScaleUp   ScalingDetails
	ScaleDown ScalingDetails
}

// ScalingDetails is one direction's rule: when Metric crosses Threshold,
// multiply the instance count by Factor.
type ScalingDetails struct {
	Metric    string
	Factor    float64
	Threshold int
	// Stickiness is zero when the rule has none.
	Stickiness StickinessWindow
}

// StickinessWindow asks for the threshold to be breached during at least
// Threshold of the last Size before the rule fires.
type StickinessWindow struct {
	Size      time.Duration
	Threshold time.Duration
}

// transport is one wire protocol. Each method makes exactly one attempt and
// returns the code to report to the Observer.
type transport interface {
	autoscaleEndpoint() string
	autoscale(ctx context.Context, r Request, token string) (Result, string, error)
	deploymentConfiguration(ctx context.Context, functionID, versionID, token string) (map[string]AutoscalingConfig, string, error)
	close() error
}

// Client talks to the NVCF API. It is safe for concurrent use; create one
// per process and Close it on shutdown.
type Client struct {
	cfg     Config
	log     *slog.Logger
	creds   credentials
	tr      transport // nil in dry-run without an address
	limiter *rate.Limiter

	// now and sleep are the limiter's and the back-off's view of time;
	// tests replace them to check waits without waiting.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// New validates cfg, applies defaults and builds a Client. It reads the
// credential file (TokenFile or OAuthClientSecretFile), so that a missing
// or empty one fails here with its setting named. It does not dial: the
// first call does.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("nvcf client config: %w", err)
	}
	apiClient, tokenClient, err := newHTTPSClients(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, creds: noCredentials{}, now: time.Now, sleep: sleepCtx}
	switch {
	case cfg.TokenFile != "":
		f, err := newSecretFile(cfg.Logger, cfg.TokenFile, tokenFileSetting, "token")
		if err != nil {
			return nil, fmt.Errorf("nvcf credentials: %w", err)
		}
		c.creds = staticToken{file: f}
	case cfg.OAuthTokenURL != "":
		cc, err := newClientCredentials(cfg, tokenClient)
		if err != nil {
			return nil, fmt.Errorf("nvcf credentials: %w", err)
		}
		c.creds = cc
	}
	if cfg.Rate > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	switch cfg.Transport {
	case TransportHTTP:
		if cfg.BaseURL != "" {
			c.tr = newHTTPTransport(cfg, apiClient)
		}
	case TransportGRPC:
		if cfg.GRPCAddr != "" {
			tr, err := newGRPCTransport(cfg)
			if err != nil {
				return nil, err
			}
			c.tr = tr
		}
	}
	return c, nil
}

// Close releases the gRPC connection, if any.
func (c *Client) Close() error {
	if c.tr == nil {
		return nil
	}
	return c.tr.close()
}

// Autoscale asks NVCF to run r.Instances instances of the function version.
// Errors match ErrNotFound, ErrBeyondLimits, ErrUnauthorized,
// ErrRateLimited, ErrUnavailable or ErrInvalidRequest; see Retryable.
// The call is one span, nvcf.Autoscale, whatever the transport.
func (c *Client) Autoscale(ctx context.Context, r Request) (Result, error) {
	ctx, span := c.startSpan(ctx, "nvcf.Autoscale", r.FunctionID, r.FunctionVersionID, attribute.Int("nvcf.instances", r.Instances))
	res, err := c.autoscale(ctx, r)
	endSpan(span, err, attribute.Int("nvcf.attempts", res.Attempts), attribute.Bool("nvcf.dry_run", res.DryRun),
		attribute.Int("nvcf.active_instances", res.ActiveInstances), attribute.Int("nvcf.pending_instances", res.PendingInstances))
	return res, err
}

func (c *Client) autoscale(ctx context.Context, r Request) (Result, error) {
	if r.FunctionID == "" || r.FunctionVersionID == "" {
		return Result{}, fmt.Errorf("autoscale %q/%q: function id and version id are required: %w",
			r.FunctionID, r.FunctionVersionID, ErrInvalidRequest)
	}
	if c.cfg.AccountScoped && r.NcaID == "" {
		return Result{}, fmt.Errorf("autoscale %s/%s: account-scoped writes need an NCA id: %w",
			r.FunctionID, r.FunctionVersionID, ErrInvalidRequest)
	}
	if c.cfg.Transport == TransportGRPC && (r.Instances > math.MaxInt32 || r.Instances < math.MinInt32) {
		return Result{}, fmt.Errorf("autoscale %s/%s: %d instances do not fit int32: %w",
			r.FunctionID, r.FunctionVersionID, r.Instances, ErrInvalidRequest)
	}
	attrs := []any{
		slog.String("function_id", r.FunctionID),
		slog.String("function_version_id", r.FunctionVersionID),
		slog.String("nca_id", r.NcaID),
		slog.Int("required_instances", r.Instances),
	}
	if c.cfg.DryRun {
		c.log.InfoContext(ctx, "nvcf dry run: would request instances", append(attrs,
			slog.String("transport", c.cfg.Transport),
			slog.String("deployment_id", r.DeploymentID),
			slog.String("gpu_specification_id", r.GPUSpecID),
			slog.Bool("account_scoped", c.cfg.AccountScoped))...)
		return Result{Requested: r.Instances, ScalingStatus: ScalingStatusDryRun, DryRun: true}, nil
	}
	if c.tr == nil {
		return Result{}, fmt.Errorf("autoscale %s/%s: no API address configured: %w", r.FunctionID, r.FunctionVersionID, ErrInvalidRequest)
	}
	var res Result
	attempts, err := c.do(ctx, c.tr.autoscaleEndpoint(), attrs, func(ctx context.Context, token string) (string, error) {
		var code string
		var err error
		res, code, err = c.tr.autoscale(ctx, r, token)
		return code, err
	})
	if err != nil {
		return Result{}, fmt.Errorf("autoscale %s/%s to %d: %w", r.FunctionID, r.FunctionVersionID, r.Instances, err)
	}
	res.Requested, res.Attempts = r.Instances, attempts
	return res, nil
}

// DeploymentConfiguration reads a function version's autoscaling
// configuration, keyed by GPU specification id. Only the gRPC transport
// offers it; over HTTP it fails with ErrUnsupported so the caller falls
// back to its defaults.
func (c *Client) DeploymentConfiguration(ctx context.Context, functionID, versionID string) (map[string]AutoscalingConfig, error) {
	ctx, span := c.startSpan(ctx, "nvcf.DeploymentConfiguration", functionID, versionID)
	out, err := c.deploymentConfiguration(ctx, functionID, versionID)
	endSpan(span, err, attribute.Int("nvcf.gpu_specifications", len(out)))
	return out, err
}

func (c *Client) deploymentConfiguration(ctx context.Context, functionID, versionID string) (map[string]AutoscalingConfig, error) {
	if c.cfg.Transport != TransportGRPC {
		return nil, fmt.Errorf("deployment configuration of %s/%s: %w: only the gRPC API serves it", functionID, versionID, ErrUnsupported)
	}
	if c.tr == nil {
		return nil, fmt.Errorf("deployment configuration of %s/%s: no API address configured: %w", functionID, versionID, ErrInvalidRequest)
	}
	attrs := []any{slog.String("function_id", functionID), slog.String("function_version_id", versionID)}
	var out map[string]AutoscalingConfig
	_, err := c.do(ctx, EndpointDeploymentConfigRPC, attrs, func(ctx context.Context, token string) (string, error) {
		var code string
		var err error
		out, code, err = c.tr.deploymentConfiguration(ctx, functionID, versionID, token)
		return code, err
	})
	if err != nil {
		return nil, fmt.Errorf("deployment configuration of %s/%s: %w", functionID, versionID, err)
	}
	return out, nil
}

// do runs attempt until it succeeds, fails permanently, or the attempts,
// the caller's context or the server's patience run out. It returns the
// number of attempts made.
func (c *Client) do(ctx context.Context, endpoint string, attrs []any, attempt func(ctx context.Context, token string) (string, error)) (int, error) {
	var last error
	refreshed := false
	for n := 1; ; n++ {
		if err := c.admit(ctx, endpoint); err != nil {
			if ctx.Err() != nil {
				return n - 1, ctxError(endpoint, n-1, ctx.Err(), last)
			}
			return n - 1, err
		}
		err := c.once(ctx, endpoint, attempt)
		if err == nil {
			return n, nil
		}
		last = err
		if ctx.Err() != nil {
			return n, ctxError(endpoint, n, ctx.Err(), last)
		}
		if n >= c.cfg.MaxAttempts {
			if transient(err) {
				return n, &ExhaustedError{Endpoint: endpoint, Attempts: n, Last: err}
			}
			return n, err
		}
		// A refused credential may be a token revoked or rotated before its
		// expiry: fetch a fresh one once rather than fail the call.
		if errors.Is(err, ErrUnauthorized) && !refreshed && c.hasCredentials() {
			refreshed = true
			c.creds.invalidate()
			c.log.WarnContext(ctx, "nvcf credentials refused, retrying with a fresh token",
				append(attrs, slog.String("endpoint", endpoint), slog.Int("attempt", n))...)
			continue
		}
		if !transient(err) {
			return n, err
		}
		wait := c.backoff(n)
		if ra := retryAfter(err); ra > 0 {
			if ra > c.cfg.MaxRetryAfter {
				// Waiting that long would hold the caller's event; the
				// next cycle is the better retry.
				return n, fmt.Errorf("nvcf %s: server asked to retry after %s (more than %s): %w: %w",
					endpoint, ra, c.cfg.MaxRetryAfter, ErrRateLimited, err)
			}
			wait = max(wait, ra)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// The context would expire while we sleep: report the real
			// cause now instead of a bare deadline error later.
			return n, &ExhaustedError{Endpoint: endpoint, Attempts: n, Last: err}
		}
		c.log.WarnContext(ctx, "nvcf attempt failed, retrying", append(attrs,
			slog.String("endpoint", endpoint), slog.Int("attempt", n),
			slog.Duration("wait", wait), slog.String("error", err.Error()))...)
		if err := c.sleep(ctx, wait); err != nil {
			return n, ctxError(endpoint, n, err, last)
		}
	}
}

// once makes one attempt under the per-attempt timeout and reports it.
func (c *Client) once(ctx context.Context, endpoint string, attempt func(ctx context.Context, token string) (string, error)) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	token, err := c.creds.token(actx)
	if err != nil {
		c.observe(endpoint, CodeAuthError, 0)
		return fmt.Errorf("get bearer token: %w", err)
	}
	start := time.Now()
	code, err := attempt(actx, token)
	c.observe(endpoint, code, time.Since(start))
	traceAttempt(ctx, endpoint, code, time.Since(start), err)
	return err
}

func (c *Client) hasCredentials() bool {
	_, none := c.creds.(noCredentials)
	return !none
}

func (c *Client) observe(endpoint, code string, d time.Duration) {
	if c.cfg.Observer != nil {
		c.cfg.Observer(endpoint, code, d)
	}
}

// admit takes a token from the rate limiter, waiting at most MaxQueueAge.
// Reservations rather than Limiter.Wait let us refuse up front a request
// that would wait too long, instead of parking it until the queue drains.
func (c *Client) admit(ctx context.Context, endpoint string) error {
	if c.limiter == nil {
		return nil
	}
	now := c.now()
	r := c.limiter.ReserveN(now, 1)
	if !r.OK() {
		c.observe(endpoint, CodeClientRateLimited, 0)
		return fmt.Errorf("nvcf %s: limiter burst is 0: %w", endpoint, ErrRateLimited)
	}
	delay := r.DelayFrom(now)
	if delay == 0 {
		c.limiterWaited(0)
		return nil
	}
	if delay > c.cfg.MaxQueueAge {
		r.CancelAt(now)
		c.observe(endpoint, CodeClientRateLimited, 0)
		return fmt.Errorf("nvcf %s: would wait %s for the client rate limiter (max %s): %w",
			endpoint, delay.Round(time.Millisecond), c.cfg.MaxQueueAge, ErrRateLimited)
	}
	c.limiterQueue(1)
	err := c.sleep(ctx, delay)
	c.limiterQueue(-1)
	if err != nil {
		r.CancelAt(c.now())
		return fmt.Errorf("nvcf %s: waiting for the client rate limiter: %w", endpoint, err)
	}
	c.limiterWaited(delay)
	return nil
}

func (c *Client) limiterQueue(delta int) {
	if c.cfg.OnLimiterQueue != nil {
		c.cfg.OnLimiterQueue(delta)
	}
}

func (c *Client) limiterWaited(d time.Duration) {
	if c.cfg.OnLimiterWait != nil {
		c.cfg.OnLimiterWait(d)
	}
}

// backoff is the jittered exponential wait after attempt n (1-based): a
// random duration in [d/2, d] with d = base*2^(n-1) capped at BackoffMax.
// Jitter keeps many replicas that failed together from retrying together.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.BackoffMax
	if n-1 < 30 {
		d = min(c.cfg.BackoffBase<<(n-1), c.cfg.BackoffMax)
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if secs, err := strconv.Atoi(h); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// fromProtoConfigs converts the wire form into plain Go values.
func fromProtoConfigs(in map[string]*nvcfpb.AutoscalingConfiguration) map[string]AutoscalingConfig {
	out := make(map[string]AutoscalingConfig, len(in))
	for gpu, cfg := range in {
		out[gpu] = AutoscalingConfig{
			ScaleUp:   fromProtoDetails(cfg.GetScaleUpDetails()),
			ScaleDown: fromProtoDetails(cfg.GetScaleDownDetails()),
		}
	}
	return out
}

func fromProtoDetails(d *nvcfpb.ScalingDetails) ScalingDetails {
	if d == nil {
		return ScalingDetails{}
	}
	out := ScalingDetails{
		Metric:    d.GetMetric(),
		Factor:    widenFloat32(d.GetFactor()),
		Threshold: int(d.GetThreshold()),
	}
	if s := d.GetStickiness(); s != nil {
		out.Stickiness = StickinessWindow{Size: s.GetSize().AsDuration(), Threshold: s.GetThreshold().AsDuration()}
	}
	return out
}

// widenFloat32 converts via the shortest decimal form so that a factor sent
// as float32 1.2 reads as 1.2, not 1.2000000476837158.
func widenFloat32(f float32) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		return float64(f)
	}
	return v
}
