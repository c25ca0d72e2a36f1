// Command bench measures whole autoscaler cycles at scale on the local
// stack: N active function versions seeded in VictoriaMetrics (bulk import)
// and the NVCF simulator, then a PingSource tick into the discovery process,
// bucket events through an asynchronous broker into the scale process, and
// NVCF writes into the simulator. The same cycles run again with one PromQL
// query per function (the reference's approach) in the same run, so the
// ratios compare like with like.
//
// The first cycle after the import (cold: the TSDB has none of the
// bucket's series in its caches) and the warm-up cycles after it are
// reported apart from the measured (warm) ones. -scale-processes 1,2,4
// repeats the measured cycles with that many scale processes behind the
// broker; -change-all makes every version change its desired count in
// every measured cycle (a fleet-wide ramp); -probe-selectors times the
// TSDB's first query over one bucket's ids in token order and sorted.
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
	scaleProcs    []int
	profile       bool
	out           string
	cassandra     string
	vm            string
	// mixed seeds a third of the versions of each metric source (worker
	// threads, LLM gateway, control plane) instead of workers only.
	mixed bool
	// changeAll makes every version busy and resets its scaling state
	// before each measured cycle, so every version changes every cycle.
	changeAll bool
	// probeSelectors times cold queries over unsorted and sorted ids.
	probeSelectors bool
	// queryCosts ranks the kinds of query by what they cost the bench's
	// VictoriaMetrics, after the measured cycles of each N.
	queryCosts bool
	// readShapes compares what reading the worker series costs the
	// bench's VictoriaMetrics in three shapes, over this many rounds.
	readShapes int
	// warmCassandra is how many versions a scratch keyspace gets to warm
	// the Cassandra JVM's compilers before the first N (0: not warmed).
	warmCassandra int
}

func main() {
	var o options
	var sizes, procs string
	flag.StringVar(&sizes, "sizes", "1000,10000,100000", "active function versions per run, comma-separated")
	flag.IntVar(&o.cycles, "cycles", 5, "measured cycles per size and mode, after one cold cycle")
	flag.IntVar(&o.perBucket, "per-bucket", 1000, "versions per bucket: BUCKETS = N / per-bucket")
	flag.IntVar(&o.baselineMax, "baseline-max", 10000, "largest N also run one-query-per-function (that mode issues 3 queries per version)")
	flag.IntVar(&o.parallelism, "broker-parallelism", 4, "bucket events the stand-in broker delivers at once")
	flag.IntVar(&o.perVersionMax, "per-version-metrics-max", 10000, "above this N the functions run with METRICS_PER_VERSION=false and DECISION_LOG_UNCHANGED=false")
	flag.IntVar(&o.maxWarmup, "max-warmup", 10, "at most this many unmeasured cycles while the TSDB's caches fill")
	flag.StringVar(&procs, "scale-processes", "1", "scale function processes behind the broker; a list (1,2,4) repeats the measured cycles with each")
	flag.BoolVar(&o.profile, "profile", true, "save CPU profiles of the function processes during the largest N")
	flag.StringVar(&o.out, "out", "e2e/out/bench", "directory for bench.json, bench.svg and profiles; a relative one is under the repository")
	flag.StringVar(&o.cassandra, "cassandra", envOr("TEST_CASSANDRA_HOSTS", "127.0.0.1:9042"), "Cassandra contact point")
	flag.StringVar(&o.vm, "vm", "", "VictoriaMetrics URL to use instead of a fresh bench server per N (its data must hold nothing else active)")
	flag.BoolVar(&o.mixed, "mixed", false, "seed a third of each metric source (worker, gateway, control plane) instead of workers only")
	flag.BoolVar(&o.changeAll, "change-all", false, "every version busy, its scaling state reset before each measured cycle: every version is written every cycle")
	flag.BoolVar(&o.probeSelectors, "probe-selectors", false, "after seeding, time the first query over 1,000 ids in token order against sorted (N >= 4,000)")
	flag.BoolVar(&o.queryCosts, "query-costs", false, "after the cycles of each N, replay each kind of query once per chunk on the warm bench VictoriaMetrics and rank the kinds by its CPU")
	flag.IntVar(&o.readShapes, "read-shapes", 0, "after the cycles of each N, replay the worker queries this many rounds as grid + instant, as one range ending at now, and as the grid alone, and print the VictoriaMetrics CPU per bucket of each")
	flag.IntVar(&o.warmCassandra, "warm-cassandra", 60000, fmt.Sprintf("before the first cycle, send a cycle's statement mix for this many versions (%d rounds) to a scratch keyspace so Cassandra's JIT has compiled it, as a long-running Cassandra has; 0 measures a JVM that may be minutes old", warmRounds))
	flag.Parse()
	o.sizes = positiveInts("-sizes", sizes)
	sort.Ints(o.sizes)
	o.scaleProcs = positiveInts("-scale-processes", procs)

	closeInheritedFiles()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

// closeInheritedFiles marks every file descriptor above stderr that this
// process inherited close-on-exec. flock(1) hands its lock's descriptor
// down to the command it runs; without this the servers the bench starts
// would hold /tmp/stack.lock too, and one outliving the bench (a killed
// run) holds it, and every test waiting on it, for ever.
func closeInheritedFiles() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// positiveInts parses a comma-separated flag value.
func positiveInts(name, list string) []int {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("%s: %q is not a positive integer", name, s)
		}
		out = append(out, n)
	}
	return out
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
	// LoadAtStart is /proc/loadavg when the bench started: other work on
	// the machine changes every absolute figure.
	LoadAtStart string `json:"loadAtStart"`
	// Calibration and CalibrationAtEnd time a fixed piece of work before
	// the servers are loaded and after the last run: the figure that
	// compares machines the CPU model names alike (see
	// harness.Calibration), and a change between the two says the
	// machine's speed changed during the bench.
	Calibration      harness.Calibration `json:"calibration"`
	CalibrationAtEnd harness.Calibration `json:"calibrationAtEnd"`
	Options          struct {
		Cycles, PerBucket, BrokerParallelism int
		ScaleProcesses                       []int
		ChangeAll                            bool
		// WarmCassandra is the versions of the JIT warm-up (0: none).
		WarmCassandra int
	} `json:"options"`
	// CassandraWarmup is what the Cassandra JVM's threads spent in that
	// warm-up, the wait for its compilers included.
	CassandraWarmup *JVMThreads `json:"cassandraWarmup,omitempty"`
	// CompilersSettle is the wait after the warm-up until the JVM's
	// compilers went quiet, and their CPU in it.
	CompilersSettle *CompilersSettle `json:"compilersSettle,omitempty"`
	Runs            []Run            `json:"runs"`
	Probes          []SelectorProbe  `json:"selectorProbes,omitempty"`
	// QueryCosts, by N: the kinds of query ranked by the bench
	// VictoriaMetrics' CPU (see QueryCost).
	QueryCosts map[int][]QueryCost `json:"queryCosts,omitempty"`
	// ReadShapes, by N: the worker reads' CPU per bucket by shape.
	ReadShapes map[int][]ReadShape `json:"readShapes,omitempty"`
}

