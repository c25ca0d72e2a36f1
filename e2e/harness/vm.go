package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// VM is a VictoriaMetrics server of a caller's own (a test that needs its
// own scrape target and so cannot share the stack's, or the bench), the
// same Debian binary the stack runs, stopped by PID.
type VM struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartVM runs victoria-metrics on a free 127.0.0.1 port with its data in
// dir (emptied first), scraping each of scrapeTargets' /metrics every 2 s
// as the stack's does (e2e/stack/vm-scrape.yml), and waits for /health.
func StartVM(ctx context.Context, dir string, scrapeTargets ...string) (*VM, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"-httpListenAddr=" + addr, "-storageDataPath=" + filepath.Join(dir, "data"),
		"-retentionPeriod=1d", "-search.maxQueryLen=1MB", "-memory.allowedPercent=20"}
	if len(scrapeTargets) > 0 {
		cfg := filepath.Join(dir, "scrape.yml")
		yml := "global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: nvcf-sim\n    static_configs:\n      - targets: [\"" +
			strings.Join(scrapeTargets, `", "`) + "\"]\n"
		if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-promscrape.config="+cfg)
	}
	logf, err := os.Create(filepath.Join(dir, "vm.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("victoria-metrics", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = ChildOfThisProcess()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start victoria-metrics (Debian package victoria-metrics; make stack-up installs it): %w", err)
	}
	vm := &VM{cmd: cmd, URL: "http://" + addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(vm.done) }()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		select {
		case <-vm.done:
			return nil, fmt.Errorf("victoria-metrics exited; see %s", filepath.Join(dir, "vm.log"))
		default:
		}
		if code, _ := get(ctx, vm.URL+"/health"); code == http.StatusOK {
			return vm, nil
		}
	}
	vm.Stop()
	return nil, fmt.Errorf("victoria-metrics not ready after a minute; see %s", filepath.Join(dir, "vm.log"))
}

// PID is the server's process id (the bench reads its CPU time).
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Stop sends SIGTERM and waits; SIGKILL after 30 s (a flush of a large
// store takes a while).
func (vm *VM) Stop() {
	if vm == nil {
		return
	}
	Terminate(vm.cmd, vm.done, 30*time.Second)
}
