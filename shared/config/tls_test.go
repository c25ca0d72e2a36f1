package config

import (
	"testing"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
)

// TLS settings are checked at Start: files are read then (a missing key
// names its variable), and a file set where it would be ignored is refused
// rather than leaving the connection in plaintext.
func TestTLSSettings(t *testing.T) {
	certs := testenv.Certs(t)
	pem := certs.PEM
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // empty: valid
	}{
		{"cassandra CA without CASSANDRA_TLS", map[string]string{"CASSANDRA_TLS_CA_FILE": pem("ca")}, "apply only with CASSANDRA_TLS=true"},
		{"cassandra key missing", map[string]string{"CASSANDRA_TLS": "true", "CASSANDRA_TLS_CA_FILE": pem("ca"), "CASSANDRA_TLS_CERT_FILE": pem("client"), "CASSANDRA_TLS_KEY_FILE": pem("gone")},
			`CASSANDRA_TLS_KEY_FILE="` + pem("gone") + `": cannot read the client key`},
		{"cassandra cert without key", map[string]string{"CASSANDRA_TLS": "true", "CASSANDRA_TLS_CERT_FILE": pem("client")}, "CASSANDRA_TLS_CERT_FILE and CASSANDRA_TLS_KEY_FILE go together"},
		{"cassandra full", map[string]string{"CASSANDRA_TLS": "true", "CASSANDRA_TLS_CA_FILE": pem("ca"), "CASSANDRA_TLS_CERT_FILE": pem("client"), "CASSANDRA_TLS_KEY_FILE": pem("client-key")}, ""},
		{"cassandra system roots", map[string]string{"CASSANDRA_TLS": "true"}, ""},
		{"tsdb CA on http", map[string]string{"TSDB_CA_FILE": pem("ca")}, "apply only to an https TSDB_URL"},
		{"tsdb CA missing", map[string]string{"TSDB_URL": "https://tsdb:9090", "TSDB_CA_FILE": pem("gone")}, `TSDB_CA_FILE="` + pem("gone") + `": cannot read the CA file`},
		{"tsdb mtls key missing", map[string]string{"TSDB_URL": "https://tsdb:9090", "TSDB_AUTH": "mtls", "TSDB_CERT_FILE": pem("client"), "TSDB_KEY_FILE": pem("gone")}, `TSDB_KEY_FILE="` + pem("gone") + `"`},
		{"tsdb mtls", map[string]string{"TSDB_URL": "https://tsdb:9090", "TSDB_AUTH": "mtls", "TSDB_CA_FILE": pem("ca"), "TSDB_CERT_FILE": pem("client"), "TSDB_KEY_FILE": pem("client-key")}, ""},
		{"nvcf grpc CA on http", map[string]string{"NVCF_GRPC_CA_FILE": pem("ca")}, "apply only with NVCF_TRANSPORT=grpc"},
		{"nvcf grpc CA and insecure", map[string]string{"NVCF_TRANSPORT": "grpc", "NVCF_GRPC_ADDR": "nvcf:443", "NVCF_GRPC_INSECURE": "true", "NVCF_GRPC_CA_FILE": pem("ca")}, "NVCF_GRPC_INSECURE=true turns TLS off"},
		{"nvcf grpc key missing", map[string]string{"NVCF_TRANSPORT": "grpc", "NVCF_GRPC_ADDR": "nvcf:443", "NVCF_GRPC_CERT_FILE": pem("client"), "NVCF_GRPC_KEY_FILE": pem("gone")}, `NVCF_GRPC_KEY_FILE="` + pem("gone") + `"`},
		{"nvcf grpc", map[string]string{"NVCF_TRANSPORT": "grpc", "NVCF_GRPC_ADDR": "nvcf:443", "NVCF_GRPC_CA_FILE": pem("ca"), "NVCF_GRPC_CERT_FILE": pem("client"), "NVCF_GRPC_KEY_FILE": pem("client-key")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := valid()
			for k, v := range tc.env {
				env[k] = v
			}
			setEnv(t, env)
			s, err := Load(nil)
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			if f := s.Cassandra.TLSFiles(); f != nil {
				require.Equal(t, "CASSANDRA_TLS_CA_FILE", f.CASetting)
				require.False(t, f.SkipHostVerification, "host verification is on by default")
			}
			require.Equal(t, "TSDB_KEY_FILE", s.TSDB.TLSFiles().KeySetting)
			require.Equal(t, "NVCF_GRPC_CERT_FILE", s.Scale.NVCFGRPCTLSFiles().CertSetting)
		})
	}
	setEnv(t, valid())
	s, err := Load(nil)
	require.NoError(t, err)
	require.Nil(t, s.Cassandra.TLSFiles(), "no TLS unless CASSANDRA_TLS=true")
}