// Run is one N in one query mode.
type Run struct {
	N              int     `json:"n"`
	Mode           string  `json:"mode"` // batched or per-function
	ScaleProcesses int     `json:"scaleProcesses"`
	Buckets        int     `json:"buckets"`
	SeedS          float64 `json:"seedSeconds,omitempty"`
	WarmupCycles   int     `json:"warmupCycles"` // unmeasured cycles after the first, until one ended inside the deadline
	// First is the first cycle after seeding: cold TSDB caches, the busy
	// 5% (every version with -change-all) written. Zero for the runs
	// after the first of an N (more scale processes), whose TSDB is warm.
	First Cycle `json:"first"`
	// CassandraThreadsBefore is the local Cassandra's CPU by thread group
	// from its start to the first cycle (start-up, the seeding, earlier
	// runs): how much compiling a JVM had done before it.
	CassandraThreadsBefore *JVMThreads `json:"cassandraThreadsBeforeFirst,omitempty"`
	Warmup                 []Cycle     `json:"warmup,omitempty"`
	Cycles                 []Cycle     `json:"cycles"`
	Summary                Summary     `json:"summary"`
}

// Cycle is what one tick cost, from the tick to the last bucket's answer.
type Cycle struct {
	WallS         float64 `json:"wallSeconds"`
	DiscoveryS    float64 `json:"discoverySeconds"`
	Found         int     `json:"found"`
	BucketsSent   int     `json:"bucketsSent"`
	BucketsFailed int     `json:"bucketsFailed"`
	// BucketsUnanswered were still queued or in flight 60 s after the tick.
	BucketsUnanswered int `json:"bucketsUnanswered"`
	Queries           int `json:"promqlQueries"`
	CQLReads          int `json:"cqlReads"`
	CQLWrites         int `json:"cqlWrites"`
	CQLLWTs           int `json:"cqlLwts"`
	NVCFWrites        int `json:"nvcfWrites"`
	// LastWriteS is when the cycle's last NVCF write arrived, after the
	// tick; 0 without writes.
	LastWriteS     float64 `json:"lastWriteSeconds,omitempty"`
	DiscoveryCPUS  float64 `json:"discoveryCpuSeconds"`
	ScaleCPUS      float64 `json:"scaleCpuSeconds"`
	TSDBCPUS       float64 `json:"tsdbCpuSeconds,omitempty"` // the bench's own VictoriaMetrics
	DiscoveryRSSMB float64 `json:"discoveryPeakRssMiB"`
	ScaleRSSMB     float64 `json:"scalePeakRssMiB"`
	// Load1 is the machine's one-minute load average at the cycle's end.
	Load1 float64 `json:"load1"`
	// Breakdown is where the cycle's time and CPU went.
	Breakdown *Breakdown `json:"breakdown,omitempty"`
}

