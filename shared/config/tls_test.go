package config

import (
	"testing"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
	"function/shared/tlsfiles"
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
		{"nvcf api CA on an http URL", map[string]string{"NVCF_API_CA_FILE": pem("ca")}, `NVCF_API_CA_FILE, NVCF_API_CERT_FILE and NVCF_API_KEY_FILE apply only to an https NVCF_API_URL (it is "http://127.0.0.1:9401")`},
		{"nvcf api CA with grpc", map[string]string{"NVCF_TRANSPORT": "grpc", "NVCF_GRPC_ADDR": "nvcf:443", "NVCF_API_CA_FILE": pem("ca")}, "apply only with NVCF_TRANSPORT=http (use NVCF_GRPC_CA_FILE"},
		{"nvcf api CA missing", map[string]string{"NVCF_API_URL": "https://nvcf.internal", "NVCF_API_CA_FILE": pem("gone")}, `NVCF_API_CA_FILE="` + pem("gone") + `": cannot read the CA file: no such file or directory`},
		{"nvcf api CA not PEM", map[string]string{"NVCF_API_URL": "https://nvcf.internal", "NVCF_API_CA_FILE": pem("client-key")}, `NVCF_API_CA_FILE="` + pem("client-key") + `": no PEM certificate in the CA file`},
		{"nvcf api cert without key", map[string]string{"NVCF_API_URL": "https://nvcf.internal", "NVCF_API_CERT_FILE": pem("client")}, "NVCF_API_CERT_FILE and NVCF_API_KEY_FILE go together"},
		{"nvcf api key of another certificate", map[string]string{"NVCF_API_URL": "https://nvcf.internal", "NVCF_API_CERT_FILE": pem("client"), "NVCF_API_KEY_FILE": pem("server-key")},
			`NVCF_API_CERT_FILE="` + pem("client") + `" and NVCF_API_KEY_FILE="` + pem("server-key") + `": not a usable certificate and key`},
		{"nvcf api mtls", map[string]string{"NVCF_API_URL": "https://nvcf.internal", "NVCF_API_CA_FILE": pem("ca"), "NVCF_API_CERT_FILE": pem("client"), "NVCF_API_KEY_FILE": pem("client-key")}, ""},
		{"nvcf oauth CA without a token URL", map[string]string{"NVCF_OAUTH_CA_FILE": pem("ca")}, `apply only to an https NVCF_OAUTH_TOKEN_URL (it is "")`},
		{"nvcf oauth CA on an http token URL", map[string]string{"NVCF_OAUTH_TOKEN_URL": "http://auth.internal/token", "NVCF_OAUTH_CLIENT_ID": "id", "NVCF_OAUTH_CLIENT_SECRET_FILE": "/run/secret", "NVCF_OAUTH_CA_FILE": pem("ca")},
			"NVCF_OAUTH_CA_FILE, NVCF_OAUTH_CERT_FILE and NVCF_OAUTH_KEY_FILE apply only to an https NVCF_OAUTH_TOKEN_URL"},
		{"nvcf oauth key missing", map[string]string{"NVCF_OAUTH_TOKEN_URL": "https://auth.internal/token", "NVCF_OAUTH_CLIENT_ID": "id", "NVCF_OAUTH_CLIENT_SECRET_FILE": "/run/secret",
			"NVCF_OAUTH_CERT_FILE": pem("client"), "NVCF_OAUTH_KEY_FILE": pem("gone")}, `NVCF_OAUTH_KEY_FILE="` + pem("gone") + `": cannot read the client key`},
		// The token endpoint serves either transport.
		{"nvcf oauth mtls with grpc", map[string]string{"NVCF_TRANSPORT": "grpc", "NVCF_GRPC_ADDR": "nvcf:443", "NVCF_OAUTH_TOKEN_URL": "https://auth.internal/token", "NVCF_OAUTH_CLIENT_ID": "id", "NVCF_OAUTH_CLIENT_SECRET_FILE": "/run/secret",
			"NVCF_OAUTH_CA_FILE": pem("other-ca"), "NVCF_OAUTH_CERT_FILE": pem("other-client"), "NVCF_OAUTH_KEY_FILE": pem("other-client-key")}, ""},
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
			require.Equal(t, tlsfiles.Files{CAFile: tc.env["NVCF_API_CA_FILE"], CASetting: "NVCF_API_CA_FILE", CertFile: tc.env["NVCF_API_CERT_FILE"], CertSetting: "NVCF_API_CERT_FILE",
				KeyFile: tc.env["NVCF_API_KEY_FILE"], KeySetting: "NVCF_API_KEY_FILE"}, s.Scale.NVCFAPITLSFiles())
			require.Equal(t, tlsfiles.Files{CAFile: tc.env["NVCF_OAUTH_CA_FILE"], CASetting: "NVCF_OAUTH_CA_FILE", CertFile: tc.env["NVCF_OAUTH_CERT_FILE"], CertSetting: "NVCF_OAUTH_CERT_FILE",
				KeyFile: tc.env["NVCF_OAUTH_KEY_FILE"], KeySetting: "NVCF_OAUTH_KEY_FILE"}, s.Scale.NVCFOAuthTLSFiles())
		})
	}
	setEnv(t, valid())
	s, err := Load(nil)
	require.NoError(t, err)
	require.Nil(t, s.Cassandra.TLSFiles(), "no TLS unless CASSANDRA_TLS=true")
}
