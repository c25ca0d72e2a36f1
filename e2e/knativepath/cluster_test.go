package knativepath

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"function/e2e/harness"
	"function/e2e/kube/kubetest"
	"function/shared/testenv"
)

// cluster is the local control plane (e2e/kube/kube.sh) with Knative
// Eventing and Serving's controller and webhook running
// (e2e/kube/knative.sh), as their `env` commands describe it.
type cluster struct {
	root       string
	kubeSh     string
	kubectl    string
	kubeconfig string // host side
	netnsPID   string // the node's namespaces
	nodeIP     string // where Knative's processes reach the node
	knativeDir string // knative.sh's state: Knative's logs
}

// requireCluster finds the running control plane and Knative; without
// them the test skips with the command that starts them, or fails under
// CI=true / AUTOSCALER_REQUIRE_SERVERS=1.
func requireCluster(t *testing.T) *cluster {
	t.Helper()
	root := testenv.RepoRoot(t)
	c := &cluster{root: root, kubeSh: filepath.Join(root, "e2e/kube/kube.sh")}
	knativeSh := filepath.Join(root, "e2e/kube/knative.sh")
	kubetest.RequireKnative(t)
	env := map[string]string{}
	for _, script := range []string{c.kubeSh, knativeSh} {
		out, err := exec.Command(script, "env").Output()
		if err != nil {
			t.Fatalf("%s env: %v", script, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
				env[k] = v
			}
		}
	}
	c.kubectl, c.kubeconfig, c.netnsPID = env["KUBECTL"], env["KUBECONFIG"], env["KUBE_NETNS_PID"]
	c.nodeIP, c.knativeDir = env["KNATIVE_NODE_IP"], env["KNATIVE_DIR"]
	if c.kubectl == "" || c.kubeconfig == "" || c.netnsPID == "" || c.nodeIP == "" || c.knativeDir == "" {
		t.Fatalf("kube.sh/knative.sh env lack KUBECTL, KUBECONFIG, KUBE_NETNS_PID, KNATIVE_NODE_IP or KNATIVE_DIR: %v", env)
	}
	return c
}

// kube runs kubectl against the control plane and returns its stdout.
func (c *cluster) kube(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (c *cluster) run(args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, stderr.String())
	}
	return string(out), nil
}

// forward makes LISTEN (in the node) carry connections to DIAL (on the
// host), through kube.sh's forwarder; stopped when the test ends.
func (c *cluster) forward(t *testing.T, name string, specs ...string) {
	t.Helper()
	args := append([]string{"forward", name}, specs...)
	if out, err := exec.Command(c.kubeSh, args...).CombinedOutput(); err != nil {
		t.Fatalf("kube.sh forward %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		pidFile := filepath.Join(c.kubeDir(t), "run", "forward-"+name+".pid")
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
			_ = os.Remove(pidFile)
		}
	})
}

// listensInNode reports whether something in the node accepts on addr's
// port (kube.sh forwards the stack's servers there on all addresses).
func (c *cluster) listensInNode(t *testing.T, addr string) bool {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "-t", c.netnsPID, "-n", "--", "ss", "-Hltn", "sport = :"+port).Output()
	if err != nil {
		t.Fatalf("ss in the node: %v", err)
	}
	return strings.TrimSpace(string(out)) != ""
}

func (c *cluster) kubeDir(t *testing.T) string {
	out, err := exec.Command(c.kubeSh, "env").Output()
	if err != nil {
		t.Fatalf("kube.sh env: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "export KUBE_DIR="); ok {
			return v
		}
	}
	t.Fatal("kube.sh env names no KUBE_DIR")
	return ""
}

// startInNode runs bin in the node (nsenter execs it: the PID is the
// function's own, where Knative's Broker filter delivers to it) listening
// on nodeIP:port, and waits for its readiness.
func (c *cluster) startInNode(t *testing.T, bin, name string, port int, env map[string]string, logDir string) *harness.Process {
	t.Helper()
	addr := net.JoinHostPort(c.nodeIP, strconv.Itoa(port))
	p, err := harness.Launch(bin, name, logDir, addr, env, "nsenter", "-t", c.netnsPID, "-n", "-m", "--")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("%s exited during start-up; log %s:\n%s", name, p.LogPath, harness.Tail(p.LogPath, 30))
		}
		// The probe runs in the node too: the host cannot reach it.
		out, _ := exec.Command("nsenter", "-t", c.netnsPID, "-n", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
			"--max-time", "2", "http://"+addr+"/health/readiness").Output()
		if string(out) == "200" {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 90s; log %s:\n%s", name, p.LogPath, harness.Tail(p.LogPath, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logLine is one JSON line of a function's log (slog's JSON handler).
type logLine map[string]any

func (l logLine) str(k string) string {
	switch v := l[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// logLines reads every JSON line of a log with the given msg.
func logLines(t *testing.T, path, msg string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.str("msg") == msg {
			out = append(out, l)
		}
	}
	return out
}

// deadLetters records the events Knative gives up on, as its dispatcher
// sends them to the dead-letter sink the chart configures: with the
// extensions naming the failed destination and its last answer.
type deadLetters struct {
	srv  *http.Server
	addr string
	mu   sync.Mutex
	got  []deadLetter
}

type deadLetter struct {
	ID, Type, ErrorDest, ErrorCode string
}

func startDeadLetters(t *testing.T) *deadLetters {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &deadLetters{addr: ln.Addr().String()}
	d.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.got = append(d.got, deadLetter{ID: r.Header.Get("Ce-Id"), Type: r.Header.Get("Ce-Type"),
			ErrorDest: r.Header.Get("Ce-Knativeerrordest"), ErrorCode: r.Header.Get("Ce-Knativeerrorcode")})
		d.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = d.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.srv.Shutdown(ctx)
	})
	return d
}

func (d *deadLetters) letters() []deadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]deadLetter(nil), d.got...)
}
