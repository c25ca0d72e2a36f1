// Package tlsfiles builds the client side of TLS for every outside system
// the autoscaler talks to (Cassandra, the TSDB, the NVCF API) from PEM files
// named by settings, and explains a failed handshake in terms of those
// settings. "x509: certificate signed by unknown authority" alone does not
// tell an operator which of a dozen files to fix; "CASSANDRA_TLS_CA_FILE
// ... does not sign the server's certificate" does.
//
// Only paths are held here, never key material in a printable form: a
// Files value is safe to log.
package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Files names one connection's TLS material and the settings it comes from.
// Each *Setting is the variable an operator sets (e.g. TSDB_CA_FILE); it is
// what messages name.
type Files struct {
	// CAFile verifies the server's certificate; empty means the system's
	// roots.
	CAFile, CASetting string
	// CertFile and KeyFile are the client's certificate and key, for
	// servers that authenticate clients by certificate; both or neither.
	CertFile, CertSetting string
	KeyFile, KeySetting   string
	// SkipHostVerification still checks the server's chain against the CA
	// but not that the certificate names the host dialled: for clusters
	// whose node certificates carry no usable address. Off by default.
	SkipHostVerification bool
	// HostSetting is the setting that turns host verification off.
	HostSetting string
}

// HasClientCert reports whether a client certificate is configured.
func (f Files) HasClientCert() bool { return f.CertFile != "" || f.KeyFile != "" }

// Config reads the files and returns the client TLS configuration. Every
// error names the setting whose file is wrong and does not quote the file's
// contents. The CA file, the client certificate and the key are read again
// when they change (see caFile and clientCert), so rotations in place need
// no restart.
//
// With a CA file, the configuration verifies servers itself: a tls.Config
// must not change once in use, so its RootCAs cannot follow the file;
// crypto/tls is told to skip its own check (InsecureSkipVerify) and
// VerifyConnection does the same check against the CA file as it is now:
// the chain, and the host name unless SkipHostVerification. The name is
// the handshake's server name, which an IP address never fills: a client
// that dials an address, or sends no name (gocql's dialer with
// InsecureSkipVerify set), binds the host with ForHost, and a handshake
// with no name to check is refused, never passed unchecked. Copies made
// with Clone keep VerifyConnection; code that sets InsecureSkipVerify back
// to false gets crypto/tls's check against the system roots, which refuses
// a private CA: it fails closed as well.
// Without a CA file (the system roots) crypto/tls verifies as usual.
func (f Files) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var cas *caFile
	if f.CAFile != "" {
		var err error
		if cas, err = newCAFile(f); err != nil {
			return nil, err
		}
	}
	if f.HasClientCert() {
		if f.CertFile == "" || f.KeyFile == "" {
			return nil, fmt.Errorf("%s and %s go together: set both for a client certificate, or neither", f.CertSetting, f.KeySetting)
		}
		cc, err := newClientCert(f)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = cc.get
	}
	if cas != nil || f.SkipHostVerification {
		// crypto/tls cannot verify the chain without the name, nor
		// against roots that change, so it is told to skip both and the
		// check is done here instead (the pattern of crypto/tls's
		// VerifyConnection example).
		checkName := !f.SkipHostVerification
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			var roots *x509.CertPool // the system's
			if cas != nil {
				roots = cas.roots()
			}
			return verifyServer(cs, roots, checkName)
		}
	}
	return cfg, nil
}

// ForHost returns a copy of cfg (a configuration from Config) that
// verifies the server's certificate against host, whatever the handshake
// carries: crypto/tls sends no server name for an IP address, so a
// configuration that verifies by itself would have no name to check.
// Each connection to a given host needs its own copy; the copy sets
// ServerName as well, for the clients that would otherwise send none.
func ForHost(cfg *tls.Config, host string) *tls.Config {
	c := cfg.Clone()
	c.ServerName = host
	if verify := cfg.VerifyConnection; verify != nil {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			cs.ServerName = host
			return verify(cs)
		}
	}
	return c
}

// ForURLHost is ForHost for a client of one URL or address whose host is
// host: an IP address is bound, a name is left to the server name the
// client sends, so that a redirect to another name is still verified
// against that name.
func ForURLHost(cfg *tls.Config, host string) *tls.Config {
	if net.ParseIP(strings.Trim(host, "[]")) == nil {
		return cfg
	}
	return ForHost(cfg, strings.Trim(host, "[]"))
}

// ErrRefused is carried (errors.Is) by every error Explain recognises: a
// handshake refused over certificates (ours or the server's), or a server
// that does not speak TLS. The same files and the same server give the same
// refusal at once, so another attempt within the call only delays the
// answer. A later call is another matter: the CA file and the client
// certificate are read again when they change, so a call made after the
// files (or the server's certificate) are fixed can succeed.
var ErrRefused = errors.New("tls: handshake refused")

