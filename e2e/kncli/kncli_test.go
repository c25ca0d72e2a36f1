// Package kncli checks the repository against the real kn func CLI
// (knative.dev/func v0.44.0, built by install-func.sh): `func build` with the
// host builder accepts the root func.yaml and produces an OCI image, and
// `func run --container=false` serves the function so that CloudEvents
// posted to it get the answers an operator would expect, and `func
// deploy` makes a Service that Knative Serving's own webhook and
// controller take (deploy_test.go; the local control plane and Knative
// must run: e2e/kube/knative.sh).
//
// Run with `make test`. A bare `go test ./...` runs it only when the func
// CLI is already installed and the local stack is up; otherwise it skips
// naming `make test`. Under CI=true or AUTOSCALER_REQUIRE_SERVERS=1 a
// missing CLI is installed and a missing server is a failure.
package kncli

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/shared/testenv"
	"function/shared/tsdb/tsdbtest"
)

const (
	funcModule  = "knative.dev/func"
	funcVersion = "v0.44.0"
	// The image name `func build` records; nothing is pushed.
	registry = "localhost:5000/kncli"
)

func TestFuncCLIBuildsAndRunsTheFunction(t *testing.T) {
	if testing.Short() {
		t.Skip("kn func CLI test skipped in -short mode; run `make test`")
	}
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	funcBin := requireFuncCLI(t, root)

	logDir := filepath.Join(root, ".cache", "kncli")
	require.NoError(t, os.RemoveAll(logDir))
	require.NoError(t, os.MkdirAll(logDir, 0o755))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("func logs are in %s", logDir)
		}
	})

	// A copy of the sources, so `.func/` and the func.yaml that `func build`
	// rewrites (it drops comments and adds the registry) stay out of the
	// checkout.
	dir := t.TempDir()
	require.NoError(t, copySources(root, dir))

	env := funcEnv(t)

	// 1. func build --builder=host: a multi-platform OCI image on disk.
	buildLog := filepath.Join(logDir, "build.log")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := runLogged(ctx, dir, env, buildLog, funcBin, "build", "--builder=host")
	buildTime := time.Since(start)
	require.NoError(t, err, "func build failed; %s:\n%s", buildLog, tailOf(out, 40))
	require.Contains(t, out, "Function built")
	requireOCIImage(t, dir)
	t.Logf("RESULT kncli: func build --builder=host (linux amd64, arm64, arm/v7) took %.1fs", buildTime.Seconds())

	// 2. func run --container=false. The host runner starts the function
	// with only PORT and PWD in its environment (func v0.44.0
	// pkg/functions/runner.go), so `--env` and our environment do not reach
	// it: configuration goes through func-go's ./cfg file in the function
	// root, which is the process's working directory. The port is func's
	// choice too (8080 when free), reported once the function is ready.
	var sunk atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		sunk.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sink.Close()
	keyspace := fmt.Sprintf("kncli_%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() { dropKeyspace(t, hosts, keyspace) })
	// Three active versions of this run only: the shared TSDB may hold
	// anything else, and discovery is told to look at these alone.
	var workers []tsdbtest.Worker
	for i := 0; i < 3; i++ {
		workers = append(workers, tsdbtest.Worker{FunctionID: fmt.Sprintf("%s-f%d", keyspace, i), FunctionVersionID: fmt.Sprintf("%s-v%d", keyspace, i),
			NcaID: "nca", Instances: 1, Utilization: 0.5, RequestsPerSecond: 1, Extra: map[string]string{"kncli_run": keyspace}})
	}
	now := time.Now()
	require.NoError(t, tsdbtest.ImportVM(context.Background(), vm, tsdbtest.Generate(workers, now.Add(-5*time.Minute), now)))
	writeCfg(t, dir, map[string]string{
		"CASSANDRA_HOSTS":    hosts[0],
		"CASSANDRA_KEYSPACE": keyspace,
		"TSDB_URL":           vm,
		"TSDB_ENV_LABEL":     "kncli_run",
		"TSDB_ENV_VALUE":     keyspace,
		"K_SINK":             sink.URL,
		"NVCF_DRY_RUN":       "true",
		"AUTOSCALER_ROLE":    "all",
	})

	runLog := filepath.Join(logDir, "run.log")
	run := startFuncRun(t, dir, env, runLog, funcBin)
	port, readyAfter := run.waitForPort(t, 3*time.Minute)
	base := "http://127.0.0.1:" + port
	require.Equal(t, http.StatusOK, get(t, base+"/health/readiness"), "func reported the function running, so it must be ready")
	t.Logf("RESULT kncli: func run --container=false to first ready took %.1fs (port %s)", readyAfter.Seconds(), port)

	// 3. CloudEvents, as with curl.
	t.Run("binary event of an unknown type is a 400 naming it", func(t *testing.T) {
		status, body := post(t, base, binaryHeaders("com.example.kncli.unknown"), `{}`)
		require.Equal(t, http.StatusBadRequest, status, body)
		require.Contains(t, body, `unknown event type "com.example.kncli.unknown"`)
		require.Contains(t, body, "dev.knative.sources.ping", "the message lists the types that are handled")
	})
	t.Run("structured event without a source is a 400", func(t *testing.T) {
		status, body := post(t, base, map[string]string{"Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","id":"kncli-2","type":"dev.knative.sources.ping","data":{}}`)
		require.Equal(t, http.StatusBadRequest, status, body)
		require.Contains(t, body, "source")
	})
	t.Run("structured body that is not JSON is a 400 saying so", func(t *testing.T) {
		status, body := post(t, base, map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":`)
		require.Equal(t, http.StatusBadRequest, status, body)
		require.Contains(t, body, "malformed CloudEvent (structured mode)")
		require.Equal(t, http.StatusOK, get(t, base+"/health/liveness"))
	})
	t.Run("binary event without specversion is a 415 saying what a CloudEvent needs", func(t *testing.T) {
		hdr := binaryHeaders("dev.knative.sources.ping")
		delete(hdr, "Ce-Specversion")
		status, body := post(t, base, hdr, `{}`)
		require.Equal(t, http.StatusUnsupportedMediaType, status, body)
		require.Contains(t, body, "Ce-Specversion")
	})
	t.Run("PingSource tick runs discovery", func(t *testing.T) {
		hdr := binaryHeaders("dev.knative.sources.ping")
		hdr["Ce-Source"] = "/apis/v1/namespaces/nvcf-autoscaler/pingsources/discovery"
		status, body := post(t, base, hdr, `{"message":"tick"}`)
		require.True(t, status >= 200 && status < 300, "ping answered %d: %s", status, body)
		cycle := discoveryLine(t, runLog)
		t.Logf("discovery: %s; bucket events received by K_SINK: %d", cycle, sunk.Load())
		require.Contains(t, cycle, `"found":3`, "discovery finds exactly this run's three versions")
		require.Positive(t, sunk.Load(), "bucket events reach K_SINK")
	})

	// 4. Stop by process group and check nothing is left.
	run.stop(t)
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("127.0.0.1:%s still accepts connections after func run stopped", port)
	}
}

