package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// caFile is the CA file's certificates, read again when the file changes.
// Operators rotate CAs in place (cert-manager trust bundles, a Kubernetes
// secret volume swapping a symlink), and a pool read once at start would
// refuse every new connection with "certificate signed by unknown
// authority" as soon as the servers move to certificates of the new CA,
// until the process restarted. The file is looked at once per handshake
// (one stat call); connections already open are not verified again.
//
// A rewrite that does not load (empty, half-written, no certificate,
// unreadable, gone for a moment during a swap) leaves the last good pool
// in use: servers still on the old CA stay reachable, and the file is
// tried again when it changes once more. Both outcomes are logged through
// slog's default logger once per change of the file; a CA is public, so
// the log may name the file, but it never quotes the contents.
type caFile struct {
	f Files

	mu    sync.Mutex
	stamp fileStamp // zero while the file cannot be stat'ed
	pool  *x509.CertPool
}

// newCAFile reads the file once, so that a wrong setting fails at start
// with the setting named.
func newCAFile(f Files) (*caFile, error) {
	c := &caFile{f: f}
	stamp, pool, _, err := c.load()
	if err != nil {
		return nil, err
	}
	c.stamp, c.pool = stamp, pool
	return c, nil
}

// load reads the file and the stamp it had before it was read: a file
// rewritten while it is read is read again at the next handshake.
func (c *caFile) load() (fileStamp, *x509.CertPool, int, error) {
	f := c.f
	stamp, err := stampOf(f.CAFile)
	if err != nil {
		return fileStamp{}, nil, 0, fmt.Errorf("%s=%q: cannot read the CA file: %w", f.CASetting, f.CAFile, unwrapPath(err))
	}
	data, err := os.ReadFile(f.CAFile)
	if err != nil {
		return stamp, nil, 0, fmt.Errorf("%s=%q: cannot read the CA file: %w", f.CASetting, f.CAFile, unwrapPath(err))
	}
	pool, n, err := parseCAs(data)
	if err != nil {
		return stamp, nil, 0, fmt.Errorf("%s=%q: %w", f.CASetting, f.CAFile, err)
	}
	return stamp, pool, n, nil
}

// parseCAs is x509.CertPool.AppendCertsFromPEM (other blocks and
// certificates Go cannot parse are skipped, as before) that also refuses
// a file ending in a block that was begun and not finished: a bundle
// caught half-written would otherwise load with the certificates before
// the cut and drop the rest.
func parseCAs(data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		pool.AddCert(cert)
		n++
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, 0, errors.New("the CA file ends in an unfinished PEM block (written only in part?)")
	}
	if n == 0 {
		return nil, 0, errors.New("no PEM certificate in the CA file")
	}
	return pool, n, nil
}

// current is the pool to verify against: the file's when it changed and
// loads, the last good one otherwise.
func (c *caFile) current() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp, err := stampOf(c.f.CAFile)
	if err == nil && stamp.same(c.stamp) {
		return c.pool
	}
	if err != nil && c.stamp.file == nil {
		// Already said while the file stays out of reach.
		return c.pool
	}
	stamp, pool, n, err := c.load()
	// Remember the stamp all the same: a broken rewrite is read again
	// when it changes, not at every handshake.
	c.stamp = stamp
	if err != nil {
		// Once per change: the next line about this file is the one
		// that says the rewrite loaded.
		slog.Warn("CA file did not load; servers are still verified against the CAs read before",
			"ca_setting", c.f.CASetting, "ca_file", c.f.CAFile, "error", err.Error())
		return c.pool
	}
	c.pool = pool
	slog.Info("CA file read again", "ca_setting", c.f.CASetting, "ca_file", c.f.CAFile, "certificates", n)
	return c.pool
}

// verifyServer is what crypto/tls's own client verification does (the
// chain with the peer's intermediates, for server authentication, and the
// host name unless checkName is false), against roots as they are at this
// handshake: nil roots are the system's. The name is the one the
// handshake was made for (see ForHost); a handshake that carries none is
// refused rather than left unchecked. Errors are the same
// *tls.CertificateVerificationError crypto/tls returns, so Explain and
// the drivers see the same text.
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, checkName bool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	if checkName {
		if cs.ServerName == "" {
			return errors.New("tls: no host name to check the server's certificate against (an IP address travels in no server name; see tlsfiles.ForHost)")
		}
		opts.DNSName = cs.ServerName
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
