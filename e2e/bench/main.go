// Command bench measures whole autoscaler cycles at scale on the local
// stack: N active function versions seeded in VictoriaMetrics (bulk import)
// and the NVCF simulator, then a PingSource tick into the discovery process,
// bucket events through an asynchronous broker into the scale process, and
// NVCF writes into the simulator. The same cycles run again with one PromQL
// query per function (the reference's approach) in the same run, so the
// ratios compare like with like.
//
// It prints a table, writes JSON and an SVG plot, and saves CPU profiles of
// the function processes for the largest N. `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
)

type options struct {
	sizes         []int
	cycles        int
	perBucket     int
	baselineMax   int
	parallelism   int
	perVersionMax int
	maxWarmup     int
	scaleProcs    int
	profile       bool
	out           string
	cassandra     string
	vm            string
	// mixed seeds a third of the versions of each metric source (worker
	// threads, LLM gateway, control plane) instead of workers only.
	mixed bool
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&sizes, "sizes", "1000,10000,100000", "active function versions per run, comma-separated")
	flag.IntVar(&o.cycles, "cycles", 5, "measured cycles per size and mode, after one cold cycle")
	flag.IntVar(&o.perBucket, "per-bucket", 1000, "versions per bucket: BUCKETS = N / per-bucket")
	flag.IntVar(&o.baselineMax, "baseline-max", 10000, "largest N also run one-query-per-function (that mode issues 3 queries per version)")
	flag.IntVar(&o.parallelism, "broker-parallelism", 4, "bucket events the stand-in broker delivers at once")
	flag.IntVar(&o.perVersionMax, "per-version-metrics-max", 10000, "above this N the functions run with METRICS_PER_VERSION=false")
	flag.IntVar(&o.maxWarmup, "max-warmup", 10, "at most this many unmeasured cycles while the TSDB's caches fill")
	flag.IntVar(&o.scaleProcs, "scale-processes", 1, "scale function processes behind the broker")
	flag.BoolVar(&o.profile, "profile", true, "save CPU profiles of the function processes during the largest N")
	flag.StringVar(&o.out, "out", "e2e/out/bench", "directory for bench.json, bench.svg and profiles")
	flag.StringVar(&o.cassandra, "cassandra", envOr("TEST_CASSANDRA_HOSTS", "127.0.0.1:9042"), "Cassandra contact point")
	flag.StringVar(&o.vm, "vm", "", "VictoriaMetrics URL to use instead of a fresh bench server per N (its data must hold nothing else active)")
	flag.BoolVar(&o.mixed, "mixed", false, "seed a third of each metric source (worker, gateway, control plane) instead of workers only")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("-sizes: %q is not a positive integer", s)
		}
		o.sizes = append(o.sizes, n)
	}
	sort.Ints(o.sizes)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Report is the JSON written to bench.json.
type Report struct {
	Date    time.Time `json:"date"`
	Machine string    `json:"machine"`
	Options struct {
		Cycles, PerBucket, BrokerParallelism, ScaleProcesses int
	} `json:"options"`
	Runs []Run `json:"runs"`
}

// Run is one N in one query mode.
type Run struct {
	N            int     `json:"n"`
	Mode         string  `json:"mode"` // batched or per-function
	Buckets      int     `json:"buckets"`
	SeedS        float64 `json:"seedSeconds,omitempty"`
	WarmupCycles int     `json:"warmupCycles"` // unmeasured cycles after the first, until one ended inside the deadline
	First        Cycle   `json:"first"`        // the first cycle after seeding: cold TSDB caches, the busy 5% written
	Cycles       []Cycle `json:"cycles"`
	Summary      Summary `json:"summary"`
}

// Cycle is what one tick cost, from the tick to the last bucket's answer.
type Cycle struct {
	WallS         float64 `json:"wallSeconds"`
	DiscoveryS    float64 `json:"discoverySeconds"`
	Found         int     `json:"found"`
	BucketsSent   int     `json:"bucketsSent"`
	BucketsFailed int     `json:"bucketsFailed"`
	// BucketsUnanswered were still queued or in flight 60 s after the tick.
	BucketsUnanswered int     `json:"bucketsUnanswered"`
	Queries           int     `json:"promqlQueries"`
	CQLReads          int     `json:"cqlReads"`
	CQLWrites         int     `json:"cqlWrites"`
	CQLLWTs           int     `json:"cqlLwts"`
	NVCFWrites        int     `json:"nvcfWrites"`
	DiscoveryCPUS     float64 `json:"discoveryCpuSeconds"`
	ScaleCPUS         float64 `json:"scaleCpuSeconds"`
	DiscoveryRSSMB    float64 `json:"discoveryPeakRssMiB"`
	ScaleRSSMB        float64 `json:"scalePeakRssMiB"`
}