// requireFuncCLI returns the func CLI at .cache/tools/bin/func when it is
// the pinned version. When servers are required (make test, CI) a missing
// CLI is built with install-func.sh; otherwise the test skips.
// `kn func deploy` from func.yaml makes a cluster-local Service: the real
// CLI reads the visibility label from func.yaml's deploy section (it puts
// deploy labels on the Knative Service it creates). Only the Broker calls
// the function; a public one would take events from anyone.
func TestFuncYAMLDeploysClusterLocal(t *testing.T) {
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	funcBin := requireFuncCLI(t, root)
	out, err := exec.Command(funcBin, "config", "labels", "--path", root).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), `Label with key "networking.knative.dev/visibility" and value "cluster-local"`)
}

func requireFuncCLI(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, ".cache", "tools", "bin", "func")
	if v, err := cliVersion(bin); err == nil && v == funcVersion {
		return bin
	}
	if !testenv.Required() {
		t.Skipf("kn func CLI test skipped: %s %s is not installed at %s; run `make test` (or e2e/kncli/install-func.sh)", funcModule, funcVersion, bin)
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(root, "e2e", "kncli", "install-func.sh"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "install-func.sh:\n%s", out)
	v, err := cliVersion(bin)
	require.NoError(t, err)
	require.Equal(t, funcVersion, v)
	t.Logf("RESULT kncli: installing the func CLI took %.1fs", time.Since(start).Seconds())
	return bin
}

func cliVersion(bin string) (string, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", err
	}
	if bi.Main.Path == funcModule {
		return bi.Main.Version, nil
	}
	for _, d := range bi.Deps {
		if d.Path == funcModule {
			return d.Version, nil
		}
	}
	return "", fmt.Errorf("%s was not built from %s", bin, funcModule)
}

