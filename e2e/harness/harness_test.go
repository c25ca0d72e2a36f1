package harness

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A test binary that dies without stopping what it launched (go test's
// -timeout panics it) must not leave the processes running: they hold
// ports and the lock file of whoever ran the test. The child below
// launches a long sleep and exits at once; the sleep must be gone soon
// after, where before it ran on under init.
func TestLaunchedProcessDiesWithTheLauncher(t *testing.T) {
	if os.Getenv("HARNESS_LAUNCH_AND_EXIT") != "" {
		p, err := Launch("600", "sleeper", t.TempDir(), "127.0.0.1:0", nil, "sleep")
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("PID " + strconv.Itoa(p.PID()) + "\n")
		os.Exit(0) // no Stop: as a test killed by its timeout
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLaunchedProcessDiesWithTheLauncher$")
	cmd.Env = append(os.Environ(), "HARNESS_LAUNCH_AND_EXIT=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "PID "); ok {
			pid, err = strconv.Atoi(rest)
			require.NoError(t, err)
		}
	}
	require.NoError(t, cmd.Wait())
	require.Positive(t, pid, "the child launched nothing")
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	require.Eventually(t, func() bool {
		// Signal 0 only checks: ESRCH once it is gone (a zombie would
		// not be, but init reaps its adopted children).
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}, 5*time.Second, 50*time.Millisecond, "the launched process %d outlived its launcher", pid)
}
