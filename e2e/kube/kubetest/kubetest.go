// Package kubetest gives tests the local Kubernetes control plane of
// e2e/kube/kube.sh: it starts the control plane when it is not running
// (a bare `go test` skips when that is impossible, CI=true and
// AUTOSCALER_REQUIRE_SERVERS=1 fail), and runs kubectl and helm against it.
// A test binary that started the control plane stops it again from Main.
package kubetest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"function/shared/testenv"
)

// Cluster is a running control plane as the host sees it.
type Cluster struct {
	// Repo is the repository root.
	Repo string
	// Env holds what `kube.sh env` exports (KUBECONFIG, KUBECTL, KUBE_DIR,
	// KUBE_NETNS_PID, ...).
	Env map[string]string
	// Helm is the helm CLI (e2e/packaging/install-helm.sh builds it).
	Helm string
}

var (
	mu      sync.Mutex
	started bool   // this process ran `kube.sh start`
	repo    string // the repository root, once known
)

// Start returns the running control plane, starting it (kube.sh start)
// when it is down. Without one the test skips, or fails when servers are
// required.
func Start(t testing.TB) *Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	root := testenv.RepoRoot(t)
	repo = root
	script := filepath.Join(root, "e2e", "kube", "kube.sh")
	if err := exec.Command(script, "status").Run(); err != nil {
		t.Logf("control plane not running (kube.sh status: %v); starting it with e2e/kube/kube.sh start", err)
		cmd := exec.Command(script, "start")
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Run(); err != nil {
			unavailable(t, fmt.Sprintf("e2e/kube/kube.sh start: %v\n%s", err, log.String()))
		}
		started = true
	}
	out, err := exec.Command(script, "env").Output()
	if err != nil {
		unavailable(t, fmt.Sprintf("e2e/kube/kube.sh env: %v", err))
	}
	c := &Cluster{Repo: root, Env: parseEnv(out)}
	c.Helm = helm(t, root)
	return c
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	msg = "no local Kubernetes control plane: " + msg + "; run `make test` (as root) or `make knative-up`"
	if testenv.Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// parseEnv reads `export K=V` lines.
func parseEnv(out []byte) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			env[k] = v
		}
	}
	return env
}

// helm finds the CLI: $HELM, or the one install-helm.sh builds (built now
// when missing).
func helm(t testing.TB, root string) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	out, err := exec.Command(filepath.Join(root, "e2e", "packaging", "install-helm.sh")).Output()
	if err != nil {
		unavailable(t, fmt.Sprintf("e2e/packaging/install-helm.sh: %v", err))
	}
	return strings.TrimSpace(string(out))
}

// Main runs the tests, then stops the control plane if this test binary
// started it (kube.sh stop, by PID); one that was already running is left
// running. Use it as the package's TestMain body: os.Exit(kubetest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if started {
		cmd := exec.Command(filepath.Join(repo, "e2e", "kube", "kube.sh"), "stop")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "kube.sh stop: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// environ is the process environment with KUBECONFIG pointing at the
// control plane.
func (c *Cluster) environ() []string {
	return append(os.Environ(), "KUBECONFIG="+c.Env["KUBECONFIG"])
}

// run runs name with args against the control plane; the error carries the
// command and its stderr (the API server's message).
func (c *Cluster) run(name string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = c.environ()
	cmd.Dir = c.Repo
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// Kubectl runs kubectl (the one built with the API server) with args.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	return c.run(c.Env["KUBECTL"], nil, args...)
}

// KubectlStdin runs kubectl with args and stdin, e.g. `apply -f -`.
func (c *Cluster) KubectlStdin(stdin []byte, args ...string) (string, error) {
	return c.run(c.Env["KUBECTL"], stdin, args...)
}

// HelmCmd runs helm with args.
func (c *Cluster) HelmCmd(args ...string) (string, error) {
	return c.run(c.Helm, nil, args...)
}

// RequireKnative returns when Knative's processes run on the control plane
// (e2e/kube/knative.sh status); otherwise the test skips naming the
// command that starts them, or fails when servers are required.
func RequireKnative(t testing.TB) {
	t.Helper()
	script := filepath.Join(testenv.RepoRoot(t), "e2e", "kube", "knative.sh")
	if out, err := exec.Command(script, "status").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("Knative (Eventing, Serving's controller and webhook) is not running on the local control plane (%v):\n%s\nrun `make knative-up` (or `make test`)", err, out)
		if testenv.Required() {
			t.Fatal(msg)
		}
		t.Skip("skipped: " + msg)
	}
}
