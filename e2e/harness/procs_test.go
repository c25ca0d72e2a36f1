package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// procsScript launches five servers with e2e/procs.sh from a shell holding
// a few hundred open descriptors (a subshell closes each before exec'ing
// the server) and asks procs_pid for each at once, as kube.sh's wait_for
// and stack.sh's wait_ready do when a server is not ready yet. The mark
// procs_pid looks for is in the server's command line only (its path),
// not in the launching shell's.
const procsScript = `
set -e
source "$PROCS"
cp "$(command -v sleep)" "$DIR/fakeserver"
for fd in $(seq 10 400); do eval "exec $fd</dev/null"; done
for i in 1 2 3 4 5; do
  procs_launch "$DIR/p$i.pid" "$DIR/p$i.log" "p$i" "$DIR/fakeserver" 30
  pid=$(procs_pid "$DIR/p$i.pid" "$DIR/fakeserver")
  [ -n "$pid" ] || { echo "server $i not found right after procs_launch returned"; bad=1; }
done
for i in 1 2 3 4 5; do kill "$(cat "$DIR/p$i.pid")" 2>/dev/null || true; done
[ -z "$bad" ]
`

// TestProcsLaunchReturnsOnceTheServerRuns: procs_pid finds a server right
// after procs_launch returns. It returned before the subshell had exec'd
// the server, and a caller that looked at once took the server for one
// that had exited: CI on 2026-12-01 stopped kube.sh's forwarder, which
// was running, as "exited during start-up".
func TestProcsLaunchReturnsOnceTheServerRuns(t *testing.T) {
	procs, err := filepath.Abs("../procs.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", procsScript)
	cmd.Env = append(os.Environ(), "PROCS="+procs, "DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
}
