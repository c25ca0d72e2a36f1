package nvcf

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"function/shared/tlsfiles"
)

// Transports Config.Transport accepts.
const (
	TransportHTTP = "http"
	TransportGRPC = "grpc"
)

// OAuthScope is the scope the NVCF autoscaler API requires of client
// credentials tokens.
const OAuthScope = "autoscaler:auth"

// Defaults applied by New to zero-valued Config fields. The rate and burst
// follow the reference client (a 5000-token bucket refilled with 200 per
// 100 ms); a request that would queue longer than 15 s is dropped.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultRate          = 2000.0
	DefaultBurst         = 5000
	DefaultMaxAttempts   = 4
	DefaultMaxQueueAge   = 15 * time.Second
	DefaultBackoffBase   = 200 * time.Millisecond
	DefaultBackoffMax    = 5 * time.Second
	DefaultMaxRetryAfter = 30 * time.Second
)

// Observer is told the outcome of every attempt the client makes: endpoint
// is one of the Endpoint* constants, code an HTTP status ("200", "503"), a
// gRPC code name ("OK", "Unavailable"), CodeTransportError when no answer
// came back, or CodeClientRateLimited when the local limiter refused the
// request (then dur is 0). It must be fast and safe for concurrent use.
type Observer func(endpoint, code string, dur time.Duration)

// Endpoint labels passed to an Observer.
const (
	EndpointHTTPPredictions     = "http_predictions"
	EndpointAutoscaleFunction   = "AutoscaleFunction"
	EndpointDeploymentConfigRPC = "RequestDeploymentConfiguration"
	CodeTransportError          = "transport_error"
	CodeClientRateLimited       = "client_rate_limited"
	// CodeAuthError means no token could be obtained, so nothing was sent.
	CodeAuthError = "auth_error"
)

// Config configures a Client. Zero values take the Default* constants; the
// lead maps environment variables onto these fields.
type Config struct {
	// Transport is TransportHTTP (legacy predictions PUT) or TransportGRPC
	// (nvcf.Autoscaler). Empty means HTTP.
	Transport string
	// BaseURL is the HTTP API root, e.g. https://api.nvcf.nvidia.com.
	BaseURL string
	// GRPCAddr is host:port of the nvcf.Autoscaler service.
	GRPCAddr string
	// GRPCInsecure uses plaintext gRPC (local testing); otherwise TLS.
	GRPCInsecure bool
	// GRPCTLS is the gRPC connection's TLS material: a CA (empty: the
	// system roots) and an optional client certificate. Connection errors
	// name its settings.
	GRPCTLS tlsfiles.Files
	// AccountScoped uses /v2/nvcf/accounts/{ncaId}/predictions/... and sends
	// the deployment id (HTTP only); requests then need an NcaID.
	AccountScoped bool

	// TokenFile holds a static bearer token. It is read by New and again
	// at the first call after the file changes (a rotated Kubernetes
	// secret, a swapped symlink included); a rewrite caught empty, or the
	// file gone for a moment, keeps the token read before.
	TokenFile string
	// OAuthTokenURL, OAuthClientID and OAuthClientSecretFile enable OAuth2
	// client credentials with scope autoscaler:auth; the token is cached
	// until shortly before it expires, or until the secret file changes.
	// The secret file is read like TokenFile. Mutually exclusive with
	// TokenFile.
	OAuthTokenURL         string
	OAuthClientID         string
	OAuthClientSecretFile string

	// Timeout bounds one attempt (not the whole call with its retries; the
	// caller's context bounds that).
	Timeout time.Duration
	// Rate (requests per second) and Burst size the client-side limiter.
	// Rate < 0 disables it.
	Rate  float64
	Burst int
	// MaxQueueAge is the longest a request may wait for the limiter; one
	// that would wait longer fails at once with ErrRateLimited.
	MaxQueueAge time.Duration
	// MaxAttempts bounds attempts per call on retryable failures.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the exponential back-off between
	// attempts (with jitter): base, 2*base, 4*base ... capped at max.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out inside
	// one call; a longer one ends the call with ErrRateLimited so that the
	// caller's next cycle tries again.
	MaxRetryAfter time.Duration

	// DryRun logs what would be written and returns a synthetic Result
	// without touching the network. Reads (DeploymentConfiguration) still
	// go out, so a dry run can shadow production with real policies.
	DryRun bool

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Observer, if set, sees every attempt (see Observer).
	Observer Observer
	// OnLimiterQueue, if set, is told +1 when a call starts waiting for a
	// token of the rate limiter and -1 when it stops (a gauge of the queue).
	OnLimiterQueue func(delta int)
	// OnLimiterWait, if set, is told how long each admitted attempt waited
	// for the rate limiter (0 when a token was free).
	OnLimiterWait func(d time.Duration)
	// APITLS is the HTTP API's TLS material for an https BaseURL: a CA
	// (empty: the system roots) and an optional client certificate.
	// Failed handshakes name its settings.
	APITLS tlsfiles.Files
	// OAuthTLS is the token endpoint's TLS material for an https
	// OAuthTokenURL, whatever the transport.
	OAuthTLS tlsfiles.Files
}

func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = TransportHTTP
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.MaxQueueAge <= 0 {
		c.MaxQueueAge = DefaultMaxQueueAge
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports every problem at once, naming the field and the expected
// form, so a misconfigured deployment fails at start with one message.
func (c Config) validate() error {
	var errs []error
	switch c.Transport {
	case TransportHTTP:
		if !c.DryRun {
			u, err := url.Parse(c.BaseURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("BaseURL %q: want an http(s)://host[:port] URL", c.BaseURL))
			}
		}
	case TransportGRPC:
		if !c.DryRun && c.GRPCAddr == "" {
			errs = append(errs, errors.New("GRPCAddr is empty: want host:port"))
		}
		if c.AccountScoped {
			errs = append(errs, errors.New("AccountScoped applies to the HTTP transport only"))
		}
	default:
		errs = append(errs, fmt.Errorf("Transport %q: want %q or %q", c.Transport, TransportHTTP, TransportGRPC))
	}
	oauth := c.OAuthTokenURL != "" || c.OAuthClientID != "" || c.OAuthClientSecretFile != ""
	if oauth {
		if c.TokenFile != "" {
			errs = append(errs, errors.New("TokenFile and OAuth client credentials are mutually exclusive"))
		}
		if u, err := url.Parse(c.OAuthTokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("OAuthTokenURL %q: want an http(s) URL", c.OAuthTokenURL))
		}
		if c.OAuthClientID == "" {
			errs = append(errs, errors.New("OAuthClientID is empty"))
		}
		if c.OAuthClientSecretFile == "" {
			errs = append(errs, errors.New("OAuthClientSecretFile is empty"))
		}
	}
	if c.Rate > 0 && c.Burst < 1 {
		errs = append(errs, fmt.Errorf("Burst %d: want >= 1", c.Burst))
	}
	return errors.Join(errs...)
}
