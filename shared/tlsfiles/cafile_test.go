package tlsfiles

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
)

// testCA is a CA of certs.sh and the server certificate it signed, for
// localhost and 127.0.0.1.
type testCA struct {
	pem    []byte
	server tls.Certificate
}

// testCAs are two unrelated CAs from a fresh certs.sh directory: ca and
// other-ca, each with the server certificate it signed.
func testCAs(t *testing.T) (a, b testCA) {
	t.Helper()
	certs := testenv.Certs(t)
	load := func(ca, server string) testCA {
		data, err := os.ReadFile(certs.PEM(ca))
		require.NoError(t, err)
		pair, err := tls.LoadX509KeyPair(certs.PEM(server), certs.PEM(server+"-key"))
		require.NoError(t, err)
		return testCA{pem: data, server: pair}
	}
	return load("ca", "server"), load("other-ca", "other-server")
}

// switchServer is a TLS echo server on 127.0.0.1 whose certificate the
// test chooses before each dial.
type switchServer struct {
	ln   net.Listener
	cert atomic.Pointer[tls.Certificate]
}

func startSwitchServer(t *testing.T) *switchServer {
	t.Helper()
	s := &switchServer{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
	})
	require.NoError(t, err)
	s.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return s
}

// dial serves cert and completes a handshake with cfg; the error is
// f.Explain's, as an operator would read it.
func (s *switchServer) dial(f Files, cfg *tls.Config, cert tls.Certificate) (*tls.Conn, error) {
	s.cert.Store(&cert)
	c, err := tls.Dial("tcp", s.ln.Addr().String(), cfg)
	return c, f.Explain(err)
}

func (s *switchServer) check(t *testing.T, f Files, cfg *tls.Config, cert tls.Certificate) error {
	t.Helper()
	c, err := s.dial(f, cfg, cert)
	if err == nil {
		c.Close()
	}
	return err
}

// writeCA replaces path's contents in place (the same file, truncated
// and written), stamped with a time of the test's choosing whatever the
// file system's timestamp resolution.
func writeCA(t *testing.T, path string, data []byte, at time.Time) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o644))
	require.NoError(t, os.Chtimes(path, at, at))
}

// caRotation is the set-up of the rotation tests: CAs a and b, a server
// that can present either's certificate, and a configuration from a CA
// file at path that holds a's certificate.
type caRotation struct {
	a, b testCA
	srv  *switchServer
	path string
	f    Files
	cfg  *tls.Config
	at   time.Time // the CA file's latest modification time
}

func newCARotation(t *testing.T) *caRotation {
	t.Helper()
	r := &caRotation{srv: startSwitchServer(t)}
	r.a, r.b = testCAs(t)
	r.path = filepath.Join(t.TempDir(), "ca.pem")
	r.at = time.Now().Add(-time.Hour)
	writeCA(t, r.path, r.a.pem, r.at)
	r.f = Files{CAFile: r.path, CASetting: "X_CA_FILE", HostSetting: "X_VERIFY_HOST"}
	var err error
	r.cfg, err = r.f.Config()
	require.NoError(t, err)
	return r
}

// rewrite replaces the CA file in place, a second later than before.
func (r *caRotation) rewrite(t *testing.T, data []byte) {
	t.Helper()
	r.at = r.at.Add(time.Second)
	writeCA(t, r.path, data, r.at)
}

// A CA file rewritten in place is used for the next handshake without a
// new configuration: before, a server of the new CA is refused with the
// error Explain names the setting for; after, it passes and the old CA's
// server is refused. A connection opened before the rewrite keeps working.
// On a configuration that read the CA file once, the handshake after the
// rewrite fails.
func TestCAFileRewrittenInPlaceIsReadAgain(t *testing.T) {
	r := newCARotation(t)
	f, cfg, srv, a, b := r.f, r.cfg, r.srv, r.a, r.b
	cfg.ServerName = "localhost"

	open, err := srv.dial(f, cfg, a.server)
	require.NoError(t, err)
	defer open.Close()
	err = srv.check(t, f, cfg, b.server)
	require.ErrorContains(t, err, "certificate signed by unknown authority")
	require.ErrorContains(t, err, `not signed by the CA of X_CA_FILE="`+r.path+`"`)

	r.rewrite(t, b.pem)
	require.NoError(t, srv.check(t, f, cfg, b.server), "the rewritten CA file verifies the next handshake")
	require.ErrorContains(t, srv.check(t, f, cfg, a.server), "certificate signed by unknown authority")

	_, err = open.Write([]byte("x"))
	require.NoError(t, err)
	got := make([]byte, 1)
	_, err = io.ReadFull(open, got)
	require.NoError(t, err, "a connection made before the rewrite is not verified again")
}

