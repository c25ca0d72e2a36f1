package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
)

// discoveryResult is the part of the discovery reply the bench reads.
type discoveryResult struct {
	Cycle       int64 `json:"cycle"`
	Found       int   `json:"found"`
	Skipped     bool  `json:"skipped"`
	BucketsSent []int `json:"bucketsSent"`
	BucketsFail []int `json:"bucketsFailed"`
	Upserted    int   `json:"upserted"`
	QueryMS     int64 `json:"queryMs"`
	ReadMS      int64 `json:"readMs"`
	UpsertMS    int64 `json:"upsertMs"`
	SendMS      int64 `json:"sendMs"`
}

func keyspaceOf(label string) string { return "bench_" + strings.ReplaceAll(label, "-", "_") }

// warmWall is a cycle that left no bucket to its deadline (55 s).
const warmWall = 45.0

// lockTTL is short so back-to-back ticks are not skipped; every cycle here
// outlives it anyway except the smallest.
const lockTTL = 5 * time.Second

type proc struct {
	p           *harness.Process
	metricsAddr string
}

// measure runs one N in one mode with procs scale processes: with cold,
// the first cycle after the import and the warm-up cycles, then the
// measured ones. vmPID, when not 0, is the bench's VictoriaMetrics, whose
// CPU time is reported per cycle.
func measure(ctx context.Context, o options, root, bin string, sim *nvcfsim.Server, vmPID, n int, label, mode string, procs int, cold, profile bool) (Run, error) {
	buckets := max(1, n/o.perBucket)
	r := Run{N: n, Mode: mode, ScaleProcesses: procs, Buckets: buckets}
	logDir := filepath.Join(o.out, "logs", fmt.Sprintf("%d-%s-%d", n, mode, procs))
	_ = os.RemoveAll(logDir)

	// Each scale process gets as many bucket events at once as a single
	// one did: more replicas behind a Broker take more deliveries, as
	// Knative's autoscaler gives each replica its containerConcurrency.
	br, err := newBroker(o.parallelism * procs)
	if err != nil {
		return r, err
	}
	defer br.close()

	env := map[string]string{
		"CASSANDRA_HOSTS":    o.cassandra,
		"CASSANDRA_KEYSPACE": keyspaceOf(label),
		"TSDB_URL":           o.vm,
		// A bucket's selector in one query: VictoriaMetrics' cost is per
		// series read, and a query per chunk adds a scan of the id index
		// (and, in 1.79, of every block header of the metric: see the
		// README). The bench VM allows 1 MB queries (-search.maxQueryLen);
		// an id takes 37 bytes and its separator, and buckets vary in
		// size around N / BUCKETS.
		"TSDB_MAX_SELECTOR_BYTES": strconv.Itoa(max(65536, 48*o.perBucket)),
		"BUCKETS":                 strconv.Itoa(buckets),
		"DISCOVERY_LOCK_TTL":      lockTTL.String(),
		"NVCF_TRANSPORT":          "http",
		"NVCF_API_URL":            sim.HTTPURL(),
		"METRICS_PPROF":           "true",
		"LOG_LEVEL":               "info",
	}
	if n > o.perVersionMax {
		// Four gauges per version would dominate the scale process's heap
		// and every scrape (the first 100k profile showed it): operators
		// of fleets this size turn them off.
		env["METRICS_PER_VERSION"] = "false"
		// And a decision line a minute for each of 100,000 versions
		// (86 % of a line's cost saved where the count stays:
		// BenchmarkDecisionLineUnchanged).
		env["DECISION_LOG_UNCHANGED"] = "false"
	}
	if mode == "per-function" {
		// One version id per selector: three queries per version, as the
		// reference issues them.
		env["TSDB_MAX_SELECTOR_BYTES"] = "1"
	}
	start := func(name, role string, extra map[string]string) (*proc, error) {
		var err error
		// A free port is only free until someone binds it: on a machine
		// shared with other test runs, a process can lose one of its two
		// ports between the pick and its start. Fresh ports, again.
		for attempt := 0; attempt < 3; attempt++ {
			var addr string
			if addr, err = harness.FreeAddr(); err != nil {
				return nil, err
			}
			e := map[string]string{"AUTOSCALER_ROLE": role, "NODE_ID": name, "METRICS_ADDRESS": addr}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range extra {
				e[k] = v
			}
			var p *harness.Process
			if p, err = harness.StartFunction(ctx, bin, name, logDir, e, 2*time.Minute); err == nil {
				return &proc{p: p, metricsAddr: addr}, nil
			}
			if !strings.Contains(err.Error(), "address already in use") {
				break
			}
		}
		return nil, err
	}
	var scales []*proc
	for i := 0; i < procs; i++ {
		p, err := start("scale-"+strconv.Itoa(i), "scale", nil)
		if err != nil {
			return r, err
		}
		defer p.p.Stop()
		scales = append(scales, p)
		br.targets = append(br.targets, p.p.URL())
	}
	disc, err := start("discovery", "discovery", map[string]string{"K_SINK": br.url()})
	if err != nil {
		return r, err
	}
	defer disc.p.Stop()
	all := append([]*proc{disc}, scales...)
	pids := map[string][]int{"discovery": {disc.p.PID()}, "tsdb": {vmPID}, "cassandra": {cassandraPID(root)}, "bench": {os.Getpid()}}
	for _, p := range scales {
		pids["scale"] = append(pids["scale"], p.p.PID())
	}

	// The previous run's last tick may still hold the discovery lock.
	last := time.Now()
	cycle := func() (Cycle, error) {
		if wait := time.Until(last.Add(lockTTL + 200*time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
		before, err := snapshot(ctx, all)
		if err != nil {
			return Cycle{}, err
		}
		vmBefore := procCPU(vmPID)
		sim.ResetRecords()
		cpu0 := sampleCPU(pids)
		t0 := time.Now()
		last = t0
		tick := harness.Ping(t0, "bench", "tick")
		status, reply, err := harness.Send(ctx, disc.p.URL(), tick)
		if err != nil {
			return Cycle{}, err
		}
		if status/100 != 2 || reply == nil {
			return Cycle{}, fmt.Errorf("discovery answered %d (log %s)", status, disc.p.LogPath)
		}
		discS := time.Since(t0).Seconds()
		cpu1 := sampleCPU(pids)
		var res discoveryResult
		if err := json.Unmarshal(reply.Data(), &res); err != nil {
			return Cycle{}, fmt.Errorf("discovery reply: %w", err)
		}
		if res.Skipped {
			return Cycle{}, fmt.Errorf("discovery skipped the tick: %s", reply.Data())
		}
		// A bucket unanswered by its deadline (55 s after the tick) will only
		// be dropped as late: the cycle is over then. The broker never
		// cancels a delivery, as the Trigger's timeout (longer than the
		// deadline) does not: a cancelled bucket writes nothing.
		failed, unanswered, err := br.wait(ctx, res.Cycle, len(res.BucketsSent), time.Until(t0.Add(60*time.Second)))
		if err != nil {
			return Cycle{}, err
		}
		wall := time.Since(t0).Seconds()
		cpu2 := sampleCPU(pids)
		after, err := snapshot(ctx, all)
		if err != nil {
			return Cycle{}, err
		}
		writes := sim.Writes()
		c := Cycle{WallS: wall, DiscoveryS: discS, Found: res.Found, BucketsSent: len(res.BucketsSent),
			BucketsFailed: failed + len(res.BucketsFail), BucketsUnanswered: unanswered, NVCFWrites: len(writes),
			TSDBCPUS: procCPU(vmPID) - vmBefore, Load1: load1()}
		for _, w := range writes {
			c.LastWriteS = max(c.LastWriteS, w.Time.Sub(t0).Seconds())
		}
		d, s := after[0].sub(before[0]), sumSnaps(after[1:]).sub(sumSnaps(before[1:]))
		c.Queries = int(d.queries + s.queries)
		c.CQLReads, c.CQLWrites, c.CQLLWTs = int(d.cql["read"]+s.cql["read"]), int(d.cql["write"]+s.cql["write"]), int(d.cql["lwt"]+s.cql["lwt"])
		c.DiscoveryCPUS, c.ScaleCPUS = d.cpu, s.cpu
		c.DiscoveryRSSMB, c.ScaleRSSMB = after[0].peakRSS, maxRSS(after[1:])
		split := time.Duration(discS * float64(time.Second))
		c.Breakdown = breakdown(res, br.answers(res.Cycle), []PhaseCPU{
			phase("until discovery answered", split, cpu0, cpu1),
			phase("after", time.Duration(wall*float64(time.Second))-split, cpu1, cpu2),
		})
		return c, nil
	}

	cycles := o.cycles
	if mode == "per-function" {
		cycles = min(cycles, 2) // thousands of queries a cycle: two are enough for the ratio
	}
	fmt.Printf("   %s, %d scale process(es)\n", mode, procs)
	// profileTargets are the pprof bases of the processes profiled: the
	// bench's TSDB too, which in a warm 100k cycle spends about twice the
	// CPU of both functions.
	profileTargets := func() map[string]string {
		targets := map[string]string{}
		if vmPID != 0 {
			targets["victoriametrics"] = o.vm
		}
		for _, p := range all {
			targets[p.p.Name] = "http://" + p.metricsAddr
		}
		return targets
	}
	if cold {
		var firstProf sync.WaitGroup
		if profile {
			// Where the TSDB and the functions spend the cold cycle: its
			// first 50 s, discovery and the buckets.
			for name, base := range profileTargets() {
				firstProf.Add(1)
				go func() {
					defer firstProf.Done()
					path := filepath.Join(o.out, fmt.Sprintf("cpu-%s-first-%d.pprof", name, n))
					if err := fetch(ctx, base+"/debug/pprof/profile?seconds=50", path); err != nil {
						fmt.Printf("   profile %s: %v\n", name, err)
					}
				}()
			}
		}
		if pid := cassandraPID(root); pid != 0 {
			r.CassandraThreadsBefore = threadsBetween(threadSample{}, sampleThreads(fmt.Sprintf("/proc/%d", pid)))
			fmt.Printf("   cassandra's threads from its start to this cycle, CPU-s: %s\n", r.CassandraThreadsBefore)
		}
		r.First, err = cycle()
		firstProf.Wait()
		if err != nil {
			return r, err
		}
		fmt.Printf("   first cycle after the import: %s\n%s", cycleLine(r.First), breakdownLines(r.First.Breakdown))
	}
	// Warm-up: right after a bulk import the TSDB has none of a bucket's
	// series in its caches (tag filters, metric names, rollups), and a
	// repeated query costs a fraction of the first. A live TSDB is not
	// always warm either: every new series empties VictoriaMetrics'
	// tag-filter cache. So the first cycle is reported on its own, and
	// when it ran into the deadline, cycles until one finishes well inside
	// it are run and reported, not measured.
	if cold {
		for r.WarmupCycles = 0; r.First.WallS > warmWall && r.WarmupCycles < o.maxWarmup; r.WarmupCycles++ {
			c, err := cycle()
			if err != nil {
				return r, err
			}
			r.Warmup = append(r.Warmup, c)
			fmt.Printf("   warm-up cycle %d: %s\n%s", r.WarmupCycles+1, cycleLine(c), breakdownLines(c.Breakdown))
			if c.WallS <= warmWall {
				r.WarmupCycles++
				break
			}
		}
	}
	var profWG sync.WaitGroup
	if profile {
		secs := int(math.Ceil(r.First.WallS*float64(cycles))) + 5
		for name, base := range profileTargets() {
			profWG.Add(1)
			go func() {
				defer profWG.Done()
				path := filepath.Join(o.out, fmt.Sprintf("cpu-%s-%d.pprof", name, n))
				if err := fetch(ctx, base+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), path); err != nil {
					fmt.Printf("   profile %s: %v\n", name, err)
				}
			}()
		}
	}
	for i := 0; i < cycles; i++ {
		if o.changeAll {
			// Back to "already at the current count": every busy version
			// is written again this cycle.
			if err := seedState(ctx, o.cassandra, keyspaceOf(label), label, n); err != nil {
				return r, fmt.Errorf("reset scaling state: %w", err)
			}
		}
		c, err := cycle()
		if err != nil {
			return r, err
		}
		fmt.Printf("   cycle %d: %s\n%s", i+1, cycleLine(c), breakdownLines(c.Breakdown))
		r.Cycles = append(r.Cycles, c)
	}
	profWG.Wait()
	if profile {
		for _, p := range scales {
			_ = fetch(ctx, "http://"+p.metricsAddr+"/debug/pprof/heap", filepath.Join(o.out, fmt.Sprintf("heap-%s-%d.pprof", p.p.Name, n)))
		}
	}
	r.Summary = summarize(r)
	return r, nil
}

func summarize(r Run) Summary {
	var s Summary
	var walls, discs []float64
	for _, c := range r.Cycles {
		walls, discs = append(walls, c.WallS), append(discs, c.DiscoveryS)
		s.QueriesPerCycle += float64(c.Queries)
		s.LWTsPerCycle += float64(c.CQLLWTs)
		s.NVCFWritesPerCycle += float64(c.NVCFWrites)
		s.CPUPerCycle += c.DiscoveryCPUS + c.ScaleCPUS
		s.TSDBCPUPerCycle += c.TSDBCPUS
		s.Load1 += c.Load1
		s.PeakRSSScaleMB = math.Max(s.PeakRSSScaleMB, c.ScaleRSSMB)
		s.PeakRSSDiscoveryMB = math.Max(s.PeakRSSDiscoveryMB, c.DiscoveryRSSMB)
	}
	k := float64(len(r.Cycles))
	if k == 0 {
		return s
	}
	s.QueriesPerCycle /= k
	s.LWTsPerCycle /= k
	s.NVCFWritesPerCycle /= k
	s.CPUPerCycle /= k
	s.TSDBCPUPerCycle /= k
	s.Load1 /= k
	s.QueriesPerFunction = s.QueriesPerCycle / float64(r.N)
	s.WallP50, s.WallP95 = quantile(walls, 0.5), quantile(walls, 0.95)
	s.DiscoveryP50 = quantile(discs, 0.5)
	return s
}

func quantile(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

// snap is what one process has done so far.
type snap struct {
	queries float64
	cql     map[string]float64
	cpu     float64 // seconds
	peakRSS float64 // MiB
}

func (a snap) sub(b snap) snap {
	d := snap{queries: a.queries - b.queries, cpu: a.cpu - b.cpu, peakRSS: a.peakRSS, cql: map[string]float64{}}
	for k, v := range a.cql {
		d.cql[k] = v - b.cql[k]
	}
	return d
}

func sumSnaps(ss []snap) snap {
	out := snap{cql: map[string]float64{}}
	for _, s := range ss {
		out.queries += s.queries
		out.cpu += s.cpu
		out.peakRSS = math.Max(out.peakRSS, s.peakRSS)
		for k, v := range s.cql {
			out.cql[k] += v
		}
	}
	return out
}

func maxRSS(ss []snap) float64 {
	m := 0.0
	for _, s := range ss {
		m = math.Max(m, s.peakRSS)
	}
	return m
}

func snapshot(ctx context.Context, ps []*proc) ([]snap, error) {
	out := make([]snap, len(ps))
	for i, p := range ps {
		s, err := scrape(ctx, p)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// scrape reads the process's self-metrics and its CPU time and peak RSS
// from /proc.
func scrape(ctx context.Context, p *proc) (snap, error) {
	s := snap{cql: map[string]float64{}}
	m, err := harness.ScrapeMetrics(ctx, p.metricsAddr)
	if err != nil {
		return s, fmt.Errorf("%s: %w", p.p.Name, err)
	}
	// Queries: every PromQL query issued, by caller; readiness pings are
	// not part of a cycle.
	const queries = "nvcf_autoscaler_tsdb_queries_total"
	s.queries = m.Total(queries) - m.Total(queries, "caller", "readiness")
	for _, kind := range []string{"read", "write", "lwt"} {
		s.cql[kind] = m.Total("nvcf_autoscaler_cassandra_requests_total", "kind", kind)
	}
	s.cpu = procCPU(p.p.PID())
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.p.PID()))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			s.peakRSS = kb / 1024
		}
	}
	return s, nil
}

