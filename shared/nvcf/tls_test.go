package nvcf

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/testenv"
	"function/shared/tlsfiles"
)

// startTLSSim starts a simulator serving gRPC (grpc) or HTTP over TLS with
// certs' certificate cert; with clientCA it requires client certificates
// signed by that CA of certs.
func startTLSSim(t *testing.T, certs testenv.CertDir, cert, clientCA string, grpc bool) *nvcfsim.Server {
	t.Helper()
	if clientCA != "" {
		clientCA = certs.PEM(clientCA)
	}
	tc, err := nvcfsim.ServerTLS(certs.PEM(cert), certs.PEM(cert+"-key"), clientCA)
	require.NoError(t, err)
	opts := nvcfsim.Options{HTTPTLS: tc}
	if grpc {
		opts = nvcfsim.Options{GRPCTLS: tc}
	}
	sim, err := nvcfsim.Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sim.Close(context.Background())) })
	sim.Register(nvcfsim.FunctionVersion{FunctionID: fid, VersionID: vid, NcaID: "nca-1",
		Specs: []nvcfsim.DeploymentSpec{{GPU: "L40", MinInstances: 0, MaxInstances: 5}}})
	return sim
}

// tlsFiles names certs' files ca, cert and key (no client certificate
// without cert) under the settings PREFIX_CA_FILE, PREFIX_CERT_FILE and
// PREFIX_KEY_FILE.
func tlsFiles(certs testenv.CertDir, prefix, ca, cert, key string) tlsfiles.Files {
	f := tlsfiles.Files{CAFile: certs.PEM(ca), CASetting: prefix + "_CA_FILE", CertSetting: prefix + "_CERT_FILE", KeySetting: prefix + "_KEY_FILE"}
	if cert != "" {
		f.CertFile, f.KeyFile = certs.PEM(cert), certs.PEM(key)
	}
	return f
}

// openTLSClient makes one attempt per call, so each failure is the
// handshake's own.
func openTLSClient(t *testing.T, cfg Config) (*Client, error) {
	cfg.Timeout, cfg.MaxAttempts, cfg.Logger = 5*time.Second, 1, slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

func writeThree(c *Client) error {
	_, err := c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid, Instances: 3})
	return err
}

// gRPC over TLS against the simulator's TLS server: the right CA (and,
// where the server verifies clients, the right client certificate) writes;
// a wrong CA, an expired server or client certificate, a client certificate
// the server does not trust and a missing key each fail with a message that
// names the setting to fix.
func TestGRPCTLSToTheSimulator(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	serverOnly := startTLSSim(t, certs, "server", "", true)
	mutual := startTLSSim(t, certs, "server", "ca", true)
	expired := startTLSSim(t, certs, "expired-server", "", true)
	files := func(ca, cert, key string) tlsfiles.Files { return tlsFiles(certs, "NVCF_GRPC", ca, cert, key) }
	client := func(sim *nvcfsim.Server, f tlsfiles.Files) (*Client, error) {
		return openTLSClient(t, Config{Transport: TransportGRPC, GRPCAddr: sim.GRPCAddr(), GRPCTLS: f})
	}
	write := writeThree

	t.Run("right CA", func(t *testing.T) {
		c, err := client(serverOnly, files("ca", "", ""))
		require.NoError(t, err)
		require.NoError(t, write(c))
		require.Len(t, serverOnly.Writes(), 1)
	})
	t.Run("right CA and client certificate", func(t *testing.T) {
		c, err := client(mutual, files("ca", "client", "client-key"))
		require.NoError(t, err)
		require.NoError(t, write(c))
		require.Len(t, mutual.Writes(), 1)
	})
	t.Run("missing key", func(t *testing.T) {
		_, err := client(mutual, files("ca", "client", "no-such-key"))
		require.ErrorContains(t, err, `NVCF_GRPC_KEY_FILE="`+pem("no-such-key")+`": cannot read the client key: no such file or directory`)
	})
	for _, tc := range []struct {
		name  string
		sim   *nvcfsim.Server
		files tlsfiles.Files
		want  string
	}{
		{"wrong CA", serverOnly, files("other-ca", "", ""),
			`the server's certificate is not signed by the CA of NVCF_GRPC_CA_FILE="` + pem("other-ca") + `"`},
		{"expired server certificate", expired, files("ca", "", ""),
			"the server's certificate has expired or is not yet valid"},
		{"expired client certificate", mutual, files("ca", "expired-client", "expired-client-key"),
			`the server refused the client certificate of NVCF_GRPC_CERT_FILE="` + pem("expired-client") + `"`},
		{"client certificate of another CA", mutual, files("ca", "other-client", "other-client-key"),
			`the server refused the client certificate of NVCF_GRPC_CERT_FILE="` + pem("other-client") + `"`},
		{"no client certificate", mutual, files("ca", "", ""),
			"the server requires a client certificate: set NVCF_GRPC_CERT_FILE and NVCF_GRPC_KEY_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.sim.Writes())
			c, err := client(tc.sim, tc.files)
			require.NoError(t, err)
			err = write(c)
			require.ErrorIs(t, err, ErrUnavailable)
			require.ErrorContains(t, err, tc.want)
			require.Len(t, tc.sim.Writes(), before, "nothing reached the API")
			t.Log(err)
		})
	}
}

