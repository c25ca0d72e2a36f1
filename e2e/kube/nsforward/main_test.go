package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
)

// netns starts a process in a fresh network namespace with only lo up and
// returns the namespace's file; the process is killed at cleanup.
func netns(t *testing.T) namespace {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: creates a network namespace (run `make test` as root)")
	}
	cmd := exec.Command("unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 300")
	cmd.SysProcAttr = harness.ChildOfThisProcess() // not five minutes more after a killed test
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "namespace holder did not come up")
	require.Equal(t, "up\n", line)
	return namespace{path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
}

// echo serves l, answering each connection with "echo:" and what it read
// until the client's half-close.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b, _ := io.ReadAll(c)
			_, _ = c.Write(append([]byte("echo:"), b...))
		}()
	}
}

// roundTrip sends msg over c, half-closes and reads the whole answer: the
// half-close must travel through the forwarder for the echo to answer.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(b)
}

// An "in" forward listens inside the namespace, where the host's servers
// are otherwise unreachable, and carries connections to the host.
func TestInForwardReachesTheHost(t *testing.T) {
	ns := netns(t)
	host, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer host.Close()
	go echo(host)

	// Inside the namespace the host's address answers nothing.
	_, err = ns.dial(host.Addr().String(), true)
	require.Error(t, err, "the namespace reaches the host's loopback without the forwarder")

	f, err := parseForward("in:127.0.0.1:0=" + host.Addr().String())
	require.NoError(t, err)
	l, err := ns.listen(f.listen, f.listenInside)
	require.NoError(t, err)
	defer l.Close()
	go func() { _ = ns.serve(l, f) }()

	c, err := ns.dial(l.Addr().String(), true)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "echo:hello from inside", roundTrip(t, c, "hello from inside"))
}

// An "out" forward listens on the host and carries connections to a server
// inside the namespace (the API server's case).
func TestOutForwardReachesTheNamespace(t *testing.T) {
	ns := netns(t)
	inside, err := ns.listen("127.0.0.1:0", true)
	require.NoError(t, err)
	defer inside.Close()
	go echo(inside)

	f, err := parseForward("out:127.0.0.1:0=" + inside.Addr().String())
	require.NoError(t, err)
	l, err := ns.listen(f.listen, f.listenInside)
	require.NoError(t, err)
	defer l.Close()
	go func() { _ = ns.serve(l, f) }()

	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "echo:"+strings.Repeat("x", 1<<20), roundTrip(t, c, strings.Repeat("x", 1<<20)))
}

func TestParseForwardRefusesBadSpecs(t *testing.T) {
	for _, spec := range []string{"127.0.0.1:1=127.0.0.1:2", "up:127.0.0.1:1=127.0.0.1:2", "in:127.0.0.1:1", "in:127.0.0.1=127.0.0.1:2"} {
		_, err := parseForward(spec)
		require.Error(t, err, spec)
	}
}
