// Package harness runs the autoscaler's functions as real processes, the way
// kn func builds them (func-go's runtime around function.New()), for the
// closed-loop tests, the demo and the benchmark: it builds the binary once,
// starts discovery and scale processes with their environment, puts a
// round-robin proxy in front of the scale processes (standing in for the
// Broker), and sends PingSource-shaped ticks.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// RepoRoot finds the module root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module function")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root (go.mod with `module function`) not found above the working directory")
		}
		dir = parent
	}
}

var buildOnce sync.Map // output path -> *buildResult

type buildResult struct {
	once sync.Once
	err  error
}

// BinaryPath is where Build puts the function binary: under the checkout's
// own (git-ignored) bin/, not under .cache/, because .cache/ may be shared
// by several checkouts of one machine (worktrees linking one local stack),
// and a binary built from one checkout must never run another's tests.
func BinaryPath(root string) string {
	return filepath.Join(root, "bin", "autoscaler-func")
}

// Build compiles e2e/funcmain (the kn func scaffolding's main) into
// BinaryPath(root) once per process.
func Build(root string) (string, error) {
	out := BinaryPath(root)
	v, _ := buildOnce.LoadOrStore(out, &buildResult{})
	br := v.(*buildResult)
	br.once.Do(func() {
		cmd := exec.Command("go", "build", "-o", out, "./e2e/funcmain")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			br.err = fmt.Errorf("build funcmain: %v\n%s", err, b)
		}
	})
	return out, br.err
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Process is a started function process.
type Process struct {
	Name    string
	Addr    string // LISTEN_ADDRESS
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// StartFunction runs the function binary with env (plus LISTEN_ADDRESS) and
// waits until /health/readiness answers 200.
func StartFunction(ctx context.Context, bin, name, logDir string, env map[string]string, readyTimeout time.Duration) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := Launch(bin, name, logDir, addr, env)
	if err != nil {
		return nil, err
	}
	logPath := p.LogPath
	deadline := time.Now().Add(readyTimeout)
	for {
		if p.Exited() {
			return nil, fmt.Errorf("%s exited during start-up (%v); log %s:\n%s", name, p.err, logPath, Tail(logPath, 30))
		}
		if code, _ := get(ctx, "http://"+addr+"/health/readiness"); code == http.StatusOK {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s not ready after %s; log %s:\n%s", name, readyTimeout, logPath, Tail(logPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Launch starts bin with env plus LISTEN_ADDRESS=addr, in a process group
// of its own that dies with this process (ChildOfThisProcess), its output
// appended to logDir/name.log, and returns without waiting for readiness.
// prefix, when given, is the command that runs bin (nsenter into a
// namespace, say); it must exec bin, so that the PID signalled by Stop
// and Kill is bin's own.
func Launch(bin, name, logDir, addr string, env map[string]string, prefix ...string) (*Process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	argv := append(slices.Clone(prefix), bin)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LISTEN_ADDRESS="+addr)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = ChildOfThisProcess()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Addr: addr, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id, for reading its CPU time and memory from /proc.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// URL is the process's CloudEvents endpoint.
func (p *Process) URL() string { return "http://" + p.Addr + "/" }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process (by PID) and waits; SIGKILL after 10 s.
func (p *Process) Stop() {
	if p == nil || p.Exited() {
		return
	}
	Terminate(p.cmd, p.done, 10*time.Second)
}

// Terminate sends SIGTERM to cmd's process (by PID) and waits until done
// is closed (by whoever waits for the process), killing it after grace.
func Terminate(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill ends the process at once, as a crash would.
func (p *Process) Kill() {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Ready probes the readiness endpoint once.
func (p *Process) Ready(ctx context.Context) bool {
	return p.Readiness(ctx) == http.StatusOK
}

// Readiness probes the readiness endpoint once and returns its status, 0
// when it did not answer: a probe that timed out on a loaded machine is not
// a process saying it is not ready.
func (p *Process) Readiness(ctx context.Context) int {
	code, _ := get(ctx, "http://"+p.Addr+"/health/readiness")
	return code
}

func get(ctx context.Context, u string) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Tail returns the last n lines of a log file (or the error reading it),
// for a failure message.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RoundRobin is an HTTP reverse proxy over several function processes,
// standing in for the Broker's delivery to a scaled-out Knative Service.
type RoundRobin struct {
	Addr    string
	srv     *http.Server
	next    atomic.Uint64
	targets []*url.URL
	// Requests counts forwarded requests by target index.
	mu       sync.Mutex
	Requests map[int]int
}

// NewRoundRobin listens on a free 127.0.0.1 port and forwards to targets.
func NewRoundRobin(targets ...string) (*RoundRobin, error) {
	rr := &RoundRobin{Requests: map[int]int{}}
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return nil, err
		}
		rr.targets = append(rr.targets, u)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rr.Addr = ln.Addr().String()
	rr.srv = &http.Server{Handler: rr, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rr.srv.Serve(ln) }()
	return rr, nil
}

// ServeHTTP forwards to the next target.
func (rr *RoundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(rr.next.Add(1)-1) % len(rr.targets)
	rr.mu.Lock()
	rr.Requests[i]++
	rr.mu.Unlock()
	httputil.NewSingleHostReverseProxy(rr.targets[i]).ServeHTTP(w, r)
}

// URL is the proxy's address as a sink URL.
func (rr *RoundRobin) URL() string { return "http://" + rr.Addr + "/" }

// Close stops the proxy.
func (rr *RoundRobin) Close() { _ = rr.srv.Close() }

// Ping builds the CloudEvent a Knative PingSource sends for a tick.
func Ping(at time.Time, namespace, name string) event.Event {
	e := event.New()
	e.SetID(fmt.Sprintf("ping-%s-%d", name, at.UnixNano()))
	e.SetType("dev.knative.sources.ping")
	e.SetSource(fmt.Sprintf("/apis/v1/namespaces/%s/pingsources/%s", namespace, name))
	e.SetTime(at.UTC())
	_ = e.SetData(event.ApplicationJSON, map[string]string{"message": "tick"})
	return e
}

// Send posts e (binary mode) to target and returns the HTTP status and the
// reply event, if any. A non-2xx status is not an error here: tests assert
// on it.
func Send(ctx context.Context, target string, e event.Event) (int, *event.Event, error) {
	c, err := cloudevents.NewClientHTTP()
	if err != nil {
		return 0, nil, err
	}
	reply, res := c.Request(cloudevents.ContextWithTarget(ctx, target), e)
	var hr *cehttp.Result
	if errors.As(res, &hr) {
		return hr.StatusCode, reply, nil
	}
	if cloudevents.IsUndelivered(res) {
		return 0, nil, res
	}
	return http.StatusOK, reply, nil
}

// ChildOfThisProcess is the process attributes of every server a test or
// bench starts: a process group of its own (signals to the test's group,
// a terminal's ^C, do not reach it first), and SIGKILL when this process
// dies. Without the latter a test binary killed by go test's -timeout
// left its function processes running, reparented to init, holding their
// ports and the lock file `flock` had handed them (a closed loop cut at
// 10 minutes left three that blocked every later test run for 15
// minutes). Stop and Kill still end them gracefully when the test does.
// Every long-lived process e2e test code starts gets these. Each call
// returns a new value the caller may adjust: a process whose own children
// outlive a SIGKILL (kn func's `func run`) is better told with a signal it
// can act on.
func ChildOfThisProcess() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