// procCPU is the user and system CPU seconds process pid has used; 0 for
// pid 0 or a process that is gone.
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return statCPU(stat)
}

func fetch(ctx context.Context, url, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// broker stands in for the Knative Broker: it accepts each bucket event at
// once (202), then delivers it to the scale processes with bounded
// parallelism, as the Broker's dispatcher does, and counts the answers per
// cycle so the bench knows when a cycle is done.
type broker struct {
	ln      net.Listener
	srv     *http.Server
	queue   chan delivery
	targets []string
	client  *http.Client

	mu     sync.Mutex
	done   map[int64]int
	failed map[int64]int
	// timeline holds each cycle's deliveries as they were answered.
	timeline map[int64][]bucketAnswer
	next     int
	wake     chan struct{}
}

type delivery struct {
	cycle  int64
	header http.Header
	body   []byte
	queued time.Time
}

// answers returns the deliveries of cycle answered so far, in the order
// they began.
func (b *broker) answers(cycle int64) []bucketAnswer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]bucketAnswer(nil), b.timeline[cycle]...)
	sort.Slice(out, func(i, j int) bool { return out[i].StartS < out[j].StartS })
	return out
}

func newBroker(parallelism int) (*broker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &broker{ln: ln, queue: make(chan delivery, 1<<16), done: map[int64]int{}, failed: map[int64]int{}, timeline: map[int64][]bucketAnswer{},
		wake: make(chan struct{}, 1), client: &http.Client{Timeout: 10 * time.Minute}}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.accept), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	for i := 0; i < parallelism; i++ {
		go b.deliver()
	}
	return b, nil
}