// funcEnv is the environment of both func commands. GOFLAGS gets -mod=mod:
// func's Go scaffolding has its own go.mod (module s, go 1.21, func-go's
// requirements) that replaces `function` with our module, and ours needs a
// newer go line and newer dependencies, so a plain `go build` there stops
// with "updates to go.mod needed". -mod=mod lets go complete that generated
// go.mod (our sources are untouched).
func funcEnv(t *testing.T) []string {
	t.Helper()
	goflags, err := exec.Command("go", "env", "GOFLAGS").Output()
	require.NoError(t, err, "go env GOFLAGS")
	flags := strings.TrimSpace(string(goflags))
	if !strings.Contains(flags, "-mod=") {
		flags = strings.TrimSpace(flags + " -mod=mod")
	}
	return append(os.Environ(),
		"FUNC_ENABLE_HOST_BUILDER=true",
		"FUNC_REGISTRY="+registry,
		"GOFLAGS="+flags,
	)
}

// copySources copies what git would commit (tracked files plus untracked
// files that are not ignored) from root to dst. Without git, it copies the
// tree minus .git, .cache and .func.
func copySources(root, dst string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return copyTree(root, dst)
	}
	seen := map[string]bool{}
	for _, rel := range strings.Split(string(out), "\x00") {
		if rel == "" || seen[rel] {
			continue
		}
		seen[rel] = true
		if err := copyEntry(filepath.Join(root, rel), filepath.Join(dst, rel)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted in the working tree, not yet in git
			}
			return err
		}
	}
	return nil
}

func copyTree(root, dst string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch rel {
			case ".git", ".cache", ".func":
				return filepath.SkipDir
			}
			return nil
		}
		return copyEntry(p, filepath.Join(dst, rel))
	})
}

func copyEntry(src, dst string) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, info.Mode().Perm())
}

// runLogged runs a command to completion, writing its output to logPath and
// returning it.
func runLogged(ctx context.Context, dir string, env []string, logPath, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(logPath, out, 0o644)
	return string(out), err
}

