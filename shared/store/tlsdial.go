package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/gocql/gocql"

	"function/shared/tlsfiles"
)

// tlsHostDialer connects to a node and verifies its certificate against
// the host gocql knows the node by, as gocql's own dialer does when it
// verifies (HostInfo.HostnameAndPort: the contact point as written, or
// the node's address), with the node's name bound by tlsfiles.ForHost:
// nodes are dialled by IP address, which a handshake never carries as a
// server name.
type tlsHostDialer struct {
	dialer *net.Dialer
	tls    *tls.Config
}

// DialHost is gocql.HostDialer.
func (d tlsHostDialer) DialHost(ctx context.Context, host *gocql.HostInfo) (*gocql.DialedHost, error) {
	if ip := host.ConnectAddress(); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("host missing connect ip address: %v", ip)
	}
	if host.Port() == 0 {
		return nil, fmt.Errorf("host %v missing port", host.ConnectAddress())
	}
	conn, err := d.dialer.DialContext(ctx, "tcp", host.ConnectAddressAndPort())
	if err != nil {
		return nil, err
	}
	addr := host.HostnameAndPort()
	name, _, err := net.SplitHostPort(addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return gocql.WrapTLS(ctx, conn, addr, tlsfiles.ForHost(d.tls, name))
}
