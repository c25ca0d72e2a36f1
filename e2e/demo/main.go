// Command demo is the main job: it runs a scripted load through the whole
// closed loop on the local stack (real Cassandra and VictoriaMetrics, the
// autoscaler's functions in func-go's runtime, the NVCF simulator), prints
// a compact table each cycle, and writes a plot of demand against instances
// (both in instances) per function (SVG) and the decision log when it ends or on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"function/e2e/harness"
	"function/e2e/sim"
	"function/e2e/world"
)

func main() {
	scenario := flag.String("scenario", "e2e/scenarios/demo.json", "scenario file")
	outDir := flag.String("out", "e2e/out", "where the plot and the decision log go")
	mode := flag.String("mode", "target", "policy mode: nvcf or target")
	flag.Parse()

	root, err := harness.RepoRoot()
	if err != nil {
		log.Fatal(err)
	}
	sc, err := sim.LoadScenario(filepath.Join(root, *scenario))
	if err != nil {
		log.Fatal(err)
	}
	out := filepath.Join(root, *outDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		log.Fatal(err)
	}
	cass := getenv("TEST_CASSANDRA_HOSTS", "127.0.0.1:9042")
	vm := getenv("TEST_VM_URL", "http://127.0.0.1:8428")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("starting the closed loop: %d functions, %s of scripted load, policy mode %s\n", len(sc.Functions), sc.Duration.D(), *mode)
	w, err := world.Start(ctx, world.Options{
		Root: root, LogDir: filepath.Join(out, "logs"), Cassandra: cass, TSDBURL: vm,
		Keyspace: fmt.Sprintf("demo_%d", time.Now().Unix()), SimAddr: getenv("SIM_ADDR", "127.0.0.1:9401"),
		Period: 4 * time.Second, Env: map[string]string{"POLICY_MODE": *mode, "DISCOVERY_LOOKBACK": "20s", "SCALE_DOWN_STABILIZATION": "20s", "MAX_SCALE_DOWN_RATE": "2"},
		Lifecycle: sim.Options{ProvisioningDelay: 3 * time.Second, TerminationDelay: time.Second},
	}, sc.Functions...)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()

	// The scenario's clock (load phases, faults, the table's t) is the
	// data plane's, which starts before the functions are up.
	start := w.Data.Start()
	end := start.Add(sc.Duration.D())
	if len(sc.Faults) > 0 {
		go w.RunFaults(ctx, start, sc.Faults, func(ev world.FaultEvent) {
			msg := "ok"
			if ev.Err != "" {
				msg = ev.Err
			}
			fmt.Printf(">>> fault %s at %.0fs: %s\n", ev.Fault.Kind, ev.At.Sub(start).Seconds(), msg)
		})
	}
	t := time.NewTicker(4 * time.Second)
	defer t.Stop()
	header()
loop:
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			fmt.Println("\ninterrupted: stopping what the demo started")
			break loop
		case <-t.C:
			row(w, time.Since(start))
		}
	}
	if err := writeOutputs(w, out, start); err != nil {
		log.Printf("writing outputs: %v", err)
	}
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func header() {
	fmt.Printf("\n%6s  %-14s %-8s %7s %6s %8s %8s  %s\n", "t", "function", "kind", "load/s", "util%", "current", "desired", "last decision")
}

func row(w *world.World, elapsed time.Duration) {
	reasons := lastReasons(w)
	for i, s := range w.Data.Snapshots() {
		t := ""
		if i == 0 {
			t = fmt.Sprintf("%5.0fs", elapsed.Seconds())
		}
		desired := "-"
		if s.Desired >= 0 {
			desired = fmt.Sprint(s.Desired)
		}
		cur := fmt.Sprint(s.Active)
		if s.Pending > 0 {
			cur += fmt.Sprintf("+%d", s.Pending)
		}
		fmt.Printf("%6s  %-14s %-8s %7.1f %6.0f %8s %8s  %s\n", t, s.FunctionID, s.Kind, s.Load, s.Utilization, cur, desired, reasons[s.FunctionVersionID])
	}
	fmt.Println()
}

// lastReasons reads the newest decision per version from the scale
// processes' logs.
func lastReasons(w *world.World) map[string]string {
	out := map[string]string{}
	type dec struct{ at, reason string }
	latest := map[string]dec{}
	for _, p := range w.Scale {
		for _, d := range world.Decisions(p.LogPath) {
			if d.Time > latest[d.FunctionVersionID].at {
				latest[d.FunctionVersionID] = dec{d.Time, d.Summary()}
			}
		}
	}
	for k, v := range latest {
		out[k] = v.reason
	}
	return out
}

// writeOutputs writes the SVG plot and the decision log.
func writeOutputs(w *world.World, out string, start time.Time) error {
	h := w.History()
	byFn := map[string][]sim.Snapshot{}
	var names []string
	for _, s := range h {
		if _, ok := byFn[s.FunctionID]; !ok {
			names = append(names, s.FunctionID)
		}
		byFn[s.FunctionID] = append(byFn[s.FunctionID], s)
	}
	sort.Strings(names)
	svg := world.Plot(names, byFn, start)
	plot := filepath.Join(out, "demo.svg")
	if err := os.WriteFile(plot, []byte(svg), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	for _, p := range w.Scale {
		for _, d := range world.Decisions(p.LogPath) {
			fmt.Fprintf(&b, "%s %-14s cur=%-3d desired=%-3d %-26s %-16s %s\n", d.Time, d.FunctionID, d.Current, d.Desired, d.Reason, d.Action, d.Detail)
		}
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	sort.Strings(lines)
	logPath := filepath.Join(out, "decisions.log")
	if err := os.WriteFile(logPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("plot: %s\ndecision log: %s (%d decisions)\nNVCF writes: %d\n", plot, logPath, len(lines), len(w.NVCF.Writes()))
	return nil
}
