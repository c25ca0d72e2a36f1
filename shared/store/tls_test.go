package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tlsfiles"
)

// TLS to a real Cassandra that requires client encryption and a client
// certificate (stack.sh's cassandra-tls, started for this test): the right
// CA and certificate connect and run the autoscaler's statements, LWTs
// included; every wrong file fails with a message that names the setting
// to fix.
func TestTLSToARealCassandra(t *testing.T) {
	node := testenv.StartCassandraTLS(t)
	pem := node.Certs.PEM
	files := func(ca, cert, key string) *tlsfiles.Files {
		f := &tlsfiles.Files{CASetting: "CASSANDRA_TLS_CA_FILE", CertSetting: "CASSANDRA_TLS_CERT_FILE", KeySetting: "CASSANDRA_TLS_KEY_FILE", HostSetting: "CASSANDRA_TLS_VERIFY_HOST"}
		if ca != "" {
			f.CAFile = pem(ca)
		}
		if cert != "" {
			f.CertFile, f.KeyFile = pem(cert), pem(key)
		}
		return f
	}
	// The node may serve other tests of this run: names of this test's own.
	keyspace := fmt.Sprintf("tls_test_%d", time.Now().UnixNano()%1e9)
	open := func(f *tlsfiles.Files) (*Store, error) {
		cfg := DefaultConfig()
		cfg.Hosts = node.Hosts
		cfg.Keyspace = keyspace
		cfg.TLS = f
		cfg.ConnectTimeout = 5 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return Open(ctx, cfg)
	}

	t.Run("right CA and client certificate", func(t *testing.T) {
		s, err := open(files("ca", "client", "client-key"))
		require.NoError(t, err)
		defer s.Close()
		ctx := context.Background()
		require.NoError(t, s.Ping(ctx))
		_, err = s.AcquireLock(ctx, keyspace, "node-a", 10*time.Second)
		require.NoError(t, err, "a lightweight transaction over TLS")
		lock, err := s.ReadLock(ctx, keyspace)
		require.NoError(t, err)
		require.Equal(t, "node-a", lock.Owner)
	})

	t.Run("host verification off still checks the chain", func(t *testing.T) {
		f := files("other-ca", "client", "client-key")
		f.SkipHostVerification = true
		_, err := open(f)
		require.ErrorContains(t, err, "CASSANDRA_TLS_CA_FILE")
		f = files("ca", "client", "client-key")
		f.SkipHostVerification = true
		s, err := open(f)
		require.NoError(t, err)
		s.Close()
	})

	for _, tc := range []struct {
		name  string
		files *tlsfiles.Files
		want  []string
	}{
		{"wrong CA", files("other-ca", "client", "client-key"),
			[]string{`CASSANDRA_TLS_CA_FILE="` + pem("other-ca") + `"`, "not signed by the CA", "unknown authority"}},
		{"missing key file", files("ca", "client", "no-such-key"),
			[]string{`CASSANDRA_TLS_KEY_FILE="` + pem("no-such-key") + `"`, "cannot read the client key", "no such file"}},
		{"no client certificate", files("ca", "", ""),
			[]string{"requires a client certificate", "CASSANDRA_TLS_CERT_FILE and CASSANDRA_TLS_KEY_FILE"}},
		{"client certificate of another CA", files("ca", "other-client", "other-client-key"),
			[]string{`refused the client certificate of CASSANDRA_TLS_CERT_FILE="` + pem("other-client") + `"`}},
		{"expired client certificate", files("ca", "expired-client", "expired-client-key"),
			[]string{`refused the client certificate of CASSANDRA_TLS_CERT_FILE="` + pem("expired-client") + `"`}},
		// Proves the node the cases above reach takes nothing but TLS.
		{"plaintext", nil, []string{"connect to cassandra"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := open(tc.files)
			if err == nil {
				s.Close()
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			t.Log(err)
		})
	}
}