func (b *broker) url() string { return "http://" + b.ln.Addr().String() + "/" }

func (b *broker) close() {
	_ = b.srv.Close()
	close(b.queue)
}

// accept takes a binary-mode CloudEvent; its id is
// cycle-<ms>-bucket-<i>-of-<n>.
func (b *broker) accept(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("Ce-Id")
	parts := strings.Split(id, "-")
	if len(parts) < 2 || parts[0] != "cycle" {
		http.Error(w, "unexpected event id "+id, http.StatusBadRequest)
		return
	}
	cycle, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		http.Error(w, "unexpected event id "+id, http.StatusBadRequest)
		return
	}
	b.queue <- delivery{cycle: cycle, header: r.Header.Clone(), body: body, queued: time.Now()}
	w.WriteHeader(http.StatusAccepted)
}

func (b *broker) deliver() {
	for d := range b.queue {
		b.mu.Lock()
		target := b.targets[b.next%len(b.targets)]
		b.next++
		b.mu.Unlock()
		ok := false
		tick := time.UnixMilli(d.cycle)
		a := bucketAnswer{Bucket: -1, QueuedS: d.queued.Sub(tick).Seconds(), StartS: time.Since(tick).Seconds()}
		for attempt := 0; attempt < 3 && !ok; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(d.body))
			req.Header = d.header.Clone()
			resp, err := b.client.Do(req)
			if err == nil {
				reply, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode/100 == 2
				if ok {
					readReply(reply, &a)
				}
			}
		}
		a.EndS, a.OK = time.Since(tick).Seconds(), ok
		b.mu.Lock()
		b.timeline[d.cycle] = append(b.timeline[d.cycle], a)
		b.done[d.cycle]++
		if !ok {
			b.failed[d.cycle]++
		}
		b.mu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// readReply takes the scale function's bucket reply (binary mode: the
