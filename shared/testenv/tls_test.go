package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test that dies before its cleanup runs leaves no Cassandra behind:
// the TLS node StartCassandraTLS started for it is killed once the test
// process is gone. The test runs itself as a helper that starts a node
// (the make-test shared node unset, so it starts its own), says where the
// node's pid file is and waits; it KILLs the helper, as go test's
// -timeout or a crash would end it, and waits for the node to go.
func TestCassandraTLSDiesWithItsTest(t *testing.T) {
	if os.Getenv("TESTENV_TLS_HELPER") == "1" {
		node := StartCassandraTLS(t)
		fmt.Printf("PIDFILE %s\n", filepath.Join(filepath.Dir(string(node.Certs)), "cassandra-tls.pid"))
		select {}
	}
	RequireCassandra(t)
	helper := exec.Command(os.Args[0], "-test.run", "^TestCassandraTLSDiesWithItsTest$", "-test.v")
	helper.Env = append(os.Environ(), "TESTENV_TLS_HELPER=1", "TEST_CASSANDRA_TLS_HOSTS=", "TEST_CASSANDRA_TLS_CERTS=")
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = helper.Process.Kill()
			_ = helper.Wait()
		}
	})
	var pidFile string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "PIDFILE "); ok {
			pidFile = f
			break
		}
		t.Logf("helper: %s", sc.Text())
	}
	if pidFile == "" {
		t.Fatal("the helper ended without starting its node")
	}
	// The helper's node and data: its t.TempDir, never cleaned by a
	// killed helper.
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(filepath.Dir(pidFile))) })
	pid, err := readPID(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if Exited(pid) {
		t.Fatalf("the helper's node (pid %d) is not running", pid)
	}
	// The helper dies without running its cleanup.
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	killed = true
	start := time.Now()
	for !Exited(pid) {
		if time.Since(start) > 20*time.Second {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the node (pid %d) still runs 20 s after its test was killed", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the node (pid %d) ended %.1fs after its test was killed", pid, time.Since(start).Seconds())
}
