package nvcf

import (
	"errors"
	"fmt"
	"time"

	"function/shared/tlsfiles"
)

// Error classes. Errors returned by Client wrap at most a few of them;
// test with errors.Is.
var (
	// ErrNotFound: the function version does not exist (HTTP 404, gRPC
	// NotFound = FUNCTION_NOT_FOUND). Retrying will not help; the caller
	// should remember it instead of asking again every cycle.
	ErrNotFound = errors.New("nvcf: function not found")
	// ErrBeyondLimits: the request was rejected as outside the function's
	// limits (HTTP 400/422, gRPC InvalidArgument =
	// INSTANCE_REQUEST_BEYOND_LIMITS).
	ErrBeyondLimits = errors.New("nvcf: instance request beyond limits")
	// ErrRateLimited: the client-side limiter refused to queue the request
	// for longer than MaxQueueAge, or the server asked to come back later
	// than MaxRetryAfter. A later cycle can succeed.
	ErrRateLimited = errors.New("nvcf: rate limited")
	// ErrUnavailable: every attempt failed with a transient error (429,
	// 5xx, gRPC Unavailable, timeouts, connection errors). See
	// ExhaustedError for the attempt count.
	ErrUnavailable = errors.New("nvcf: api unavailable")
	// ErrUnauthorized: the API refused the credentials (HTTP 401/403, gRPC
	// Unauthenticated/PermissionDenied) or no token could be obtained.
	ErrUnauthorized = errors.New("nvcf: unauthorized")
	// ErrUnsupported: the configured transport cannot do this (e.g.
	// DeploymentConfiguration over HTTP).
	ErrUnsupported = errors.New("nvcf: not supported by transport")
	// ErrInvalidRequest: the request could not be sent as given (e.g. an
	// account-scoped write without an NCA id).
	ErrInvalidRequest = errors.New("nvcf: invalid request")
)

// APIError is one answer of the NVCF API other than success. It wraps the
// class (ErrNotFound, ...) it maps to, if any.
type APIError struct {
	// Endpoint is one of the Endpoint* constants.
	Endpoint string
	// Code is the HTTP status ("503") or the gRPC code name ("Unavailable").
	Code string
	// Message is the server's explanation, truncated; it never holds our
	// credentials because we never send them in a body.
	Message string
	// RetryAfter is the server's requested wait (Retry-After header or gRPC
	// RetryInfo), 0 if none.
	RetryAfter time.Duration

	class     error
	transient bool
	// cause is what the client saw behind the answer when that is more
	// than the code: a handshake refused over certificates, which gRPC
	// reports as Unavailable (see grpcTransport.explain).
	cause error
}

// Error names the endpoint, the code and the server's message.
func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("nvcf %s answered %s", e.Endpoint, e.Code)
	}
	return fmt.Sprintf("nvcf %s answered %s: %s", e.Endpoint, e.Code, e.Message)
}

// Unwrap returns the error class, so errors.Is(err, ErrNotFound) works,
// and the cause the client saw, if any (tlsfiles.ErrRefused for a refused
// handshake).
func (e *APIError) Unwrap() []error {
	var out []error
	for _, err := range []error{e.class, e.cause} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// ExhaustedError is returned when every allowed attempt failed with a
// transient error. It matches ErrUnavailable and whatever the last attempt's
// error matches (e.g. ErrRateLimited after repeated 429s).
type ExhaustedError struct {
	Endpoint string
	Attempts int
	Last     error
}

// Error gives the attempt count and the last failure, which names the
// endpoint.
func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("gave up after %d attempts: %v", e.Attempts, e.Last)
}

// Unwrap exposes both ErrUnavailable and the last attempt's error.
func (e *ExhaustedError) Unwrap() []error { return []error{ErrUnavailable, e.Last} }

// Retryable tells whether trying the same call again later can succeed.
// The caller uses it to choose between acknowledging an event (false) and
// asking Knative to redeliver it (true). Unknown errors count as retryable
// because most unclassified failures here are network trouble. A refused
// TLS handshake (tlsfiles.ErrRefused) is retryable here though transient
// says it is not: the CA and client certificate files are read again when
// they change, so a redelivery after the fix can write.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRateLimited) {
		return true
	}
	for _, permanent := range []error{ErrNotFound, ErrBeyondLimits, ErrUnauthorized, ErrUnsupported, ErrInvalidRequest} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.transient
	}
	return true
}

// transient tells whether another attempt within the same call may help.
// Unlike Retryable, a cancelled or expired caller context ends the call,
// and so does a TLS handshake refused over certificates: the same files
// and the same server refuse it again at once, whatever the back-off.
func transient(err error) bool {
	if errors.Is(err, tlsfiles.ErrRefused) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.transient
	}
	for _, permanent := range []error{ErrNotFound, ErrBeyondLimits, ErrUnauthorized, ErrUnsupported, ErrInvalidRequest, ErrRateLimited} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	// Connection refused/reset, per-attempt timeouts and the like.
	return true
}

// retryAfter is the server's requested wait carried by err, if any.
func retryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// ctxError reports why the caller's context ended, keeping the last
// attempt's error for context without letting its class leak into
// errors.Is (the call did not fail for that reason).
func ctxError(endpoint string, attempts int, ctxErr, last error) error {
	if last == nil {
		return fmt.Errorf("nvcf %s: %w", endpoint, ctxErr)
	}
	return fmt.Errorf("nvcf %s: %w after %d attempts (last error: %v)", endpoint, ctxErr, attempts, last)
}
