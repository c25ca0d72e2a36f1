package tlsfiles

import (
	"crypto/tls"
	"net"
	"testing"

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
	require.NotNil(t, cfg.RootCAs)
	require.False(t, cfg.InsecureSkipVerify)
}

// Errors that are not about TLS pass through untouched.
func TestExplainLeavesOtherErrorsAlone(t *testing.T) {
	require.NoError(t, Files{}.Explain(nil))
	_, err := net.Dial("tcp", "127.0.0.1:1")
	require.Equal(t, err, Files{CASetting: "A"}.Explain(err))
}
