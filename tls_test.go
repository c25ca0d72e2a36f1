package function

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
	"function/shared/testenv"
)

// The whole process with TLS on every connection it makes: Cassandra with
// client encryption and a client certificate (a node of the test's own),
// a Prometheus requiring client certificates, and the NVCF simulator's gRPC
// server verifying them. It becomes ready and an activation is written
// over gRPC; a second process given the wrong Cassandra CA stays unready
// and says which setting to fix. No private key, nor the NVCF token,
// appears in either process's log or in the metrics.
func TestTLSEverywhereAndNoKeyInLogsOrMetrics(t *testing.T) {
	node := testenv.StartCassandraTLS(t)
	certs := node.Certs
	prom := testenv.StartPrometheusMTLS(t, certs)
	simTLS, err := nvcfsim.ServerTLS(certs.PEM("server"), certs.PEM("server-key"), certs.PEM("ca"))
	require.NoError(t, err)
	sim, err := nvcfsim.Start(nvcfsim.Options{GRPCTLS: simTLS})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close(context.Background()) })
	const nvcfTok = "nvcf-TLS-SECRET-51c0"
	sim.SetAcceptedTokens(nvcfTok)
	sim.Register(nvcfsim.FunctionVersion{FunctionID: "fn-tls", VersionID: "ver-tls", NcaID: "nca",
		Specs: []nvcfsim.DeploymentSpec{{GPU: "L40", MinInstances: 1, MaxInstances: 4}}})

	dir := t.TempDir()
	tokFile := filepath.Join(dir, "nvcf-token")
	require.NoError(t, os.WriteFile(tokFile, []byte(nvcfTok+"\n"), 0o600))
	metricsAddr, err := harness.FreeAddr()
	require.NoError(t, err)
	env := map[string]string{
		"CASSANDRA_HOSTS": node.Hosts[0], "CASSANDRA_TLS": "true",
		// The node may serve other tests of this run.
		"CASSANDRA_KEYSPACE":    fmt.Sprintf("tls_function_%d", time.Now().UnixNano()%1e9),
		"CASSANDRA_TLS_CA_FILE": certs.PEM("ca"), "CASSANDRA_TLS_CERT_FILE": certs.PEM("client"), "CASSANDRA_TLS_KEY_FILE": certs.PEM("client-key"),
		"TSDB_URL": prom.URL, "TSDB_AUTH": "mtls",
		"TSDB_CA_FILE": certs.PEM("ca"), "TSDB_CERT_FILE": certs.PEM("client"), "TSDB_KEY_FILE": certs.PEM("client-key"),
		"NVCF_TRANSPORT": "grpc", "NVCF_GRPC_ADDR": sim.GRPCAddr(), "NVCF_TOKEN_FILE": tokFile,
		"NVCF_GRPC_CA_FILE": certs.PEM("ca"), "NVCF_GRPC_CERT_FILE": certs.PEM("client"), "NVCF_GRPC_KEY_FILE": certs.PEM("client-key"),
		"K_SINK": "http://127.0.0.1:9", "LOG_LEVEL": "debug", "METRICS_ADDRESS": metricsAddr,
	}
	bin := funcBinary(t)
	p, err := harness.StartFunction(context.Background(), bin, "tls", dir, env, 90*time.Second)
	require.NoError(t, err, "ready over TLS to Cassandra and the TSDB")
	defer p.Stop()
	code, body := post(t, p.URL(), ceHeaders("com.nvidia.nvcf.autoscaler.function.activate"), `{"functionId":"fn-tls","functionVersionId":"ver-tls"}`)
	require.Equal(t, http.StatusOK, code, body)
	writes := sim.Writes()
	require.Len(t, writes, 1, "the activation's write, over gRPC with TLS")
	require.Equal(t, "grpc", writes[0].Transport)
	require.Equal(t, 1, writes[0].Applied)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.Stop()

	// The wrong CA for Cassandra: never ready, and the warning it repeats
	// names the setting.
	env["CASSANDRA_TLS_CA_FILE"] = certs.PEM("other-ca")
	env["METRICS_ADDRESS"] = ""
	_, err = harness.StartFunction(context.Background(), bin, "tls-wrong-ca", dir, env, 5*time.Second)
	require.ErrorContains(t, err, "not ready")
	wrong, err := os.ReadFile(filepath.Join(dir, "tls-wrong-ca.log"))
	require.NoError(t, err)
	require.Contains(t, string(wrong), `the server's certificate is not signed by the CA of CASSANDRA_TLS_CA_FILE=\"`+certs.PEM("other-ca"))

	logs, err := os.ReadFile(p.LogPath)
	require.NoError(t, err)
	require.Contains(t, string(logs), `"msg":"dependencies connected; serving"`)
	secrets := []string{nvcfTok, "PRIVATE KEY"}
	for _, key := range []string{"client-key", "server-key", "ca-key", "other-ca-key"} {
		secrets = append(secrets, keyLines(t, certs.PEM(key))...)
	}
	for name, text := range map[string][]byte{"log": logs, "wrong-CA log": wrong, "metrics": metrics} {
		for _, s := range secrets {
			require.NotContains(t, string(text), s, "%s leaks key material or a token", name)
		}
	}
}

// keyLines are the base64 lines of a PEM key file: any of them in a log
// would be a piece of the key.
func keyLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(b)
	require.NotNil(t, block, path)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	require.NotEmpty(t, lines)
	return lines
}