// refused is an explained handshake failure: its message and what it wraps
// are the explanation's, and it matches ErrRefused besides.
type refused struct{ explained error }

func (r *refused) Error() string   { return r.explained.Error() }
func (r *refused) Unwrap() []error { return []error{r.explained, ErrRefused} }

// Explain returns err with the setting to check in front when it is a TLS
// failure, and err unchanged otherwise (nil stays nil). It works on the
// text as well as on typed errors: the Cassandra and gRPC drivers flatten
// the handshake error into their own message, so the types are gone by
// the time it reaches the caller. The strings matched are crypto/tls's,
// crypto/x509's and verifyServer's own. An explained error still wraps err
// (errors.As finds what it did) and matches ErrRefused.
func (f Files) Explain(err error) error {
	if err == nil {
		return nil
	}
	if explained := f.explain(err); explained != err {
		return &refused{explained}
	}
	return err
}

// explain is Explain without the ErrRefused mark.
func (f Files) explain(err error) error {
	msg := err.Error()
	ca := f.CASetting + " (system roots)"
	if f.CAFile != "" {
		ca = fmt.Sprintf("%s=%q", f.CASetting, f.CAFile)
	}
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Errorf("the server's certificate is not signed by the CA of %s: %w", ca, err)
	case strings.Contains(msg, "x509: certificate has expired or is not yet valid"):
		return fmt.Errorf("the server's certificate has expired or is not yet valid (checked against %s; the server needs a new certificate): %w", ca, err)
	// The host-name failures, in every form x509.HostnameError and
	// verifyServer give them.
	case strings.Contains(msg, "x509: certificate is valid for"), strings.Contains(msg, "x509: cannot validate certificate for"),
		strings.Contains(msg, "x509: certificate is not valid for any names"):
		return fmt.Errorf("the server's certificate does not name the host dialled (connect by a name it carries%s): %w", f.orSkipHost(), err)
	case strings.Contains(msg, "x509: certificate relies on legacy Common Name field"):
		return fmt.Errorf("the server's certificate names its host in the Common Name alone, which Go does not check (the server needs a certificate with the host in its subjectAltName%s): %w", f.orSkipHost(), err)
	case strings.Contains(msg, errNoHostName.Error()):
		return fmt.Errorf("the handshake came with no host name to check the server's certificate against (the server reached at an IP address, by a redirect or a proxy?): reach it by a name its certificate carries%s: %w", f.orSkipHost(), err)
	case strings.Contains(msg, "remote error: tls:") && alertAboutClientCert(msg):
		if !f.HasClientCert() {
			return fmt.Errorf("the server requires a client certificate: set %s and %s: %w", f.CertSetting, f.KeySetting, err)
		}
		return fmt.Errorf("the server refused the client certificate of %s=%q (expired, or not signed by a CA the server trusts): %w", f.CertSetting, f.CertFile, err)
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return fmt.Errorf("the server does not speak TLS on this port (TLS is on through %s): %w", f.CASetting, err)
	}
	return err
}

// orSkipHost is the alternative to a certificate that names the host: the
// setting that turns host verification off, where the connection has one.
func (f Files) orSkipHost() string {
	if f.HostSetting == "" {
		return ""
	}
	return fmt.Sprintf(", or set %s=false", f.HostSetting)
}

// alertAboutClientCert tells the alerts a server sends about the client's
// certificate (TLS 1.3 reports them on the first read after the handshake,
// so they arrive as a read error) from other remote errors.
func alertAboutClientCert(msg string) bool {
	for _, a := range []string{"bad certificate", "expired certificate", "unknown certificate authority", "certificate required", "certificate unknown", "unsupported certificate", "revoked certificate"} {
		if strings.Contains(msg, "remote error: tls: "+a) {
			return true
		}
	}
	return false
}

// Diagnose explains err like Explain and, when err alone shows no TLS cause
// ("broken pipe", "connection reset"), asks the server at addr (host:port)
// with cfg: under TLS 1.3 a server refuses a client certificate with an
// alert sent after the client's side of the handshake has finished, and a
// client already writing its request sees only the dropped connection. The
// probe costs one connection, and only on a failure.
func (f Files) Diagnose(ctx context.Context, addr string, cfg *tls.Config, err error) error {
	if err == nil {
		return nil
	}
	if explained := f.Explain(err); explained != err {
		return explained
	}
	perr := probe(ctx, addr, cfg)
	if perr == nil {
		return err
	}
	withProbe := fmt.Errorf("%w (a TLS probe of %s: %v)", err, addr, perr)
	if explained := f.Explain(withProbe); explained != withProbe {
		return explained
	}
	return err
}

// probe completes a handshake with addr and waits briefly for the server's
// verdict on it: nil when the server then waits for a request, as a server
// that accepted the client does.
func probe(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if host, _, err := net.SplitHostPort(addr); err == nil && cfg.ServerName == "" {
		cfg = ForHost(cfg, host) // as the client's own dialer does
	}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}
