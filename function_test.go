package function

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/shared/testenv"
)

// The root function runs inside func-go's HTTP runtime exactly as kn func
// builds it (e2e/funcmain is the scaffolding's main), and is driven with
// plain HTTP requests, as an operator would with curl.

func post(t *testing.T, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ceHeaders(typ string) map[string]string {
	return map[string]string{
		"Ce-Id": "curl-1", "Ce-Specversion": "1.0", "Ce-Source": "curl", "Ce-Type": typ,
		"Content-Type": "application/json",
	}
}

// funcBinary builds the function as kn func's scaffolding would, once.
func funcBinary(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	bin, err := harness.Build(root)
	require.NoError(t, err)
	return bin
}

func TestRootFunctionOverHTTP(t *testing.T) {
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	bin := funcBinary(t)
	logDir := t.TempDir()
	ctx := context.Background()
	p, err := harness.StartFunction(ctx, bin, "root", logDir, map[string]string{
		"CASSANDRA_HOSTS": hosts[0], "CASSANDRA_KEYSPACE": testenv.Keyspace(t, "test_root"),
		"TSDB_URL": vm, "K_SINK": "http://127.0.0.1:9", "NVCF_DRY_RUN": "true",
	}, 90*time.Second)
	require.NoError(t, err)
	defer p.Stop()

	cases := []struct {
		name   string
		hdr    map[string]string
		body   string
		status int
		says   string
	}{
		{"unknown type", ceHeaders("com.example.unknown"), `{}`, 400, `unknown event type "com.example.unknown"`},
		{"bucket with bad payload", ceHeaders("com.nvidia.nvcf.autoscaler.bucket"), `{"bucket":"x"}`, 400, "bucket event curl-1"},
		{"bucket out of range", ceHeaders("com.nvidia.nvcf.autoscaler.bucket"), `{"bucket":9,"buckets":4,"cycle":1,"deadline":"2030-01-01T00:00:00Z"}`, 400, "out of range"},
		{"activation with a bad id", ceHeaders("com.nvidia.nvcf.autoscaler.function.activate"), `{"functionId":"a b","functionVersionId":"v"}`, 400, "functionId"},
		{"missing required attribute", map[string]string{"Ce-Id": "x", "Ce-Specversion": "1.0", "Ce-Type": "t", "Content-Type": "application/json"}, `{}`, 400, "source"},
	}
	// A 400 quotes a bounded part of what was wrong (issue 15, defect 6).
	status, body := post(t, p.URL(), ceHeaders("com.nvidia.nvcf.autoscaler.function.activate"),
		`{"functionId":"`+strings.Repeat("x", 60<<10)+`","functionVersionId":"v"}`)
	require.Equal(t, 400, status)
	require.Less(t, len(body), 2048, "a 60 KiB id (under MAX_EVENT_BYTES) is not echoed whole")
	require.Contains(t, body, "functionId")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := post(t, p.URL(), c.hdr, c.body)
			require.Equal(t, c.status, status, body)
			require.Contains(t, body, c.says)
		})
	}

	// A structured-mode event that is not JSON: a 400 saying so, and the
	// process goes on serving.
	status, body = post(t, p.URL(), map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":`)
	require.Equal(t, 400, status, body)
	require.Contains(t, body, "malformed CloudEvent (structured mode)")

	// Still serving after all of that.
	resp, err := http.Get("http://" + p.Addr + "/health/liveness")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.True(t, p.Ready(ctx))

	// A real tick: discovery runs (its sink is unreachable, so the cycle
	// answers a retryable 503 naming the buckets, or 200 when there is
	// nothing to send).
	status, body = post(t, p.URL(), ceHeaders("dev.knative.sources.ping"), `{"message":"tick"}`)
	require.Contains(t, []int{200, 503}, status, body)
}

func TestNotReadyUntilCassandraAnswers(t *testing.T) {
	vm := testenv.RequireVM(t)
	bin := funcBinary(t)
	addr, err := harness.FreeAddr()
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LISTEN_ADDRESS="+addr, "CASSANDRA_HOSTS=127.0.0.1:1", "TSDB_URL="+vm,
		"K_SINK=http://127.0.0.1:9", "NVCF_DRY_RUN=true")
	logf, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/health/liveness")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 100*time.Millisecond)
	resp, err := http.Get("http://" + addr + "/health/readiness")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 503, resp.StatusCode, "not ready while Cassandra does not answer")
	status, body := post(t, "http://"+addr+"/", ceHeaders("dev.knative.sources.ping"), `{}`)
	require.Equal(t, 503, status, "a retry can fix this: %s", body)
	require.Contains(t, body, "not ready")

	// What no retry can fix is a 400 even now: a 503 would have Knative
	// redeliver a malformed event until its retries run out.
	future := time.Now().Add(time.Hour)
	for _, c := range []struct{ typ, body, says string }{
		{"com.nvidia.nvcf.autoscaler.bucket", `{"bucket":"x"}`, "bucket event curl-1"},
		{"com.nvidia.nvcf.autoscaler.bucket", fmt.Sprintf(`{"bucket":0,"buckets":1,"cycle":%d,"deadline":%q}`,
			future.UnixMilli(), future.Add(time.Minute).Format(time.RFC3339)), "MAX_CLOCK_SKEW"},
		{"com.nvidia.nvcf.autoscaler.function.activate", `{"functionId":"a b","functionVersionId":"v"}`, "functionId"},
		{"com.example.unknown", `{}`, "unknown event type"},
	} {
		status, body := post(t, "http://"+addr+"/", ceHeaders(c.typ), c.body)
		require.Equal(t, 400, status, "%s %s: %s", c.typ, c.body, body)
		require.Contains(t, body, c.says)
	}
	now := time.Now()
	status, body = post(t, "http://"+addr+"/", ceHeaders("com.nvidia.nvcf.autoscaler.bucket"),
		fmt.Sprintf(`{"bucket":0,"buckets":1,"cycle":%d,"deadline":%q}`, now.UnixMilli(), now.Add(time.Minute).Format(time.RFC3339)))
	require.Equal(t, 503, status, "a valid bucket waits for readiness: %s", body)
}

