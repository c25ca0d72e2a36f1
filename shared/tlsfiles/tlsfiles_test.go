package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
)

// Host verification is on unless turned off, and off it still checks the
// chain: against a TLS listener serving certs.sh's server certificate
// (issued for 127.0.0.1 and localhost), dialled under a name it lacks.
func TestHostVerification(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	pair, err := tls.LoadX509KeyPair(pem("server"), pem("server-key"))
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	dial := func(f Files, name string) error {
		cfg, err := f.Config()
		require.NoError(t, err)
		cfg.ServerName = name
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			c.Close()
		}
		return f.Explain(err)
	}
	f := Files{CAFile: pem("ca"), CASetting: "X_CA_FILE", HostSetting: "X_VERIFY_HOST"}

	require.NoError(t, dial(f, "localhost"))
	err = dial(f, "db.example")
	require.ErrorContains(t, err, "does not name the host dialled")
	require.ErrorContains(t, err, "X_VERIFY_HOST=false")

	f.SkipHostVerification = true
	require.NoError(t, dial(f, "db.example"))
	f.CAFile = pem("other-ca")
	require.ErrorContains(t, dial(f, "localhost"), `X_CA_FILE="`+pem("other-ca")+`"`)
}

// Every file error names its setting; the two halves of a pair go together.
func TestConfigNamesTheSetting(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	base := Files{CASetting: "A_CA", CertSetting: "A_CERT", KeySetting: "A_KEY"}
	for _, tc := range []struct {
		name string
		mut  func(*Files)
		want string
	}{
		{"missing CA", func(f *Files) { f.CAFile = pem("nope") }, `A_CA="` + pem("nope") + `": cannot read the CA file: no such file or directory`},
		{"CA not PEM", func(f *Files) { f.CAFile = pem("ca-key") }, "no PEM certificate in the CA file"},
		{"cert without key", func(f *Files) { f.CertFile = pem("client") }, "A_CERT and A_KEY go together"},
		{"missing cert", func(f *Files) { f.CertFile, f.KeyFile = pem("nope"), pem("client-key") }, `A_CERT="` + pem("nope") + `": cannot read the client certificate`},
		{"missing key", func(f *Files) { f.CertFile, f.KeyFile = pem("client"), pem("nope") }, `A_KEY="` + pem("nope") + `": cannot read the client key`},
		{"key of another certificate", func(f *Files) { f.CertFile, f.KeyFile = pem("client"), pem("server-key") }, "not a usable certificate and key"},
	} {
		f := base
		tc.mut(&f)
		_, err := f.Config()
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	f := base
	f.CAFile, f.CertFile, f.KeyFile = pem("ca"), pem("client"), pem("client-key")
	cfg, err := f.Config()
	require.NoError(t, err)
	require.NotNil(t, cfg.GetClientCertificate)
	// The CA file is checked by VerifyConnection, against the file as
	// it is at each handshake (see caFile).
	require.Nil(t, cfg.RootCAs)
	require.True(t, cfg.InsecureSkipVerify)
	require.NotNil(t, cfg.VerifyConnection)
}

// Errors that are not about TLS pass through untouched.
func TestExplainLeavesOtherErrorsAlone(t *testing.T) {
	require.NoError(t, Files{}.Explain(nil))
	_, err := net.Dial("tcp", "127.0.0.1:1")
	require.Equal(t, err, Files{CASetting: "A"}.Explain(err))
}

// A renewal is logged once per change of the files: a half-written one
// as a warning that names the setting and the pair still presented, a
// completed one with the new certificate's expiry. Handshakes in between
// say nothing.
func TestRenewalIsLoggedOncePerChange(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	lines := testenv.CaptureLogs(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writes := 0
	put := func(from, to string) {
		b, err := os.ReadFile(pem(from))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, b, 0o600))
		// A new mtime for every write, whatever the file system's
		// timestamp resolution.
		writes++
		at := time.Now().Add(time.Duration(writes) * time.Second)
		require.NoError(t, os.Chtimes(to, at, at))
	}
	put("client", cert)
	put("client-key", key)
	c, err := newClientCert(Files{CertFile: cert, KeyFile: key, CertSetting: "A_CERT", KeySetting: "A_KEY"})
	require.NoError(t, err)
	before := c.Current()
	first := before.Leaf.NotAfter
	require.Empty(t, lines(), "reading the pair at start is not a renewal")

	// Half a renewal: the new certificate, its key not yet written.
	put("expired-client", cert)
	require.Same(t, before, c.Current())
	c.Current()
	got := lines()
	require.Len(t, got, 1, "one line per change, not per handshake: %v", got)
	require.Equal(t, "WARN", got[0]["level"])
	require.Equal(t, "A_CERT", got[0]["certificate_setting"])
	require.Equal(t, first.Format(time.RFC3339), got[0]["previous_not_after"])
	require.Contains(t, got[0]["error"], "not a usable certificate and key")
	require.NotContains(t, fmt.Sprint(got), "PRIVATE KEY")

	// The key follows: renewed, and said once.
	put("expired-client-key", key)
	renewed := c.Current()
	c.Current()
	got = lines()
	require.Len(t, got, 1, "%v", got)
	require.Equal(t, "INFO", got[0]["level"])
	require.Equal(t, "client certificate renewed", got[0]["msg"])
	require.Equal(t, renewed.Leaf.NotAfter.Format(time.RFC3339), got[0]["not_after"])
	require.True(t, renewed.Leaf.NotAfter.Before(first), "the expired pair is the one presented now")
}

// Every failure Explain recognises matches ErrRefused, so that callers end
// a call on it instead of backing off for the same refusal; its message is
// the explanation alone and errors.As still finds what the driver
// returned. Typed errors and the text the drivers flatten them into alike.
func TestExplainedFailuresMatchErrRefused(t *testing.T) {
	f := Files{CAFile: "/ca.pem", CASetting: "X_CA_FILE", CertFile: "/client.pem", CertSetting: "X_CERT_FILE", KeySetting: "X_KEY_FILE"}
	unknown := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown authority", fmt.Errorf("Post %q: %w", "https://tsdb", unknown),
			`the server's certificate is not signed by the CA of X_CA_FILE="/ca.pem": Post "https://tsdb": tls: failed to verify certificate: x509: certificate signed by unknown authority`},
		{"client certificate refused, flattened by gRPC", errors.New(`connection error: desc = "transport: authentication handshake failed: remote error: tls: bad certificate"`),
			`the server refused the client certificate of X_CERT_FILE="/client.pem" (expired, or not signed by a CA the server trusts): connection error: desc = "transport: authentication handshake failed: remote error: tls: bad certificate"`},
		{"no TLS on the port", errors.New("tls: first record does not look like a TLS handshake"),
			"the server does not speak TLS on this port (TLS is on through X_CA_FILE): tls: first record does not look like a TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.Explain(tc.err)
			require.ErrorIs(t, err, ErrRefused)
			require.ErrorIs(t, err, tc.err)
			require.EqualError(t, err, tc.want)
		})
	}
	var cve *tls.CertificateVerificationError
	require.ErrorAs(t, f.Explain(unknown), &cve)

	_, err := net.Dial("tcp", "127.0.0.1:1")
	require.NotErrorIs(t, f.Explain(err), ErrRefused, "a connection refused is not a handshake refused")
}