// Summary aggregates the measured (warm) cycles.
type Summary struct {
	WallP50, WallP95, DiscoveryP50 float64
	QueriesPerCycle                float64
	QueriesPerFunction             float64
	LWTsPerCycle                   float64
	NVCFWritesPerCycle             float64
	CPUPerCycle                    float64
	PeakRSSScaleMB                 float64
	PeakRSSDiscoveryMB             float64
}

func run(ctx context.Context, o options) error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, o.out), 0o755); err != nil {
		return err
	}
	bin, err := harness.Build(root)
	if err != nil {
		return err
	}
	sim, err := nvcfsim.Start(nvcfsim.Options{})
	if err != nil {
		return err
	}
	defer sim.Close(context.Background())

	rep := Report{Date: time.Now().UTC(), Machine: machine()}
	rep.Options.Cycles, rep.Options.PerBucket = o.cycles, o.perBucket
	rep.Options.BrokerParallelism, rep.Options.ScaleProcesses = o.parallelism, o.scaleProcs
	runID := strconv.FormatInt(time.Now().Unix(), 36)

	for i, n := range o.sizes {
		vmURL := o.vm
		var vm *benchVM
		if vmURL == "" {
			// A fresh VictoriaMetrics per N, with its default caches on (the
			// test stack turns them off to see back-dated samples at once):
			// what a production TSDB answering the same range queries every
			// minute looks like, and nothing else active in it.
			if vm, err = startVM(ctx, filepath.Join(root, ".cache", "bench-vm")); err != nil {
				return err
			}
			vmURL = vm.url
		}
		o := o
		o.vm = vmURL
		seedStart := time.Now()
		label := fmt.Sprintf("%s-%d", runID, n)
		fmt.Printf("== N=%d: seeding VictoriaMetrics and the NVCF simulator\n", n)
		if err := seed(ctx, o.vm, sim, n, label, o.mixed); err != nil {
			return fmt.Errorf("seed %d: %w", n, err)
		}
		if err := seedState(ctx, o.cassandra, keyspaceOf(label), label, n); err != nil {
			return fmt.Errorf("seed scaling state %d: %w", n, err)
		}
		seedS := time.Since(seedStart).Seconds()
		waited, err := settle(ctx, o.vm, 5*time.Minute)
		if err != nil {
			return err
		}
		fmt.Printf("   seeded in %.1fs; VictoriaMetrics merged the import in another %.1fs\n", seedS, waited.Seconds())
		modes := []string{"batched"}
		if n <= o.baselineMax {
			modes = append(modes, "per-function")
		}
		for _, mode := range modes {
			profile := o.profile && i == len(o.sizes)-1 && mode == "batched"
			r, err := measure(ctx, o, root, bin, sim, n, label, mode, profile)
			if err != nil {
				return fmt.Errorf("N=%d %s: %w", n, mode, err)
			}
			r.SeedS = seedS
			rep.Runs = append(rep.Runs, r)
			printRun(r)
		}
		if vm != nil {
			vm.stop()
		}
	}
	printTable(rep)
	b, _ := json.MarshalIndent(rep, "", "  ")
	jsonPath := filepath.Join(root, o.out, "bench.json")
	if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
		return err
	}
	svgPath := filepath.Join(root, o.out, "bench.svg")
	if err := os.WriteFile(svgPath, []byte(plot(rep)), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", jsonPath, svgPath)
	return nil
}

func machine() string {
	host, _ := os.Hostname()
	cpus := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strings.Count(string(b), "\nprocessor")
		if strings.HasPrefix(string(b), "processor") {
			cpus++
		}
	}
	return fmt.Sprintf("%s, %d CPUs, servers on the same machine", host, cpus)
}
