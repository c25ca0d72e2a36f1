package nvcf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"function/shared/watchfile"
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

// The variables that name the credential files: what messages name.
const (
	tokenFileSetting    = "NVCF_TOKEN_FILE"
	clientSecretSetting = "NVCF_OAUTH_CLIENT_SECRET_FILE"
)

// newSecretFile reads a credential (the static bearer token, or the OAuth
// client secret) from its file once, so that a missing or empty file fails
// New with its setting named rather than every call later, and again
// whenever the file changes, so that a rotated Kubernetes secret is used at
// the next call without a restart. A swapped symlink is a change even when
// the new file has the old one's length and modification time.
//
// A rewrite caught empty, or the file gone for a moment during a swap,
// keeps the value read before: the API or the token endpoint may still
// accept it, and a call failed for want of a credential would fail for
// nothing. Each outcome is logged once per change of the file, never once
// per call; lines and errors name the setting and the path, never the
// credential.
func newSecretFile(log *slog.Logger, path, setting, credential string) (*watchfile.Value[string], error) {
	what := credential + " file"
	f := watchfile.File{Path: path, Setting: setting, What: what}
	return watchfile.New(watchfile.Spec[string]{
		Files: []watchfile.File{f},
		Parse: watchfile.NonEmptyText(f),
		Failed: func(_ string, err error) {
			log.Warn(fmt.Sprintf("NVCF %s did not load; the %s read before is still used", what, credential),
				"credential_setting", setting, "credential_file", path, "error", err.Error())
		},
		Reloaded: func(string) {
			log.Info(fmt.Sprintf("NVCF %s read again", what), "credential_setting", setting, "credential_file", path)
		},
	})
}

// staticToken is a bearer token from a file.
type staticToken struct{ file *watchfile.Value[string] }

func (s staticToken) token(context.Context) (string, error) { return s.file.Current(), nil }

// invalidate has nothing to drop: the file is looked at (which file the
// name leads to, its size and modification time) at every call, so a token
// rotated in the file is sent at the retry right after the refusal. An
// unchanged file holds the very token just refused; reading it again would
// send it again.
func (staticToken) invalidate() {}

// clientCredentials fetches and caches an OAuth2 client-credentials token.
// The cache is ours rather than oauth2.ReuseTokenSource so that a fetch
// runs under the attempt's context (and its timeout), and so that a
// rotated client secret or a refused token drops the cached token.
type clientCredentials struct {
	base   clientcredentials.Config // without the secret
	secret *watchfile.Value[string]
	client *httpsClient

	mu     sync.Mutex
	cached *oauth2.Token
	// fetchedWith is the client secret cached was fetched with. A token
	// fetched with a secret since rotated is dropped rather than kept
	// until it expires: the rotation may have revoked it, and a wrong new
	// secret should show at the rotation, not an hour later.
	fetchedWith string
}

func newClientCredentials(cfg Config, client *httpsClient) (*clientCredentials, error) {
	secret, err := newSecretFile(cfg.Logger, cfg.OAuthClientSecretFile, clientSecretSetting, "client secret")
	if err != nil {
		return nil, err
	}
	return &clientCredentials{
		base: clientcredentials.Config{
			ClientID: cfg.OAuthClientID,
			TokenURL: cfg.OAuthTokenURL,
			Scopes:   []string{OAuthScope},
		},
		secret: secret,
		client: client,
	}, nil
}

func (c *clientCredentials) token(ctx context.Context) (string, error) {
	// Holding the lock across the fetch makes concurrent callers share one
	// token request instead of stampeding the token endpoint.
	c.mu.Lock()
	defer c.mu.Unlock()
	secret := c.secret.Current()
	if secret != c.fetchedWith {
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
	c.cached, c.fetchedWith = tok, secret
	return tok.AccessToken, nil
}

// invalidate drops the cached token, which the API refused: the next
// attempt fetches a new one. The secret file needs no forcing: it is looked
// at on every call, and a rotated secret is used for that fetch.
func (c *clientCredentials) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cached = nil
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
