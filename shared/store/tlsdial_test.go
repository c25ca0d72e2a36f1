package store

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tlsfiles"
)

// The store's dialer checks a node's certificate against the address
// gocql dials, though nodes are dialled by IP address (no server name in
// the handshake) and the configuration verifies by itself so that a
// rotated CA file is seen. Only the handshake is under test: the peer is
// a TLS listener that completes it and hangs up, not a Cassandra, so
// Open fails after it either way; what the listener saw of the handshake
// and the error's cause tell the cases apart. The server certificate
// (certs.sh) names 127.0.0.1 and localhost, not 127.0.0.2.
func TestTLSDialerVerifiesTheNodesAddress(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	pair, err := tls.LoadX509KeyPair(pem("server"), pem("server-key"))
	require.NoError(t, err)
	listen := func(ip string) (addr string, handshakes chan error) {
		ln, err := tls.Listen("tcp", ip+":0", &tls.Config{Certificates: []tls.Certificate{pair}})
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		handshakes = make(chan error, 16)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				handshakes <- c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		return ln.Addr().String(), handshakes
	}
	open := func(addr string, f *tlsfiles.Files) error {
		cfg := DefaultConfig()
		cfg.Hosts = []string{addr}
		cfg.TLS = f
		cfg.ConnectTimeout = 3 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := Open(ctx, cfg)
		if err == nil {
			s.Close()
		}
		return err
	}
	files := func(ca string) *tlsfiles.Files {
		return &tlsfiles.Files{CAFile: pem(ca), CASetting: "CASSANDRA_TLS_CA_FILE", HostSetting: "CASSANDRA_TLS_VERIFY_HOST"}
	}
	// seen waits for the listener's first handshake, then counts those
	// it has seen so far. Each case has a listener of its own: a refusal
	// reaches the listener after the client has given up, and must not
	// be counted in the next case.
	seen := func(handshakes chan error) (ok, refused int) {
		count := func(err error) {
			if err == nil {
				ok++
			} else {
				refused++
			}
		}
		select {
		case err := <-handshakes:
			count(err)
		case <-time.After(10 * time.Second):
			t.Fatal("no handshake reached the listener")
		}
		for {
			select {
			case err := <-handshakes:
				count(err)
			default:
				return ok, refused
			}
		}
	}

	named, namedHandshakes := listen("127.0.0.1")
	err = open(named, files("ca"))
	require.Error(t, err, "the listener is no Cassandra")
	require.NotContains(t, err.Error(), "x509", "the node's address is in its certificate")
	ok, refused := seen(namedHandshakes)
	require.Positive(t, ok, "the client accepted the node")
	require.Zero(t, refused)

	named, namedHandshakes = listen("127.0.0.1")
	err = open(named, files("other-ca"))
	require.ErrorContains(t, err, "certificate signed by unknown authority")
	require.ErrorContains(t, err, "CASSANDRA_TLS_CA_FILE")
	ok, refused = seen(namedHandshakes)
	require.Zero(t, ok)
	require.Positive(t, refused)

	if c, lerr := net.Listen("tcp", "127.0.0.2:0"); lerr != nil {
		t.Skipf("no 127.0.0.2 to dial an address the certificate lacks: %v", lerr)
	} else {
		c.Close()
	}
	unnamed, unnamedHandshakes := listen("127.0.0.2")
	err = open(unnamed, files("ca"))
	require.ErrorContains(t, err, "x509: certificate is valid for")
	require.ErrorContains(t, err, "not 127.0.0.2")
	require.ErrorContains(t, err, "CASSANDRA_TLS_VERIFY_HOST=false")
	ok, refused = seen(unnamedHandshakes)
	require.Zero(t, ok)
	require.Positive(t, refused)

	skip := files("ca")
	skip.SkipHostVerification = true
	unnamed, unnamedHandshakes = listen("127.0.0.2")
	err = open(unnamed, skip)
	require.Error(t, err, "the listener is no Cassandra")
	require.NotContains(t, err.Error(), "x509")
	ok, refused = seen(unnamedHandshakes)
	require.Positive(t, ok, "host verification off: the chain alone is checked")
	require.Zero(t, refused)
}
