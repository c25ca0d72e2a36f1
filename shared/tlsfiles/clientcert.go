package tlsfiles

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
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
// per change of the files.
type clientCert struct {
	f Files

	mu     sync.Mutex
	stamps [2]fileStamp
	pair   *tls.Certificate
}

// fileStamp is what tells a rewritten file from the one last read: its
// modification time and size, and which file it is. The last catches a
// symlink swapped to another file (a Kubernetes secret or ConfigMap
// volume's update) even when the new file has the old one's size and
// time, as two CA certificates made alike often do.
type fileStamp struct {
	mod  time.Time
	size int64
	file os.FileInfo
}

// stampOf stats path, following symlinks: what matters is the file the
// name leads to now.
func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), file: fi}, nil
}

// same reports whether s and o are stamps of the same, unchanged file.
func (s fileStamp) same(o fileStamp) bool {
	if s.file == nil || o.file == nil {
		return s.file == o.file && s.mod.Equal(o.mod) && s.size == o.size
	}
	return s.mod.Equal(o.mod) && s.size == o.size && os.SameFile(s.file, o.file)
}

// newClientCert reads the pair once, so that a wrong setting fails at
// start with the setting named.
func newClientCert(f Files) (*clientCert, error) {
	c := &clientCert{f: f}
	stamps, pair, err := c.load()
	if err != nil {
		return nil, err
	}
	c.stamps, c.pair = stamps, pair
	return c, nil
}

// load reads both files and the stamps they had before they were read: a
// file rewritten while it is read is read again at the next handshake.
func (c *clientCert) load() ([2]fileStamp, *tls.Certificate, error) {
	f := c.f
	var stamps [2]fileStamp
	var err error
	if stamps[0], err = stampOf(f.CertFile); err != nil {
		return stamps, nil, fmt.Errorf("%s=%q: cannot read the client certificate: %w", f.CertSetting, f.CertFile, unwrapPath(err))
	}
	if stamps[1], err = stampOf(f.KeyFile); err != nil {
		return stamps, nil, fmt.Errorf("%s=%q: cannot read the client key: %w", f.KeySetting, f.KeyFile, unwrapPath(err))
	}
	certPEM, err := os.ReadFile(f.CertFile)
	if err != nil {
		return stamps, nil, fmt.Errorf("%s=%q: cannot read the client certificate: %w", f.CertSetting, f.CertFile, unwrapPath(err))
	}
	keyPEM, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return stamps, nil, fmt.Errorf("%s=%q: cannot read the client key: %w", f.KeySetting, f.KeyFile, unwrapPath(err))
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls's messages name PEM blocks and key types, never key bytes.
		return stamps, nil, fmt.Errorf("%s=%q and %s=%q: not a usable certificate and key: %w", f.CertSetting, f.CertFile, f.KeySetting, f.KeyFile, err)
	}
	return stamps, &pair, nil
}

// current is the pair to present: the files' when they changed and load,
// the last good one otherwise.
func (c *clientCert) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	certStamp, err1 := stampOf(c.f.CertFile)
	keyStamp, err2 := stampOf(c.f.KeyFile)
	if err1 != nil || err2 != nil || (certStamp.same(c.stamps[0]) && keyStamp.same(c.stamps[1])) {
		return c.pair
	}
	stamps, pair, err := c.load()
	if err != nil {
		// Remember the stamps all the same: a broken renewal is not
		// read again at every handshake, only when it changes again.
		c.stamps = stamps
		// Said once per change of the files, not per handshake: a
		// renewal that never loads ends in handshakes refused for an
		// expired certificate, and this line is the early warning.
		// The error names settings and files, never key bytes.
		slog.Warn("client certificate renewal did not load; the previous certificate is still presented",
			"certificate_setting", c.f.CertSetting, "previous_not_after", notAfter(c.pair), "error", err.Error())
		return c.pair
	}
	c.stamps, c.pair = stamps, pair
	slog.Info("client certificate renewed", "certificate_setting", c.f.CertSetting, "not_after", notAfter(pair))
	return c.pair
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
	pair := c.current()
	if err := cri.SupportsCertificate(pair); err != nil {
		return &tls.Certificate{}, nil
	}
	return pair, nil
}