// A Kubernetes secret or ConfigMap volume updates by pointing a symlink
// at a new directory. The new file is seen even with the old one's size
// and modification time.
func TestCAFileSymlinkSwapIsReadAgain(t *testing.T) {
	a, b := testCAs(t)
	// Same size, to leave only the file's identity to tell them apart.
	for len(a.pem) < len(b.pem) {
		a.pem = append(a.pem, '\n')
	}
	for len(b.pem) < len(a.pem) {
		b.pem = append(b.pem, '\n')
	}
	srv := startSwitchServer(t)
	dir := t.TempDir()
	at := time.Now().Add(-time.Minute)
	for name, ca := range map[string]testCA{"..v1": a, "..v2": b} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		writeCA(t, filepath.Join(dir, name, "ca.crt"), ca.pem, at)
	}
	require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	path := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.Symlink(filepath.Join("..data", "ca.crt"), path))
	f := Files{CAFile: path, CASetting: "X_CA_FILE"}
	cfg, err := f.Config()
	require.NoError(t, err)
	cfg.ServerName = "localhost"
	require.NoError(t, srv.check(t, f, cfg, a.server))

	// kubelet's swap: a new link renamed over the old one.
	require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	require.NoError(t, srv.check(t, f, cfg, b.server))
	require.ErrorContains(t, srv.check(t, f, cfg, a.server), "certificate signed by unknown authority")
}

// A rewrite that does not load leaves the CAs read before in use, and is
// said once per change of the file, as a warning naming the setting and
// the file; a rewrite that loads is said once, with its number of
// certificates.
func TestBrokenCAFileKeepsTheLastGoodPool(t *testing.T) {
	logs := testenv.CaptureLogs(t)
	r := newCARotation(t)
	f, cfg, srv, a, b, path := r.f, r.cfg, r.srv, r.a, r.b, r.path
	cfg.ServerName = "localhost"
	require.NoError(t, srv.check(t, f, cfg, a.server))
	require.Empty(t, logs(), "reading the file at start is not a reload")

	oneLine := func(level string) map[string]any {
		t.Helper()
		got := logs()
		require.Len(t, got, 1, "one line per change of the file, not per handshake: %v", got)
		require.Equal(t, level, got[0]["level"])
		require.Equal(t, "X_CA_FILE", got[0]["ca_setting"])
		require.Equal(t, path, got[0]["ca_file"])
		return got[0]
	}
	for _, tc := range []struct {
		name string
		data []byte // nil: the file is removed
		want string
	}{
		{"half written", b.pem[:len(b.pem)/2], "ends in an unfinished PEM block"},
		{"bundle cut after its first certificate", append(append([]byte{}, a.pem...), b.pem[:len(b.pem)/2]...), "ends in an unfinished PEM block"},
		{"empty", []byte{}, "no PEM certificate"},
		{"not PEM", []byte("not a certificate\n"), "no PEM certificate"},
		{"gone", nil, "cannot read the CA file: no such file or directory"},
	} {
		if tc.data == nil {
			require.NoError(t, os.Remove(path))
		} else {
			r.rewrite(t, tc.data)
		}
		for range 2 {
			require.NoError(t, srv.check(t, f, cfg, a.server), tc.name)
			require.ErrorContains(t, srv.check(t, f, cfg, b.server), "certificate signed by unknown authority", tc.name)
		}
		line := oneLine("WARN")
		require.Contains(t, line["error"], tc.want, tc.name)
		require.NotContains(t, line["error"], "MII", "the file's contents are not logged")
	}

	r.rewrite(t, b.pem)
	require.NoError(t, srv.check(t, f, cfg, b.server))
	require.NoError(t, srv.check(t, f, cfg, b.server))
	require.ErrorContains(t, srv.check(t, f, cfg, a.server), "certificate signed by unknown authority")
	require.Equal(t, 1.0, oneLine("INFO")["certificates"])

	r.rewrite(t, append(append([]byte{}, a.pem...), b.pem...))
	require.NoError(t, srv.check(t, f, cfg, a.server))
	require.NoError(t, srv.check(t, f, cfg, b.server))
	require.Equal(t, 2.0, oneLine("INFO")["certificates"], "a bundle of two CAs")
}

