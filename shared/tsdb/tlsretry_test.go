package tsdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tlsfiles"
)

// A handshake refused over certificates ends the query at its first
// attempt, since the same files and the same server refuse it again at
// once; a connection refused on the same https URL is still tried
// MaxAttempts times. Both stay Retryable: the files are read again when
// they change, so a later query can succeed.
func TestRefusedHandshakeIsNotRetriedWithinAQuery(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	// httptest's own certificate, which certs.sh's CA did not sign.
	unknownCA := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(okBody))
	}))
	t.Cleanup(unknownCA.Close)
	// certs.sh's server certificate, requiring a client certificate of
	// its CA.
	mutual := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(okBody))
	}))
	pair, err := tls.LoadX509KeyPair(pem("server"), pem("server-key"))
	require.NoError(t, err)
	caPEM, err := os.ReadFile(pem("ca"))
	require.NoError(t, err)
	clientCAs := x509.NewCertPool()
	require.True(t, clientCAs.AppendCertsFromPEM(caPEM))
	mutual.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	mutual.StartTLS()
	t.Cleanup(mutual.Close)
	// certs.sh's certificate of that name, and no client authentication.
	serveTLS := func(cert string, h http.Handler) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		pair, err := tls.LoadX509KeyPair(pem(cert), pem(cert+"-key"))
		require.NoError(t, err)
		s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	byName := func(s *httptest.Server) string { return strings.Replace(s.URL, "127.0.0.1", "localhost", 1) }
	cnOnly := serveTLS("cn-only-server", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(okBody))
	}))
	// Sends every query on to its own IP address: the same server, reached
	// with no host name in the handshake to check its certificate against.
	var toAddress *httptest.Server
	toAddress = serveTLS("server", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, toAddress.URL+r.URL.Path, http.StatusFound)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "https://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	files := tlsfiles.Files{CAFile: pem("ca"), CASetting: "TSDB_CA_FILE", CertSetting: "TSDB_CERT_FILE", KeySetting: "TSDB_KEY_FILE"}
	foreignClient := files
	foreignClient.CertFile, foreignClient.KeyFile = pem("other-client"), pem("other-client-key")
	for _, tc := range []struct {
		name     string
		url      string
		files    tlsfiles.Files
		attempts int
		want     string
	}{
		{"server certificate of an unknown CA", unknownCA.URL, files, 1,
			`the server's certificate is not signed by the CA of TSDB_CA_FILE="` + pem("ca") + `"`},
		{"client certificate refused", mutual.URL, foreignClient, 1,
			`the server refused the client certificate of TSDB_CERT_FILE="` + pem("other-client") + `"`},
		{"server certificate naming its host in the Common Name alone", byName(cnOnly), files, 1,
			"the server's certificate names its host in the Common Name alone"},
		{"redirected to an IP address", byName(toAddress), files, 1,
			"the handshake came with no host name to check the server's certificate against"},
		{"nothing listening", closed, files, 3, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			c, err := New(Config{URL: tc.url, TLS: tc.files, MaxAttempts: 3, MaxBackoff: 20 * time.Millisecond, Timeout: 5 * time.Second,
				Observer: func(string, string, time.Duration) { sent.Add(1) }})
			require.NoError(t, err)
			_, _, err = c.Query(context.Background(), "vector(1)", time.Now())
			require.ErrorContains(t, err, tc.want)
			var qe *QueryError
			require.ErrorAs(t, err, &qe)
			require.Equal(t, tc.attempts, qe.Attempts, "%v", err)
			require.Equal(t, int64(tc.attempts), sent.Load(), "attempts made")
			require.True(t, Retryable(err), "a later query, after the fix, can succeed")
			t.Log(err)
		})
	}
}