// Summary aggregates the measured (warm) cycles.
type Summary struct {
	WallP50, WallP95, DiscoveryP50 float64
	QueriesPerCycle                float64
	QueriesPerFunction             float64
	LWTsPerCycle                   float64
	NVCFWritesPerCycle             float64
	CPUPerCycle                    float64
	TSDBCPUPerCycle                float64
	Load1                          float64 // mean over the cycles
	PeakRSSScaleMB                 float64
	PeakRSSDiscoveryMB             float64
}

func run(ctx context.Context, o options) error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	// A relative -out is under the repository, whatever the working
	// directory; an absolute one is taken as it is.
	if !filepath.IsAbs(o.out) {
		o.out = filepath.Join(root, o.out)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
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

	rep := Report{Date: time.Now().UTC(), Machine: machine(), LoadAtStart: loadavg(), Calibration: harness.Calibrate(5)}
	rep.Options.Cycles, rep.Options.PerBucket = o.cycles, o.perBucket
	rep.Options.BrokerParallelism, rep.Options.ScaleProcesses = o.parallelism, o.scaleProcs
	rep.Options.ChangeAll = o.changeAll
	rep.Options.WarmCassandra = o.warmCassandra
	fmt.Printf("machine: %s; load average at start: %s; %s\n", rep.Machine, rep.LoadAtStart, calibrationLine(rep.Calibration))
	runID := strconv.FormatInt(time.Now().Unix(), 36)

	for i, n := range o.sizes {
		vmURL := o.vm
		var vm *benchVM
		if vmURL == "" {
			// A fresh VictoriaMetrics per N, with its default caches on (the
			// test stack turns them off to see back-dated samples at once):
			// what a production TSDB answering the same range queries every
			// minute looks like, and nothing else active in it.
			// A directory of this process's own: .cache is shared by every
			// worktree, and a VictoriaMetrics left running by a killed
			// bench must not lose its data under it, nor lend it to us.
			dir := filepath.Join(root, ".cache", fmt.Sprintf("bench-vm-%d", os.Getpid()))
			if vm, err = startVM(ctx, dir); err != nil {
				return err
			}
			// Stopped at the end of this N, or here when the run fails:
			// a VictoriaMetrics left behind would hold its cores.
			defer vm.stop()
			vmURL = vm.URL
		}
		o := o
		o.vm = vmURL
		seedStart := time.Now()
		label := fmt.Sprintf("%s-%d", runID, n)
		fmt.Printf("== N=%d: seeding VictoriaMetrics and the NVCF simulator\n", n)
		if err := seed(ctx, o.vm, sim, n, label, o.mixed, o.changeAll); err != nil {
			return fmt.Errorf("seed %d: %w", n, err)
		}
		defer dropKeyspace(o.cassandra, keyspaceOf(label))
		if err := seedState(ctx, o.cassandra, keyspaceOf(label), label, n); err != nil {
			return fmt.Errorf("seed scaling state %d: %w", n, err)
		}
		seedS := time.Since(seedStart).Seconds()
		waited, err := settle(ctx, o.vm, 5*time.Minute)
		if err != nil {
			return err
		}
		fmt.Printf("   seeded in %.1fs; VictoriaMetrics merged the import in another %.1fs\n", seedS, waited.Seconds())
		if i == 0 && o.warmCassandra > 0 {
			// The JVM's threads are sampled only when the Cassandra is
			// this machine's stack's (its pid known), as for the cycles.
			pid := cassandraPID(root)
			var before threadSample
			if pid != 0 {
				before = sampleThreads(fmt.Sprintf("/proc/%d", pid))
			}
			t0 := time.Now()
			if err := warmCassandra(ctx, o.cassandra, keyspaceOf(runID+"-warm"), o.warmCassandra); err != nil {
				return fmt.Errorf("warm Cassandra: %w", err)
			}
			sent := time.Since(t0)
			if pid != 0 {
				dir := fmt.Sprintf("/proc/%d", pid)
				waited, cpu, quiet := settleCompilers(ctx, func() (float64, bool) {
					s := sampleThreads(dir)
					return compilerCPU(s), len(s.threads) > 0
				}, time.Second, compilersSettleLimit)
				rep.CompilersSettle = &CompilersSettle{WaitedS: waited.Seconds(), CPUS: cpu, Quiet: quiet}
				rep.CassandraWarmup = threadsBetween(before, sampleThreads(dir))
			}
			fmt.Printf("   Cassandra's JIT warmed in %.1fs by a scratch keyspace of %d versions, %d rounds%s; its threads, CPU-s: %s\n",
				sent.Seconds(), o.warmCassandra, warmRounds, rep.CompilersSettle, rep.CassandraWarmup)
		}
		if o.probeSelectors {
			p, err := probeSelectors(ctx, o.vm, label, n)
			if err != nil {
				return fmt.Errorf("probe selectors %d: %w", n, err)
			}
			if p.IDs > 0 {
				printProbe(p)
				rep.Probes = append(rep.Probes, p)
			}
		}
		vmPID := 0
		if vm != nil {
			vmPID = vm.PID()
		}
		type config struct {
			mode  string
			procs int
		}
		var configs []config
		for _, p := range o.scaleProcs {
			configs = append(configs, config{"batched", p})
		}
		if n <= o.baselineMax {
			configs = append(configs, config{"per-function", o.scaleProcs[0]})
		}
		for j, c := range configs {
			// The first run of an N has the cold cycle; the runs after it
			// find the TSDB warm.
			cold := j == 0
			profile := o.profile && i == len(o.sizes)-1 && cold
			r, err := measure(ctx, o, root, bin, sim, vmPID, n, label, c.mode, c.procs, cold, profile)
			if err != nil {
				return fmt.Errorf("N=%d %s with %d scale processes: %w", n, c.mode, c.procs, err)
			}
			r.SeedS = seedS
			rep.Runs = append(rep.Runs, r)
			printRun(r)
		}
		if vm != nil && o.queryCosts {
			costs, err := queryCosts(ctx, vm.URL, vmPID)
			if err != nil {
				return fmt.Errorf("query costs %d: %w", n, err)
			}
			printQueryCosts(n, costs)
			if rep.QueryCosts == nil {
				rep.QueryCosts = map[int][]QueryCost{}
			}
			rep.QueryCosts[n] = costs
		}
		if vm != nil && o.readShapes > 0 {
			shapes, err := readShapes(ctx, vm.URL, vmPID, max(1, n/o.perBucket), o.readShapes)
			if err != nil {
				return fmt.Errorf("read shapes %d: %w", n, err)
			}
			printReadShapes(n, shapes)
			if rep.ReadShapes == nil {
				rep.ReadShapes = map[int][]ReadShape{}
			}
			rep.ReadShapes[n] = shapes
		}
		if vm != nil {
			vm.stop()
		}
	}
	rep.CalibrationAtEnd = harness.Calibrate(5)
	fmt.Printf("machine at the end: %s (at the start: %s)\n", calibrationLine(rep.CalibrationAtEnd), rep.Calibration.Median.Round(time.Millisecond))
	printTable(rep)
	b, _ := json.MarshalIndent(rep, "", "  ")
	jsonPath := filepath.Join(o.out, "bench.json")
	if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
		return err
	}
	svgPath := filepath.Join(o.out, "bench.svg")
	if err := os.WriteFile(svgPath, []byte(plot(rep)), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", jsonPath, svgPath)
	return nil
}

// machine names the CPU model and count, so that runs on different
// machines can be compared.
func machine() string {
	host, _ := os.Hostname()
	model, cpus := harness.CPU()
	return fmt.Sprintf("%s, %d x %s, servers on the same machine", host, cpus, model)
}

// calibrationLine reports a calibration for the bench's output.
func calibrationLine(c harness.Calibration) string {
	return fmt.Sprintf("calibration %s (fixed work, median of %d, slowest/fastest %.2f; lower is faster)",
		c.Median.Round(time.Millisecond), c.Runs, c.Spread)
}

// loadavg is the machine's load averages (1, 5, 15 minutes).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// load1 is the one-minute load average.
func load1() float64 {
	f, _ := strconv.ParseFloat(strings.Fields(loadavg() + " 0")[0], 64)
	return f
}
