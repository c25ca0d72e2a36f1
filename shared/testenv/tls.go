package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RepoRoot is the module's root directory, found from the test's working
// directory (a package directory) upwards.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "e2e", "stack", "stack.sh")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no e2e/stack/stack.sh above the test's directory")
		}
		dir = parent
	}
}

// CertDir is a directory of certificates made by e2e/stack/certs.sh, whose
// header lists the files.
type CertDir string

// PEM is the path of name's PEM file, e.g. PEM("client-key").
func (d CertDir) PEM(name string) string { return filepath.Join(string(d), name+".pem") }

// Certs generates a fresh set of test certificates into a temporary
// directory of the test with e2e/stack/certs.sh, the one generator every
// TLS test and the stack share.
func Certs(t testing.TB) CertDir {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := exec.Command("bash", filepath.Join(RepoRoot(t), "e2e", "stack", "certs.sh"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("certs.sh: %v\n%s", err, out)
	}
	return CertDir(dir)
}

// CassandraTLS is a Cassandra node of the test's own that accepts only TLS
// clients presenting a certificate of its CA.
type CassandraTLS struct {
	Hosts []string
	// Certs is the directory certs.sh generated for it: ca.pem signed the
	// node's certificate and client.pem; other-ca.pem did not.
	Certs CertDir
}

// StartCassandraTLS returns a Cassandra node that requires TLS. `make test`
// starts one for the whole run (e2e/run-tests.sh sets
// TEST_CASSANDRA_TLS_HOSTS and TEST_CASSANDRA_TLS_CERTS), so its boot is
// paid once, beside the stack's. Without them the test starts stack.sh's
// cassandra-tls variant itself in a temporary directory on free ports (so
// concurrent runs and the shared node do not collide; 10-25 s and 1 GiB
// resident) and kills it by PID when the test ends; that needs the shared
// stack's Cassandra jars, so where the shared node is missing it skips or
// fails like RequireCassandra. Tests share a node: use names of their own.
func StartCassandraTLS(t testing.TB) CassandraTLS {
	t.Helper()
	if hosts, certs := os.Getenv("TEST_CASSANDRA_TLS_HOSTS"), os.Getenv("TEST_CASSANDRA_TLS_CERTS"); hosts != "" && certs != "" {
		if err := dialTCP(hosts); err != nil {
			missing(t, "Cassandra with TLS", hosts, err)
		}
		return CassandraTLS{Hosts: []string{hosts}, Certs: CertDir(certs)}
	}
	RequireCassandra(t)
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	env := append(os.Environ(),
		"CASSANDRA_TLS_DIR="+dir,
		"CASSANDRA_TLS_PORT="+port,
		"CASSANDRA_TLS_STORAGE_PORT="+strconv.Itoa(freePort(t)),
	)
	// Registered before the start, so a node that came up but failed its
	// readiness check is stopped too.
	t.Cleanup(func() { stopByPIDFile(t, filepath.Join(dir, "cassandra-tls.pid")) })
	c := exec.Command("bash", filepath.Join(RepoRoot(t), "e2e", "stack", "stack.sh"), "start", "cassandra-tls")
	c.Env = env
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("start cassandra-tls: %v\n%s", err, out)
	}
	killWithThisProcess(t, filepath.Join(dir, "cassandra-tls.pid"), dir)
	return CassandraTLS{Hosts: []string{"127.0.0.1:" + port}, Certs: CertDir(filepath.Join(dir, "certs"))}
}

// killWithThisProcess starts a watchdog that KILLs the server whose PID
// the file holds once this test process is gone. stack.sh starts the
// server in a session of its own, so nothing else stops it when a test
// dies before its cleanup runs (a panic, go test's -timeout, a KILL):
// a 1 GiB Java was left running. The watchdog is a shell in a session of
// its own too; it ends as soon as the server is gone, and kills only a
// process whose command line still names the server's directory (marker),
// so a PID reused after the server ended is left alone.
func killWithThisProcess(t testing.TB, pidFile, marker string) {
	t.Helper()
	pid, err := readPID(pidFile)
	if err != nil {
		t.Fatalf("cassandra-tls: %v", err)
	}
	// alive: the test process exists and is not a zombie waiting for go
	// test to reap it.
	const watch = `
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //; s/ .*//' "/proc/$1/stat")" != Z ]; }
ours() { tr '\0' ' ' < "/proc/$2/cmdline" 2>/dev/null | grep -qF -- "$3"; }
while alive "$1" && ours "$@"; do sleep 1; done
if ours "$@"; then kill -KILL "$2"; fi`
	w := exec.Command("bash", "-c", watch, "watchdog", strconv.Itoa(os.Getpid()), strconv.Itoa(pid), marker)
	w.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := w.Start(); err != nil {
		t.Fatalf("cassandra-tls watchdog: %v", err)
	}
	// Reaped when it ends, which is when the server does (or this process).
	go func() { _ = w.Wait() }()
}