func TestBadConfigurationStopsStartNamingTheVariable(t *testing.T) {
	bin := funcBinary(t)
	addr, err := harness.FreeAddr()
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.Env = []string{"LISTEN_ADDRESS=" + addr, "PATH=" + os.Getenv("PATH"), "BUCKETS=-1", "K_SINK=http://127.0.0.1:9", "NVCF_DRY_RUN=true"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the process must exit")
	require.Contains(t, string(out), "TSDB_URL is not set")
	require.Contains(t, string(out), "BUCKETS=-1")
}

// A password in TSDB_URL would be printed wherever the URL is (the start-up
// line, every "dependencies not ready" warning) and would sit in a
// ConfigMap: Start refuses it, pointing to the token file, and never repeats
// it, whatever else is wrong with the URL. Every line the process writes is
// searched for it.
func TestPasswordInTSDBURLIsRefusedAndNeverPrinted(t *testing.T) {
	bin := funcBinary(t)
	const pw = "tsdb-PASSWORD-9d2e"
	for _, tsdbURL := range []string{
		"http://autoscaler:" + pw + "@127.0.0.1:1",
		"http://autoscaler:" + pw + "@127.0.0.1:bad port/", // unparsable too
		"http://" + pw + "@127.0.0.1:1",                    // a bare token as the user
	} {
		addr, err := harness.FreeAddr()
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = []string{"LISTEN_ADDRESS=" + addr, "PATH=" + os.Getenv("PATH"), "TSDB_URL=" + tsdbURL,
			"CASSANDRA_HOSTS=127.0.0.1:1", "K_SINK=http://127.0.0.1:9", "NVCF_DRY_RUN=true"}
		out, err := cmd.CombinedOutput()
		expired := ctx.Err()
		cancel()
		for i, line := range strings.Split(string(out), "\n") {
			require.NotContains(t, line, pw, "line %d", i+1)
		}
		require.Error(t, err, "Start must refuse the URL")
		require.NoError(t, expired, "the process must exit, not serve")
		require.Contains(t, string(out), "TSDB_URL")
		require.Contains(t, string(out), "TSDB_TOKEN_FILE")
	}
}

// Secrets fed through every channel (env and files) must appear in no log
// line and no metric.
func TestSecretsAppearInNoLogAndNoMetric(t *testing.T) {
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	bin := funcBinary(t)
	dir := t.TempDir()
	const (
		cassPW  = "cass-SECRET-4f9a"
		tsdbTok = "tsdb-SECRET-77c1"
		nvcfTok = "nvcf-SECRET-0b3e"
	)
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o600))
		return p
	}
	metricsAddr, err := harness.FreeAddr()
	require.NoError(t, err)
	p, err := harness.StartFunction(context.Background(), bin, "secrets", dir, map[string]string{
		"CASSANDRA_HOSTS": hosts[0], "CASSANDRA_KEYSPACE": testenv.Keyspace(t, "test_secret"),
		"CASSANDRA_USERNAME": "autoscaler", "CASSANDRA_PASSWORD": cassPW,
		"TSDB_URL": vm, "TSDB_AUTH": "token", "TSDB_TOKEN_FILE": write("tsdb", tsdbTok),
		"NVCF_API_URL": "http://127.0.0.1:9", "NVCF_TOKEN_FILE": write("nvcf", nvcfTok), "NVCF_MAX_ATTEMPTS": "1",
		"K_SINK": "http://127.0.0.1:9", "LOG_LEVEL": "debug", "METRICS_ADDRESS": metricsAddr,
	}, 90*time.Second)
	require.NoError(t, err)
	// Exercise every path that logs: a tick, an activation whose NVCF
	// write fails (the error path), bad events.
	post(t, p.URL(), ceHeaders("dev.knative.sources.ping"), `{}`)
	post(t, p.URL(), ceHeaders("com.nvidia.nvcf.autoscaler.function.activate"), `{"functionId":"f","functionVersionId":"v"}`)
	post(t, p.URL(), ceHeaders("nope"), `{}`)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), "nvcf_autoscaler_ready")
	p.Stop()
	logs, err := os.ReadFile(p.LogPath)
	require.NoError(t, err)
	require.Contains(t, string(logs), `"msg":"starting"`)
	for _, secret := range []string{cassPW, tsdbTok, nvcfTok} {
		require.NotContains(t, string(logs), secret)
		require.NotContains(t, string(metrics), secret)
	}
}
