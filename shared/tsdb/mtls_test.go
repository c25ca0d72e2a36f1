package tsdb

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tlsfiles"
)

// The TSDB client's TLS settings against a real Prometheus whose
// --web.config.file requires and verifies client certificates: the right
// certificate runs a real PromQL query; a wrong, expired or absent client
// certificate, a wrong CA and a missing key each fail with a message naming
// the setting to fix.
func TestMTLSToARealPrometheus(t *testing.T) {
	certs := testenv.Certs(t)
	prom := testenv.StartPrometheusMTLS(t, certs)
	pem := certs.PEM
	client := func(auth, ca, cert, key string) (*Client, error) {
		f := tlsfiles.Files{CASetting: "TSDB_CA_FILE", CertSetting: "TSDB_CERT_FILE", KeySetting: "TSDB_KEY_FILE", CAFile: pem(ca)}
		if cert != "" {
			f.CertFile, f.KeyFile = pem(cert), pem(key)
		}
		return New(Config{URL: prom.URL, Auth: auth, TLS: f, Timeout: 5 * time.Second, MaxAttempts: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("right certificate", func(t *testing.T) {
		c, err := client("mtls", "ca", "client", "client-key")
		require.NoError(t, err)
		require.NoError(t, c.Ping(ctx))
		series, _, err := c.Query(ctx, `vector(41) + 1`, time.Now())
		require.NoError(t, err)
		require.Len(t, series, 1)
		require.Equal(t, 42.0, series[0].Samples[len(series[0].Samples)-1].Value)
	})

	t.Run("missing key", func(t *testing.T) {
		_, err := client("mtls", "ca", "client", "no-such-key")
		require.ErrorContains(t, err, `TSDB_KEY_FILE="`+pem("no-such-key")+`": cannot read the client key: no such file or directory`)
	})

	for _, tc := range []struct {
		name, auth, ca, cert, key string
		want                      string
		// serverSays is why Prometheus refused the handshake, from its
		// log: the cause, not only the symptom the client sees.
		serverSays string
	}{
		// Go's client withholds a certificate whose issuer the server's
		// request does not list, so the server sees none.
		{"client certificate of another CA", "mtls", "ca", "other-client", "other-client-key",
			`the server refused the client certificate of TSDB_CERT_FILE="` + pem("other-client") + `"`,
			"client didn't provide a certificate"},
		{"expired client certificate", "mtls", "ca", "expired-client", "expired-client-key",
			`the server refused the client certificate of TSDB_CERT_FILE="` + pem("expired-client") + `"`,
			"x509: certificate has expired"},
		{"no client certificate", "none", "ca", "", "",
			"the server requires a client certificate: set TSDB_CERT_FILE and TSDB_KEY_FILE",
			"client didn't provide a certificate"},
		{"wrong CA", "mtls", "other-ca", "client", "client-key",
			`the server's certificate is not signed by the CA of TSDB_CA_FILE="` + pem("other-ca") + `"`,
			"remote error: tls: bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fileSize(t, prom.Log)
			c, err := client(tc.auth, tc.ca, tc.cert, tc.key)
			require.NoError(t, err)
			_, _, err = c.Query(ctx, `vector(1)`, time.Now())
			require.ErrorContains(t, err, tc.want)
			// The server logs the refusal as it answers; give it a moment.
			require.Eventually(t, func() bool {
				b, err := os.ReadFile(prom.Log)
				return err == nil && strings.Contains(string(b[before:]), tc.serverSays)
			}, 5*time.Second, 20*time.Millisecond, "prometheus's log should say %q", tc.serverSays)
		})
	}
}

// A renewed client certificate is used from the next connection on, without
// a restart, against the same real Prometheus: renewed in place (the
// certificate written before its key) and the way a Kubernetes secret
// volume renews it (a symlink swapped to a new directory). Each step opens
// a new connection, and the server's log says which certificate it saw.
func TestRenewedClientCertificateToARealPrometheus(t *testing.T) {
	certs := testenv.Certs(t)
	prom := testenv.StartPrometheusMTLS(t, certs)
	pem := certs.PEM
	// mount/tls.crt -> ..data/tls.crt, ..data -> ..v1: a secret volume.
	mount := t.TempDir()
	put := func(dir, cert, key string) {
		require.NoError(t, os.MkdirAll(filepath.Join(mount, dir), 0o700))
		if cert != "" {
			copyFile(t, pem(cert), filepath.Join(mount, dir, "tls.crt"))
		}
		if key != "" {
			copyFile(t, pem(key), filepath.Join(mount, dir, "tls.key"))
		}
	}
	swap := func(dir string) {
		tmp := filepath.Join(mount, "..data_tmp")
		require.NoError(t, os.Symlink(dir, tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(mount, "..data")))
	}
	put("..v1", "client", "client-key")
	swap("..v1")
	for _, name := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(mount, name)))
	}
	f := tlsfiles.Files{CASetting: "TSDB_CA_FILE", CertSetting: "TSDB_CERT_FILE", KeySetting: "TSDB_KEY_FILE",
		CAFile: pem("ca"), CertFile: filepath.Join(mount, "tls.crt"), KeyFile: filepath.Join(mount, "tls.key")}
	c, err := New(Config{URL: prom.URL, Auth: "mtls", TLS: f, Timeout: 5 * time.Second, MaxAttempts: 1})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	query := func() error {
		c.http.CloseIdleConnections() // the next query handshakes anew
		_, _, err := c.Query(ctx, `vector(1)`, time.Now())
		return err
	}

	require.NoError(t, query(), "the first pair")

	// Half a renewal: the new (expired) certificate is written, its key
	// not yet. The pair does not load; the last good one goes on working.
	put("..v1", "expired-client", "")
	require.NoError(t, query(), "a half-written renewal keeps the last good pair")

	// The key follows: the new pair is used, and refused by the server
	// for the reason its log gives.
	before := fileSize(t, prom.Log)
	put("..v1", "", "expired-client-key")
	require.ErrorContains(t, query(), `the server refused the client certificate of TSDB_CERT_FILE="`+f.CertFile+`"`)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(prom.Log)
		return err == nil && strings.Contains(string(b[before:]), "x509: certificate has expired")
	}, 5*time.Second, 20*time.Millisecond, "prometheus should have seen the expired certificate")

	// Renewed as a secret volume renews: a new directory, the symlink
	// swapped in one rename.
	put("..v2", "client", "client-key")
	swap("..v2")
	require.NoError(t, query(), "the pair behind the swapped symlink")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}
