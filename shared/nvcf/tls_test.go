package nvcf

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/testenv"
	"function/shared/tlsfiles"
)

// gRPC over TLS against the simulator's TLS server: the right CA (and,
// where the server verifies clients, the right client certificate) writes;
// a wrong CA, an expired server or client certificate, a client certificate
// the server does not trust and a missing key each fail with a message that
// names the setting to fix.
func TestGRPCTLSToTheSimulator(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	start := func(cert, clientCA string) *nvcfsim.Server {
		tc, err := nvcfsim.ServerTLS(pem(cert), pem(cert+"-key"), clientCA)
		require.NoError(t, err)
		sim, err := nvcfsim.Start(nvcfsim.Options{GRPCTLS: tc})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, sim.Close(context.Background())) })
		sim.Register(nvcfsim.FunctionVersion{FunctionID: fid, VersionID: vid, NcaID: "nca-1",
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40", MinInstances: 0, MaxInstances: 5}}})
		return sim
	}
	serverOnly := start("server", "")
	mutual := start("server", pem("ca"))
	expired := start("expired-server", "")

	files := func(ca, cert, key string) tlsfiles.Files {
		f := tlsfiles.Files{CAFile: pem(ca), CASetting: "NVCF_GRPC_CA_FILE", CertSetting: "NVCF_GRPC_CERT_FILE", KeySetting: "NVCF_GRPC_KEY_FILE"}
		if cert != "" {
			f.CertFile, f.KeyFile = pem(cert), pem(key)
		}
		return f
	}
	client := func(sim *nvcfsim.Server, f tlsfiles.Files) (*Client, error) {
		c, err := New(Config{Transport: TransportGRPC, GRPCAddr: sim.GRPCAddr(), GRPCTLS: f,
			Timeout: 5 * time.Second, MaxAttempts: 1, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
		return c, err
	}
	write := func(c *Client) error {
		_, err := c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid, Instances: 3})
		return err
	}

	t.Run("right CA", func(t *testing.T) {
		c, err := client(serverOnly, files("ca", "", ""))
		require.NoError(t, err)
		require.NoError(t, write(c))
		require.Len(t, serverOnly.Writes(), 1)
	})
	t.Run("right CA and client certificate", func(t *testing.T) {
		c, err := client(mutual, files("ca", "client", "client-key"))
		require.NoError(t, err)
		require.NoError(t, write(c))
		require.Len(t, mutual.Writes(), 1)
	})
	t.Run("missing key", func(t *testing.T) {
		_, err := client(mutual, files("ca", "client", "no-such-key"))
		require.ErrorContains(t, err, `NVCF_GRPC_KEY_FILE="`+pem("no-such-key")+`": cannot read the client key: no such file or directory`)
	})
	for _, tc := range []struct {
		name  string
		sim   *nvcfsim.Server
		files tlsfiles.Files
		want  string
	}{
		{"wrong CA", serverOnly, files("other-ca", "", ""),
			`the server's certificate is not signed by the CA of NVCF_GRPC_CA_FILE="` + pem("other-ca") + `"`},
		{"expired server certificate", expired, files("ca", "", ""),
			"the server's certificate has expired or is not yet valid"},
		{"expired client certificate", mutual, files("ca", "expired-client", "expired-client-key"),
			`the server refused the client certificate of NVCF_GRPC_CERT_FILE="` + pem("expired-client") + `"`},
		{"client certificate of another CA", mutual, files("ca", "other-client", "other-client-key"),
			`the server refused the client certificate of NVCF_GRPC_CERT_FILE="` + pem("other-client") + `"`},
		{"no client certificate", mutual, files("ca", "", ""),
			"the server requires a client certificate: set NVCF_GRPC_CERT_FILE and NVCF_GRPC_KEY_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.sim.Writes())
			c, err := client(tc.sim, tc.files)
			require.NoError(t, err)
			err = write(c)
			require.ErrorIs(t, err, ErrUnavailable)
			require.ErrorContains(t, err, tc.want)
			require.Len(t, tc.sim.Writes(), before, "nothing reached the API")
			t.Log(err)
		})
	}
}