// requireOCIImage checks the host builder's output: an OCI layout whose
// index has a linux/amd64 manifest.
func requireOCIImage(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".func", "builds", "last", "oci", "index.json"))
	require.NoError(t, err, "the host builder leaves the image in .func/builds/last/oci")
	var index struct {
		Manifests []struct {
			Platform struct{ OS, Architecture string } `json:"platform"`
		} `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(b, &index))
	var platforms []string
	for _, m := range index.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	require.Contains(t, platforms, "linux/amd64", "index.json: %s", b)
}

// writeCfg writes func-go's ./cfg: KEY=VALUE lines, nothing else (blank
// lines and comments are errors there).
func writeCfg(t *testing.T, dir string, kv map[string]string) {
	t.Helper()
	var sb strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&sb, "%s=%s\n", k, v)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cfg"), []byte(sb.String()), 0o600))
}

type funcRun struct {
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	err     error
}

// startFuncRun starts `func run` in its own process group: func starts the
// function binary as its child, and the group lets us stop both by PID.
// func dies with this process, as the harness's servers do, but by
// SIGTERM: func v0.44.0 stops the function it runs on SIGTERM (pkg/app
// cancels its context, and the runner's exec.CommandContext kills the
// function), where a SIGKILL would leave the function, out of reach of our
// death signal, holding the port the next run's `func run` wants.
func startFuncRun(t *testing.T, dir string, env []string, logPath, funcBin string) *funcRun {
	t.Helper()
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(funcBin, "run", "--builder=host", "--container=false")
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = harness.ChildOfThisProcess()
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	r := &funcRun{cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go func() {
		r.err = cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	t.Cleanup(func() { r.kill() })
	return r
}

var runningOn = regexp.MustCompile(`Running on host port (\d+)`)

// waitForPort waits for func's "Running on host port N", which it prints
// once its own poll of /health/readiness got a 200.
func (r *funcRun) waitForPort(t *testing.T, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(r.logPath)
		if m := runningOn.FindSubmatch(b); m != nil {
			return string(m[1]), time.Since(r.started)
		}
		select {
		case <-r.done:
			t.Fatalf("func run exited (%v) before the function was ready; %s:\n%s", r.err, r.logPath, tailOf(string(b), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("func run: function not ready after %s; %s:\n%s", timeout, r.logPath, tailOf(string(b), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM to the process group, waits for func to exit and for
// every process of the group to be gone.
func (r *funcRun) stop(t *testing.T) {
	t.Helper()
	pgid := r.cmd.Process.Pid
	require.NoError(t, syscall.Kill(-pgid, syscall.SIGTERM))
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		r.kill()
		t.Fatalf("func run did not exit within 15s of SIGTERM")
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			r.kill()
			t.Fatalf("processes of group %d still running 10s after func run exited", pgid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *funcRun) kill() {
	if r.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
	}
}

// discoveryLine returns the function's "discovery cycle done" log line.
func discoveryLine(t *testing.T, logPath string) string {
	t.Helper()
	var line string
	require.Eventually(t, func() bool {
		f, err := os.Open(logPath)
		if err != nil {
			return false
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 0, 64*1024), 1<<20)
		for s.Scan() {
			if strings.Contains(s.Text(), `"msg":"discovery cycle done"`) {
				line = s.Text()
			}
		}
		return line != ""
	}, 10*time.Second, 100*time.Millisecond, "no \"discovery cycle done\" line in %s", logPath)
	return line
}

func binaryHeaders(typ string) map[string]string {
	return map[string]string{
		"Ce-Id": fmt.Sprintf("kncli-%d", time.Now().UnixNano()), "Ce-Specversion": "1.0", "Ce-Source": "kncli-test",
		"Ce-Type": typ, "Content-Type": "application/json",
	}
}

func post(t *testing.T, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) int {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func dropKeyspace(t *testing.T, hosts []string, keyspace string) {
	cluster := gocql.NewCluster(hosts...)
	cluster.Timeout = 30 * time.Second
	s, err := cluster.CreateSession()
	if err != nil {
		t.Logf("drop keyspace %s: %v", keyspace, err)
		return
	}
	defer s.Close()
	if err := s.Query(`DROP KEYSPACE IF EXISTS ` + keyspace).Exec(); err != nil {
		t.Logf("drop keyspace %s: %v", keyspace, err)
	}
}

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// A test that dies without stopping `func run` (go test's -timeout panics
// it) must leave neither func nor the function func runs: they hold the
// port the next run's `func run` wants. The child below starts, through
// startFuncRun, a stand-in for func that behaves as func v0.44.0 does on
// SIGTERM (it ends the function it started, then exits) and exits without
// stopping it; both must be gone soon after, where before they ran on
// under init. The stand-in leaves the real CLI out: this is about the
// process attributes, and the CLI is not installed everywhere the test
// runs.
func TestFuncRunDiesWithTheTest(t *testing.T) {
	if dir := os.Getenv("KNCLI_RUN_AND_EXIT"); dir != "" {
		r := startFuncRun(t, dir, os.Environ(), filepath.Join(dir, "run.log"), filepath.Join(dir, "func"))
		var function []byte
		require.Eventually(t, func() bool {
			function, _ = os.ReadFile(filepath.Join(dir, "function.pid"))
			return strings.HasSuffix(string(function), "\n")
		}, 10*time.Second, 20*time.Millisecond, "the stand-in started no function")
		fmt.Printf("PIDS %d %s", r.cmd.Process.Pid, function)
		os.Exit(0) // no stop: as a test killed by its timeout
	}
	dir := t.TempDir()
	// The trap is set before the function starts, so that the function
	// is known only once a SIGTERM would end it.
	standIn := "#!/bin/sh\ntrap 'kill -KILL $fn; exit 143' TERM\nsleep 600 &\nfn=$!\necho $fn > function.pid\nwait\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "func"), []byte(standIn), 0o755))
	cmd := exec.Command(os.Args[0], "-test.run=^TestFuncRunDiesWithTheTest$")
	cmd.Env = append(os.Environ(), "KNCLI_RUN_AND_EXIT="+dir)
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	var funcPID, functionPID int
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "PIDS "); ok {
			_, err := fmt.Sscan(rest, &funcPID, &functionPID)
			require.NoError(t, err)
		}
	}
	require.Positive(t, functionPID, "the child started nothing: %s", out)
	for _, pid := range []int{funcPID, functionPID} {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	require.Eventually(t, func() bool { return testenv.Exited(funcPID) && testenv.Exited(functionPID) }, 5*time.Second, 50*time.Millisecond,
		"func (%d) or its function (%d) outlived the test that ran them", funcPID, functionPID)
}
