package nvcf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// endpointOAuthToken labels errors from the token endpoint.
const endpointOAuthToken = "oauth2_token"

// credentials yields the bearer token for the next attempt.
type credentials interface {
	// token returns the bearer token, "" for none. Errors never contain
	// the token or the client secret.
	token(ctx context.Context) (string, error)
	// invalidate drops whatever is cached, after the API refused it.
	invalidate()
}

type noCredentials struct{}

func (noCredentials) token(context.Context) (string, error) { return "", nil }
func (noCredentials) invalidate()                           {}

// secretFile caches a file's trimmed content and re-reads it when the
// file's modification time or size changes. Kubernetes rotates mounted
// secrets by swapping a symlink, which os.Stat follows, so a rotation is
// seen on the next call without a restart.
type secretFile struct {
	path string
	what string // "token file" or "client secret file", for errors

	mu    sync.Mutex
	value string
	mod   time.Time
	size  int64
	valid bool
}

// read returns the current content and whether it differs from the last read.
func (f *secretFile) read() (value string, changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return "", false, fmt.Errorf("stat %s %s: %w: %w", f.what, f.path, ErrUnauthorized, err)
	}
	if f.valid && fi.ModTime().Equal(f.mod) && fi.Size() == f.size {
		return f.value, false, nil
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return "", false, fmt.Errorf("read %s %s: %w: %w", f.what, f.path, ErrUnauthorized, err)
	}
	v := string(bytes.TrimSpace(raw))
	if v == "" {
		return "", false, fmt.Errorf("%s %s is empty: %w", f.what, f.path, ErrUnauthorized)
	}
	changed = !f.valid || v != f.value
	f.value, f.mod, f.size, f.valid = v, fi.ModTime(), fi.Size(), true
	return v, changed, nil
}

func (f *secretFile) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.valid = false
}

// staticToken is a bearer token from a file.
type staticToken struct{ file *secretFile }

func (s *staticToken) token(context.Context) (string, error) {
	v, _, err := s.file.read()
	return v, err
}

func (s *staticToken) invalidate() { s.file.forget() }

// clientCredentials fetches and caches an OAuth2 client-credentials token.
// The cache is ours rather than oauth2.ReuseTokenSource so that a fetch
// runs under the attempt's context (and its timeout), and so that a
// rotated client secret or a refused token drops the cached token.
type clientCredentials struct {
	base   clientcredentials.Config // without the secret
	secret *secretFile
	client *httpsClient

	mu     sync.Mutex
	cached *oauth2.Token
}

func newClientCredentials(cfg Config, client *httpsClient) *clientCredentials {
	return &clientCredentials{
		base: clientcredentials.Config{
			ClientID: cfg.OAuthClientID,
			TokenURL: cfg.OAuthTokenURL,
			Scopes:   []string{OAuthScope},
		},
		secret: &secretFile{path: cfg.OAuthClientSecretFile, what: "client secret file"},
		client: client,
	}
}

func (c *clientCredentials) token(ctx context.Context) (string, error) {
	// Holding the lock across the fetch makes concurrent callers share one
	// token request instead of stampeding the token endpoint.
	c.mu.Lock()
	defer c.mu.Unlock()
	secret, changed, err := c.secret.read()
	if err != nil {
		return "", err
	}
	if changed {
		c.cached = nil
	}
	if c.cached.Valid() { // Valid is nil-safe and renews 10 s before expiry
		return c.cached.AccessToken, nil
	}
	cfg := c.base
	cfg.ClientSecret = secret
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, c.client.http))
	if err != nil {
		var answered *oauth2.RetrieveError
		if !errors.As(err, &answered) {
			// No answer came back: a handshake the token endpoint's TLS
			// settings explain, or network trouble.
			err = c.client.explain(ctx, c.base.TokenURL, err)
		}
		return "", classifyTokenError(c.base.TokenURL, err)
	}
	c.cached = tok
	return tok.AccessToken, nil
}

func (c *clientCredentials) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cached = nil
	c.secret.forget()
}

// classifyTokenError keeps the status and the OAuth2 error code but drops
// the response body, which the token endpoint controls and which we do not
// want in logs.
func classifyTokenError(tokenURL string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		code := re.Response.StatusCode
		ae := &APIError{Endpoint: endpointOAuthToken, Code: strconv.Itoa(code)}
		if re.ErrorCode != "" {
			ae.Message = "oauth2 error " + re.ErrorCode
		}
		switch {
		case code == http.StatusTooManyRequests || code >= 500:
			ae.transient = true
			ae.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
		default:
			ae.class = ErrUnauthorized
		}
		return fmt.Errorf("fetch oauth2 token from %s: %w", tokenURL, ae)
	}
	// Network trouble: retryable like any connection error.
	return fmt.Errorf("fetch oauth2 token from %s: %w", tokenURL, err)
}