// The HTTP API and the OAuth2 token endpoint over TLS against the
// simulator, each behind a CA of its own (a self-hosted control plane may
// run them apart): the right CAs (and client certificates where the
// listener requires them) fetch a token and write; each failure names the
// setting of the endpoint that failed, never reaches the API, and is
// retryable (the bucket answers 503 and the write is made again, once the
// deployment is fixed).
func TestHTTPSAndOAuthTLSToTheSimulator(t *testing.T) {
	apiCerts, authCerts := testenv.Certs(t), testenv.Certs(t)
	api := startTLSSim(t, apiCerts, "server", "", false)
	mutualAPI := startTLSSim(t, apiCerts, "server", "ca", false)
	// The token endpoint is a simulator of its own, under the other CA,
	// requiring client certificates of that CA.
	auth := startTLSSim(t, authCerts, "server", "ca", false)
	const token = "jwt-over-tls-7d1e"
	auth.SetOAuthClient("autoscaler", "client-secret-9f2", token)
	secret := filepath.Join(t.TempDir(), "client-secret")
	require.NoError(t, os.WriteFile(secret, []byte("client-secret-9f2\n"), 0o600))

	apiFiles := func(certs testenv.CertDir, ca, cert string) tlsfiles.Files {
		return tlsFiles(certs, "NVCF_API", ca, cert, cert+"-key")
	}
	authFiles := func(certs testenv.CertDir, ca, cert string) tlsfiles.Files {
		return tlsFiles(certs, "NVCF_OAUTH", ca, cert, cert+"-key")
	}
	client := func(sim *nvcfsim.Server, apiTLS, oauthTLS tlsfiles.Files, oauth bool) (*Client, error) {
		cfg := Config{Transport: TransportHTTP, BaseURL: sim.HTTPURL(), APITLS: apiTLS}
		if oauth {
			cfg.OAuthTokenURL, cfg.OAuthClientID, cfg.OAuthClientSecretFile = auth.HTTPURL()+nvcfsim.OAuthTokenPath, "autoscaler", secret
			cfg.OAuthTLS = oauthTLS
			sim.SetAcceptedTokens(token)
		}
		return openTLSClient(t, cfg)
	}
	write := writeThree

	t.Run("right CA", func(t *testing.T) {
		c, err := client(api, apiFiles(apiCerts, "ca", ""), tlsfiles.Files{}, false)
		require.NoError(t, err)
		require.NoError(t, write(c))
		require.Len(t, api.Writes(), 1)
	})
	t.Run("client certificate and a token from a mutual-TLS token endpoint", func(t *testing.T) {
		c, err := client(mutualAPI, apiFiles(apiCerts, "ca", "client"), authFiles(authCerts, "ca", "client"), true)
		require.NoError(t, err)
		require.NoError(t, write(c))
		require.Len(t, mutualAPI.Writes(), 1)
		require.Equal(t, 1, auth.TokenFetches())
	})
	t.Run("missing CA file", func(t *testing.T) {
		_, err := client(api, apiFiles(apiCerts, "no-such-ca", ""), tlsfiles.Files{}, false)
		require.ErrorContains(t, err, `NVCF_API_CA_FILE="`+apiCerts.PEM("no-such-ca")+`": cannot read the CA file: no such file or directory`)
		_, err = client(api, apiFiles(apiCerts, "ca", ""), authFiles(authCerts, "ca", "no-such-client"), true)
		require.ErrorContains(t, err, `NVCF_OAUTH_CERT_FILE="`+authCerts.PEM("no-such-client")+`": cannot read the client certificate`)
	})
	for _, tc := range []struct {
		name      string
		sim       *nvcfsim.Server
		api, auth tlsfiles.Files
		oauth     bool
		want      string
	}{
		{"API behind an unknown CA", api, apiFiles(apiCerts, "other-ca", ""), tlsfiles.Files{}, false,
			`the server's certificate is not signed by the CA of NVCF_API_CA_FILE="` + apiCerts.PEM("other-ca") + `"`},
		{"API CA left to the system roots", api, tlsfiles.Files{CASetting: "NVCF_API_CA_FILE"}, tlsfiles.Files{}, false,
			"the server's certificate is not signed by the CA of NVCF_API_CA_FILE (system roots)"},
		{"API requires a client certificate", mutualAPI, apiFiles(apiCerts, "ca", ""), tlsfiles.Files{}, false,
			"the server requires a client certificate: set NVCF_API_CERT_FILE and NVCF_API_KEY_FILE"},
		{"API refuses a client certificate of another CA", mutualAPI, apiFiles(apiCerts, "ca", "other-client"), tlsfiles.Files{}, false,
			`the server refused the client certificate of NVCF_API_CERT_FILE="` + apiCerts.PEM("other-client") + `"`},
		// The API's CA given for the token endpoint: the mistake of an
		// operator who thinks one CA setting covers both.
		{"token endpoint behind another CA", api, apiFiles(apiCerts, "ca", ""), authFiles(apiCerts, "ca", "client"), true,
			`the server's certificate is not signed by the CA of NVCF_OAUTH_CA_FILE="` + apiCerts.PEM("ca") + `"`},
		{"token endpoint requires a client certificate", api, apiFiles(apiCerts, "ca", ""), authFiles(authCerts, "ca", ""), true,
			"the server requires a client certificate: set NVCF_OAUTH_CERT_FILE and NVCF_OAUTH_KEY_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, fetched := len(tc.sim.Writes()), auth.TokenFetches()
			c, err := client(tc.sim, tc.api, tc.auth, tc.oauth)
			require.NoError(t, err)
			err = write(c)
			require.ErrorContains(t, err, tc.want)
			require.True(t, Retryable(err), "a deployment fixed meanwhile makes the retry write: %v", err)
			require.Len(t, tc.sim.Writes(), before, "nothing reached the API")
			require.Equal(t, fetched, auth.TokenFetches(), "no token was issued")
			t.Log(err)
		})
	}
}