// readPID is the PID a pid file holds; an error wrapping fs.ErrNotExist
// when there is no file.
func readPID(pidFile string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", pidFile, err)
	}
	return pid, nil
}

// stopByPIDFile kills the process whose PID the file holds and waits until
// it is gone. KILL, not TERM: the node's data is thrown away with the test,
// so Cassandra's orderly drain (seconds) buys nothing.
func stopByPIDFile(t testing.TB, pidFile string) {
	t.Helper()
	pid, err := readPID(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return // never launched
	}
	if err != nil {
		t.Error(err)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return // already gone
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if Exited(pid) {
			return
		}
	}
	t.Errorf("process %d (%s) still alive 15 s after KILL", pid, pidFile)
}

// Exited reports whether process pid has ended: no such process, or a
// zombie not reaped yet (its parent, a test that was not its waiter, or
// one that is gone, has not collected it), which no signal reaches.
func Exited(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(st), ") Z ")
}

// freePort is a port nothing listens on now. Another process may take it
// before the server binds; the server's start then fails loudly.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartPrometheusMTLS starts a Prometheus of the test's own (the stack's
// Debian binary) on a free 127.0.0.1 port with --web.config.file requiring
// a client certificate signed by certs' ca.pem, serving certs' server.pem,
// and stops it by PID when the test ends. It returns once the server
// answers a client holding client.pem. Without the binary it skips or
// fails like the Require functions.
func StartPrometheusMTLS(t testing.TB, certs CertDir) PrometheusMTLS {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		missing(t, "Prometheus", "$PATH (Debian package prometheus)", err)
	}
	dir := t.TempDir()
	web := fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
  client_ca_file: %s
  client_auth_type: RequireAndVerifyClientCert
`, certs.PEM("server"), certs.PEM("server-key"), certs.PEM("ca"))
	writeFile(t, filepath.Join(dir, "web.yml"), web)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), "global:\n  scrape_interval: 1m\n")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	log := startLogged(t, filepath.Join(dir, "prometheus.log"), bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.config.file="+filepath.Join(dir, "web.yml"))
	url := "https://" + addr
	if err := waitHTTPS(url+"/-/ready", certs, 30*time.Second); err != nil {
		b, _ := os.ReadFile(log.Name())
		t.Fatalf("prometheus with mTLS at %s not ready: %v\n%s", url, err, b)
	}
	return PrometheusMTLS{URL: url, Log: log.Name()}
}

// PrometheusMTLS is a running Prometheus that requires client certificates.
type PrometheusMTLS struct {
	URL string // https base URL
	Log string // its log file, where it says why it refused a handshake
}

// waitHTTPS polls url with certs' client certificate until it answers 200.
func waitHTTPS(url string, certs CertDir, timeout time.Duration) error {
	pair, err := tls.LoadX509KeyPair(certs.PEM("client"), certs.PEM("client-key"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(certs.PEM("ca"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// StartStockVM starts a VictoriaMetrics of the test's own (the stack's
// Debian binary) with its default limits, -search.maxQueryLen among them
// (the stack's raises it), on a free 127.0.0.1 port, and stops it by PID
// when the test ends. It returns its base URL once /health answers.
// Without the binary it skips or fails like the Require functions.
func StartStockVM(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("victoria-metrics")
	if err != nil {
		missing(t, "VictoriaMetrics", "$PATH (Debian package victoria-metrics)", err)
	}
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	log := startLogged(t, filepath.Join(dir, "vm.log"), bin,
		"-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(dir, "data"), "-memory.allowedPercent=5")
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for httpOK(url+"/health") != nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("victoria-metrics at %s not healthy after 30 s\n%s", url, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return url
}

// startLogged starts bin with args, its output in the file logPath, and
// kills it by PID (the process this test started) when the test ends.
func startLogged(t testing.TB, logPath, bin string, args ...string) *os.File {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// KILLed with this process too, should it die before the cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", filepath.Base(bin), err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
	return log
}
