package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"

	"function/shared/watchfile"
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
	*watchfile.Value[caPool]
}

// caPool is the CA file's certificates and how many there are, for the log.
type caPool struct {
	pool *x509.CertPool
	n    int
}

// newCAFile reads the file once, so that a wrong setting fails at start
// with the setting named.
func newCAFile(f Files) (*caFile, error) {
	w, err := watchfile.New(watchfile.Spec[caPool]{
		Files: []watchfile.File{{Path: f.CAFile, Setting: f.CASetting, What: "CA file"}},
		Parse: func(contents [][]byte) (caPool, error) {
			cas, err := parseCAs(contents[0])
			if err != nil {
				return caPool{}, fmt.Errorf("%s=%q: %w", f.CASetting, f.CAFile, err)
			}
			return cas, nil
		},
		Failed: func(_ caPool, err error) {
			slog.Warn("CA file did not load; servers are still verified against the CAs read before",
				"ca_setting", f.CASetting, "ca_file", f.CAFile, "error", err.Error())
		},
		Reloaded: func(now caPool) {
			slog.Info("CA file read again", "ca_setting", f.CASetting, "ca_file", f.CAFile, "certificates", now.n)
		},
	})
	if err != nil {
		return nil, err
	}
	return &caFile{w}, nil
}

// roots is the pool to verify against: the file's when it changed and
// loads, the last good one otherwise. A file out of reach (gone for a
// moment during a swap) is a change: said once, and the last good pool
// stays until it is back.
func (c *caFile) roots() *x509.CertPool { return c.Current().pool }

// parseCAs is x509.CertPool.AppendCertsFromPEM (other blocks and
// certificates Go cannot parse are skipped, as before) that also refuses
// a file ending in a block that was begun and not finished: a bundle
// caught half-written would otherwise load with the certificates before
// the cut and drop the rest.
func parseCAs(data []byte) (caPool, error) {
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
		return caPool{}, errors.New("the CA file ends in an unfinished PEM block (written only in part?)")
	}
	if n == 0 {
		return caPool{}, errors.New("no PEM certificate in the CA file")
	}
	return caPool{pool, n}, nil
}

// errNoHostName refuses a handshake that carries no name to check the
// server's certificate against. Explain matches its text, as the drivers
// pass it on flattened.
var errNoHostName = errors.New("tls: no host name to check the server's certificate against (an IP address travels in no server name; see tlsfiles.ForHost)")

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
			return errNoHostName
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