// Verifying by itself, the configuration still checks the host name as
// crypto/tls does, against the CA file as it is now: a name the
// certificate lacks fails before and after a rotation, with the message
// Explain recognises; SkipHostVerification drops the name check only. An
// IP address, which no handshake carries as a server name, is checked
// when bound with ForHost, and refused when nothing names the host.
func TestHostVerificationAcrossRotation(t *testing.T) {
	r := newCARotation(t)
	f, cfg, srv, a, b := r.f, r.cfg, r.srv, r.a, r.b
	wrongName := cfg.Clone()
	wrongName.ServerName = "db.example"
	skip := f
	skip.SkipHostVerification = true
	skipCfg, err := skip.Config()
	require.NoError(t, err)
	skipCfg.ServerName = "db.example"

	for i, ca := range []testCA{a, b} {
		if i == 1 {
			r.rewrite(t, b.pem)
		}
		err := srv.check(t, f, wrongName, ca.server)
		require.ErrorContains(t, err, "x509: certificate is valid for localhost")
		require.ErrorContains(t, err, "does not name the host dialled")
		require.ErrorContains(t, err, "X_VERIFY_HOST=false")

		require.NoError(t, srv.check(t, skip, skipCfg, ca.server), "no host check, the chain checked")
		other := a
		if i == 0 {
			other = b
		}
		require.ErrorContains(t, srv.check(t, skip, skipCfg, other.server), "certificate signed by unknown authority")

		require.NoError(t, srv.check(t, f, ForHost(cfg, "127.0.0.1"), ca.server))
		err = srv.check(t, f, ForHost(cfg, "127.0.0.2"), ca.server)
		require.ErrorContains(t, err, "x509: certificate is valid for 127.0.0.1, not 127.0.0.2")
		require.ErrorContains(t, err, "does not name the host dialled")
		require.ErrorContains(t, srv.check(t, f, cfg, ca.server), "no host name to check", "dialled by address, nothing bound")
	}
	require.Same(t, cfg, ForURLHost(cfg, "db.example"), "a name travels in the handshake")
	require.NoError(t, srv.check(t, f, ForURLHost(cfg, "127.0.0.1"), b.server))
}

// Without a CA file crypto/tls verifies against the system roots as it
// always did.
func TestSystemRootsAreLeftToCryptoTLS(t *testing.T) {
	cfg, err := Files{CASetting: "X_CA_FILE"}.Config()
	require.NoError(t, err)
	require.False(t, cfg.InsecureSkipVerify)
	require.Nil(t, cfg.VerifyConnection)
	require.Nil(t, cfg.RootCAs)
	a, _ := testCAs(t)
	srv := startSwitchServer(t)
	cfg.ServerName = "localhost"
	require.ErrorContains(t, srv.check(t, Files{CASetting: "X_CA_FILE"}, cfg, a.server), "X_CA_FILE (system roots)")
}

// A handshake refused over the host name is explained, in every form
// x509.HostnameError and verifyServer give it, with what to change: a
// name the certificate carries, or the setting that turns the check off
// where the connection has one. Each matches ErrRefused, so the clients
// end the call on it instead of trying the same refusal again.
func TestRefusedHandshakeOverTheHostNameIsExplained(t *testing.T) {
	certs := testenv.Certs(t)
	pair := func(name string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(certs.PEM(name), certs.PEM(name+"-key"))
		require.NoError(t, err)
		return c
	}
	server, cnOnly := pair("server"), pair("cn-only-server")
	srv := startSwitchServer(t)
	withSetting := Files{CAFile: certs.PEM("ca"), CASetting: "X_CA_FILE", HostSetting: "X_VERIFY_HOST"}
	withoutSetting := Files{CAFile: certs.PEM("ca"), CASetting: "X_CA_FILE"}
	for _, tc := range []struct {
		name   string
		f      Files
		cert   tls.Certificate
		dialAs string // the server name; empty: 127.0.0.1 with nothing bound
		want   string
	}{
		{"address dialled, no host bound", withSetting, server, "",
			"the handshake came with no host name to check the server's certificate against (the server reached at an IP address, by a redirect or a proxy?): reach it by a name its certificate carries, or set X_VERIFY_HOST=false: " + errNoHostName.Error()},
		{"address dialled, no host bound, no setting to skip the check", withoutSetting, server, "",
			"the handshake came with no host name to check the server's certificate against (the server reached at an IP address, by a redirect or a proxy?): reach it by a name its certificate carries: " + errNoHostName.Error()},
		{"host in the Common Name alone", withSetting, cnOnly, "localhost",
			"the server's certificate names its host in the Common Name alone, which Go does not check (the server needs a certificate with the host in its subjectAltName, or set X_VERIFY_HOST=false): tls: failed to verify certificate: x509: certificate relies on legacy Common Name field, use SANs instead"},
		{"no name at all, another host dialled", withoutSetting, cnOnly, "db.example",
			"the server's certificate does not name the host dialled (connect by a name it carries): tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match db.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.f.Config()
			require.NoError(t, err)
			cfg.ServerName = tc.dialAs
			err = srv.check(t, tc.f, cfg, tc.cert)
			require.ErrorIs(t, err, ErrRefused)
			require.EqualError(t, err, tc.want)
		})
	}
}
