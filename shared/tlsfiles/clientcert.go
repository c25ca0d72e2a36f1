package tlsfiles

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"function/shared/watchfile"
)

// clientCert is a client certificate and key that are read again when
// either file changes. Client certificates are often short-lived and
// renewed in place (cert-manager and Vault agents rewrite the files; a
// Kubernetes secret volume swaps a symlink to a new directory), and a
// process that read them once would go on presenting the old certificate
// until it expired and every handshake failed. Renewal is looked for at
// each handshake, which costs two stat calls; connections already open
// keep the certificate they were made with.
//
// A renewal that does not load (the certificate written before its key,
// or a broken file) leaves the last good pair in use, and is tried again
// at the next handshake after the files change once more: an expired pair
// still fails with the server's own reason, a half-written one must not
// fail handshakes that the old pair would pass. Both outcomes are logged
// through slog's default logger (the process sets it to its own), once
// per change of the files. A file that cannot be stat'ed (removed, or
// between the two halves of a swap) leaves the last good pair in use and
// is not reported: the files are looked at again once both are there.
type clientCert struct {
	*watchfile.Value[*tls.Certificate]
}

// newClientCert reads the pair once, so that a wrong setting fails at
// start with the setting named.
func newClientCert(f Files) (*clientCert, error) {
	w, err := watchfile.New(watchfile.Spec[*tls.Certificate]{
		Files: []watchfile.File{
			{Path: f.CertFile, Setting: f.CertSetting, What: "client certificate"},
			{Path: f.KeyFile, Setting: f.KeySetting, What: "client key"},
		},
		Parse: func(contents [][]byte) (*tls.Certificate, error) {
			pair, err := tls.X509KeyPair(contents[0], contents[1])
			if err != nil {
				// tls's messages name PEM blocks and key types, never key bytes.
				return nil, fmt.Errorf("%s=%q and %s=%q: not a usable certificate and key: %w", f.CertSetting, f.CertFile, f.KeySetting, f.KeyFile, err)
			}
			return &pair, nil
		},
		// A file out of reach is taken as a renewal under way, not as
		// one that failed (caFile reports it; the two have always
		// differed there, and this keeps both as they were).
		WaitWhileUnreachable: true,
		Failed: func(last *tls.Certificate, err error) {
			// A renewal that never loads ends in handshakes refused
			// for an expired certificate, and this line is the early
			// warning. The error names settings and files, never key
			// bytes.
			slog.Warn("client certificate renewal did not load; the previous certificate is still presented",
				"certificate_setting", f.CertSetting, "previous_not_after", notAfter(last), "error", err.Error())
		},
		Reloaded: func(now *tls.Certificate) {
			slog.Info("client certificate renewed", "certificate_setting", f.CertSetting, "not_after", notAfter(now))
		},
	})
	if err != nil {
		return nil, err
	}
	return &clientCert{w}, nil
}

// notAfter is the pair's expiry for a log line, zero when it has no
// parsed leaf.
func notAfter(pair *tls.Certificate) time.Time {
	if pair == nil || pair.Leaf == nil {
		return time.Time{}
	}
	return pair.Leaf.NotAfter
}

// get is tls.Config.GetClientCertificate. Like crypto/tls with a fixed
// certificate, it sends none when the server's request rules the pair out
// (an issuer the server does not list): the server then says it got no
// certificate, which is the clearer of the two refusals.
func (c *clientCert) get(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	pair := c.Current()
	if err := cri.SupportsCertificate(pair); err != nil {
		return &tls.Certificate{}, nil
	}
	return pair, nil
}