// A handshake refused over certificates ends the call at its first
// attempt, over either transport and at the token endpoint: the same files
// and the same server refuse it again at once. A connection refused is
// still tried MaxAttempts times. Every one stays Retryable, so the event
// is redelivered: the files are read again when they change, and a
// redelivery after the fix writes.
func TestRefusedHandshakeIsNotRetriedWithinACall(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	httpSim := startTLSSim(t, certs, "server", "ca", false)
	grpcSim := startTLSSim(t, certs, "server", "ca", true)
	// A server whose certificate names localhost in its Common Name alone,
	// dialled by that name: gRPC flattens the handshake error into text.
	cnOnlySim := startTLSSim(t, certs, "cn-only-server", "ca", true)
	cnOnlyByName := strings.Replace(cnOnlySim.GRPCAddr(), "127.0.0.1", "localhost", 1)
	// No client is registered at the token endpoint: the handshake fails
	// before the secret is sent.
	secret := filepath.Join(t.TempDir(), "client-secret")
	require.NoError(t, os.WriteFile(secret, []byte("client-secret-4c1\n"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	api := func(ca, cert string) tlsfiles.Files { return tlsFiles(certs, "NVCF_API", ca, cert, cert+"-key") }
	grpcFiles := func(ca, cert string) tlsfiles.Files { return tlsFiles(certs, "NVCF_GRPC", ca, cert, cert+"-key") }
	overHTTP := func(url string, f tlsfiles.Files) Config {
		return Config{Transport: TransportHTTP, BaseURL: url, APITLS: f}
	}
	overGRPC := func(addr string, f tlsfiles.Files) Config {
		return Config{Transport: TransportGRPC, GRPCAddr: addr, GRPCTLS: f}
	}
	tokenFrom := func(f tlsfiles.Files) Config {
		cfg := overHTTP(httpSim.HTTPURL(), api("ca", "client"))
		cfg.OAuthTokenURL, cfg.OAuthClientID, cfg.OAuthClientSecretFile = httpSim.HTTPURL()+nvcfsim.OAuthTokenPath, "autoscaler", secret
		cfg.OAuthTLS = f
		return cfg
	}
	for _, tc := range []struct {
		name     string
		cfg      Config
		attempts int
		want     string
	}{
		{"HTTP API behind an unknown CA", overHTTP(httpSim.HTTPURL(), api("other-ca", "client")), 1,
			`the server's certificate is not signed by the CA of NVCF_API_CA_FILE="` + pem("other-ca") + `"`},
		{"HTTP API refuses the client certificate", overHTTP(httpSim.HTTPURL(), api("ca", "other-client")), 1,
			`the server refused the client certificate of NVCF_API_CERT_FILE="` + pem("other-client") + `"`},
		{"HTTP API not listening", overHTTP("https://"+closed, api("ca", "client")), 3, "connection refused"},
		{"token endpoint behind an unknown CA", tokenFrom(tlsFiles(certs, "NVCF_OAUTH", "other-ca", "client", "client-key")), 1,
			`the server's certificate is not signed by the CA of NVCF_OAUTH_CA_FILE="` + pem("other-ca") + `"`},
		{"gRPC behind an unknown CA", overGRPC(grpcSim.GRPCAddr(), grpcFiles("other-ca", "client")), 1,
			`the server's certificate is not signed by the CA of NVCF_GRPC_CA_FILE="` + pem("other-ca") + `"`},
		{"gRPC refuses the client certificate", overGRPC(grpcSim.GRPCAddr(), grpcFiles("ca", "other-client")), 1,
			`the server refused the client certificate of NVCF_GRPC_CERT_FILE="` + pem("other-client") + `"`},
		{"gRPC server certificate naming its host in the Common Name alone", overGRPC(cnOnlyByName, grpcFiles("ca", "client")), 1,
			"the server's certificate names its host in the Common Name alone"},
		{"gRPC not listening", overGRPC(closed, grpcFiles("ca", "client")), 3, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			cfg := tc.cfg
			cfg.Timeout, cfg.MaxAttempts, cfg.BackoffBase, cfg.Logger, cfg.Observer = 5*time.Second, 3, time.Millisecond, slog.New(slog.DiscardHandler), rec.observe
			c, err := New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			before := len(httpSim.Writes()) + len(grpcSim.Writes()) + len(cnOnlySim.Writes())
			err = writeThree(c)
			require.ErrorContains(t, err, tc.want)
			require.Len(t, rec.codes(), tc.attempts, "attempts made: %v", err)
			require.True(t, Retryable(err), "a redelivery after the fix can write: %v", err)
			if cfg.Transport == TransportGRPC {
				var ae *APIError
				require.ErrorAs(t, err, &ae, "the gRPC answer stays reachable")
				require.Equal(t, "Unavailable", ae.Code)
			}
			require.Equal(t, before, len(httpSim.Writes())+len(grpcSim.Writes())+len(cnOnlySim.Writes()), "nothing reached the API")
			t.Log(err)
		})
	}
}
