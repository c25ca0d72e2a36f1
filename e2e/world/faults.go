package world

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"function/e2e/nvcfsim"
	"function/e2e/sim"
)

// FaultEvent is what RunFaults did, for the demo's log and tests.
type FaultEvent struct {
	At    time.Time
	Fault sim.Fault
	Err   string
}

// RunFaults applies a scenario's fault schedule relative to start until ctx
// ends: the TSDB (VictoriaMetrics) is stopped for `for`, the NVCF API
// answers `count` 429s or 503s, Cassandra is restarted, or the discovery
// process is killed and started again. Servers are stopped and started
// through the stack script, by PID.
func (w *World) RunFaults(ctx context.Context, start time.Time, faults []sim.Fault, report func(FaultEvent)) {
	stack := filepath.Join(w.Opts.Root, "e2e", "stack", "stack.sh")
	runStack := func(args ...string) error {
		cctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(cctx, stack, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("stack.sh %v: %v: %s", args, err, out)
		}
		return nil
	}
	for _, f := range faults {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(f.At.D()))):
		}
		var err error
		switch f.Kind {
		case "tsdb_down":
			if err = runStack("stop", "vm"); err == nil {
				select {
				case <-ctx.Done():
				case <-time.After(f.For.D()):
				}
				err = runStack("start", "vm")
			}
		case "nvcf_429":
			w.NVCF.FailNext(max(f.Count, 1), nvcfsim.Fault{Kind: nvcfsim.FaultRateLimited, RetryAfter: 100 * time.Millisecond})
		case "nvcf_503":
			w.NVCF.FailNext(max(f.Count, 1), nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable})
		case "cassandra_restart":
			err = runStack("restart", "cassandra")
		case "discovery_kill":
			w.KillDiscovery()
			err = w.StartDiscovery(ctx, nil)
		}
		ev := FaultEvent{At: time.Now(), Fault: f}
		if err != nil {
			ev.Err = err.Error()
		}
		if report != nil {
			report(ev)
		}
	}
}