// body is the BucketResult) into a.
func readReply(body []byte, a *bucketAnswer) {
	var r struct {
		Bucket                     int
		Expired                    bool
		Written, Queries           int
		ReadMS, MetricsMS, ApplyMS int64
	}
	if json.Unmarshal(body, &r) == nil {
		a.Bucket, a.Expired, a.Written, a.Queries = r.Bucket, r.Expired, r.Written, r.Queries
		a.ReadMS, a.MetricsMS, a.ApplyMS = r.ReadMS, r.MetricsMS, r.ApplyMS
	}
}

// wait blocks until n bucket events of cycle have been answered or timeout
// passes, and returns how many failed and how many were not answered.
func (b *broker) wait(ctx context.Context, cycle int64, n int, timeout time.Duration) (failed, unanswered int, err error) {
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		done, failed := b.done[cycle], b.failed[cycle]
		b.mu.Unlock()
		if done >= n {
			return failed, 0, nil
		}
		select {
		case <-b.wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return failed, n - done, nil
		case <-ctx.Done():
			return failed, n - done, ctx.Err()
		}
	}
}

// benchVM is a VictoriaMetrics server of the bench's own
// (harness.StartVM) whose data, only this run's, goes when it stops.
type benchVM struct {
	*harness.VM
	dir  string
	once sync.Once
}

func startVM(ctx context.Context, dir string) (*benchVM, error) {
	vm, err := harness.StartVM(ctx, dir)
	if err != nil {
		return nil, err
	}
	return &benchVM{VM: vm, dir: dir}, nil
}

// stop ends the server and removes its data; only the first call acts.
func (vm *benchVM) stop() {
	vm.once.Do(func() {
		vm.Stop()
		_ = os.RemoveAll(vm.dir)
	})
}
