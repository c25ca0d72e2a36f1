package nvcf

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"function/shared/tlsfiles"
)

// httpsClient carries requests to one HTTP endpoint of the control plane
// (the predictions API or the OAuth2 token endpoint), each with TLS
// material of its own: a self-hosted control plane may put them behind
// different private CAs, and only one of them may ask for a client
// certificate.
type httpsClient struct {
	http  *http.Client
	files tlsfiles.Files
	tls   *tls.Config
}

// newHTTPSClient reads files once, so that a missing or unusable file fails
// New with its setting named rather than every write. rawURL is the one
// URL the client serves (empty when unused): an IP address there is bound
// for host verification (tlsfiles.ForURLHost).
func newHTTPSClient(files tlsfiles.Files, rawURL string) (*httpsClient, error) {
	cfg, err := files.Config()
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(rawURL); err == nil {
		cfg = tlsfiles.ForURLHost(cfg, u.Hostname())
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &httpsClient{http: &http.Client{Transport: tr}, files: files, tls: cfg}, nil
}

// explain puts the setting to fix in front of a failed request to rawURL
// when the failure is TLS's (see tlsfiles.Files.Diagnose); errors of plain
// http URLs pass unchanged. The result still wraps err, so a connection
// error stays one for the retry logic.
func (c *httpsClient) explain(ctx context.Context, rawURL string, err error) error {
	u, perr := url.Parse(rawURL)
	if err == nil || perr != nil || u.Scheme != "https" {
		return err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	return c.files.Diagnose(ctx, addr, c.tls, err)
}

// closeIdle drops kept-alive connections (on Close).
func (c *httpsClient) closeIdle() { c.http.CloseIdleConnections() }

// newHTTPSClients builds the API's and the token endpoint's clients.
func newHTTPSClients(cfg Config) (api, token *httpsClient, err error) {
	if api, err = newHTTPSClient(cfg.APITLS, cfg.BaseURL); err != nil {
		return nil, nil, fmt.Errorf("nvcf api tls: %w", err)
	}
	if token, err = newHTTPSClient(cfg.OAuthTLS, cfg.OAuthTokenURL); err != nil {
		return nil, nil, fmt.Errorf("nvcf oauth2 token endpoint tls: %w", err)
	}
	return api, token, nil
}
