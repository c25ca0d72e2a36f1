// Package world assembles the closed loop used by the e2e tests, the demo
// and the benchmark: the NVCF simulator (API and data plane, metrics
// scraped by the local VictoriaMetrics), the autoscaler's discovery and
// scale functions as real func-go processes, a round-robin proxy standing
// in for the Broker in front of two scale processes, and a PingSource
// stand-in that sends the exact PingSource event on a fast schedule.
package world

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
	"function/e2e/sim"
	"function/shared/events"
)

// Options configure a world. Zero values take the accelerated defaults.
type Options struct {
	Root      string // module root
	LogDir    string // process logs
	Keyspace  string // Cassandra keyspace of this run
	Cassandra string // host:port
	TSDBURL   string // VictoriaMetrics base URL (it scrapes SimAddr)
	SimAddr   string // where the simulator's /metrics listens (the stack's scrape target)
	// Period is the tick interval (the cron period, accelerated).
	Period time.Duration
	// ScaleProcesses behind the proxy (2 by default).
	ScaleProcesses int
	// Env adds or overrides autoscaler settings for every process.
	Env map[string]string
	// Provisioning and termination delays of simulated instances, how long
	// a gateway or BYOC request waits for a slot, and the environment the
	// metrics are labelled with (production when zero).
	Lifecycle sim.Options
	Log       *slog.Logger
	// External leaves the functions to the caller: Start brings up only
	// the simulator and its data plane (no processes, no Broker or
	// PingSource stand-in), for e2e/knativepath, where real Knative
	// delivers to functions it runs in its own network namespace.
	External bool
}

// World is a running closed loop.
type World struct {
	Opts      Options
	NVCF      *nvcfsim.Server
	Data      *sim.DataPlane
	Discovery *harness.Process
	Scale     []*harness.Process
	Proxy     *harness.RoundRobin
	// LoadStart is the data plane's time zero: a scenario's load phases
	// count from it, not from when Start returns (building and starting
	// the processes takes seconds, more on a loaded machine).
	LoadStart time.Time

	metricsSrv *http.Server
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu      sync.Mutex
	history []sim.Snapshot
	cycles  []Cycle
	paused  bool
}

// Cycle is one tick's outcome as the stand-in saw it.
type Cycle struct {
	At     time.Time
	Status int
	Reply  string
	Err    string
}

// BaseEnv is the accelerated autoscaler configuration: the reference's
// 60 s step, 600 s lookback and 30 min idle timeout shrunk so a closed loop
// runs in minutes.
func BaseEnv(o Options) map[string]string {
	period := o.Period
	env := map[string]string{
		"CASSANDRA_HOSTS":            o.Cassandra,
		"CASSANDRA_KEYSPACE":         o.Keyspace,
		"TSDB_URL":                   o.TSDBURL,
		"BUCKETS":                    "4",
		"LOG_LEVEL":                  "info",
		"DISCOVERY_PERIOD":           period.String(),
		"DISCOVERY_LOCK_TTL":         (period - time.Second).String(),
		"DISCOVERY_LOOKBACK":         "60s",
		"BUCKET_DEADLINE":            period.String(),
		"MAX_CLOCK_SKEW":             "1s", // below the period, as Start requires; one clock here
		"ACTIVE_ROW_TTL":             "40s",
		"UTILIZATION_STEP":           "4s",
		"UTILIZATION_WINDOW":         "8s",
		"UTILIZATION_LOOKBACK":       "60s",
		"SCALE_TO_ZERO_IDLE_TIMEOUT": "40s",
		"SCALE_DOWN_STABILIZATION":   "20s",
		// The product's 20m is forever at this step. The wide window
		// holds a low phase only while the flap before it (its peak, a low
		// phase of at least the 20 s above, the return) is still inside
		// it, so holding a whole low phase takes a window reaching from
		// the previous fall to the next rise: a period plus a low phase.
		// The closed loop's oscillation (40 s low, 24 s high: the 20 s
		// window, a sample's lag and a few cycles down per low phase)
		// needs 104 s and a couple of cycles of lag, so 2m. No other
		// closed-loop load flaps: their steps fall once and stay down,
		// and the keep-alive bursts flip between 0 and 1, where scale to
		// zero and from zero skip the window. (A test that sets the plain
		// window to 0s makes any one-cycle dip and return a flap: the
		// faults test's steady load is then held, as it requires anyway.)
		"SCALE_DOWN_FLAP_WINDOW": "2m",
		"FUNCTION_LOCK_TTL":      "5s",
		"NVCF_TIMEOUT":           "2s",
		"NVCF_TRANSPORT":         "http",
		// The simulator labels every family with the environment as NVCF
		// does, so the closed loop reads through the per-family filters.
		"TSDB_IGNORE_ENV":  "false",
		"TSDB_ENVIRONMENT": "production",
	}
	return env
}

// Start brings the world up with the given functions. The caller stops it.
func Start(ctx context.Context, o Options, fns ...sim.ScenarioFunction) (*World, error) {
	if o.Period == 0 {
		o.Period = 4 * time.Second
	}
	if o.ScaleProcesses == 0 {
		o.ScaleProcesses = 2
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &World{Opts: o}
	ok := false
	defer func() {
		if !ok {
			w.Stop()
		}
	}()

	// Build first: the data plane's clock (time zero of every load
	// profile) should start close to when the autoscaler does.
	bin, err := harness.Build(o.Root)
	if err != nil {
		return nil, err
	}
	w.NVCF, err = nvcfsim.Start(nvcfsim.Options{ManualInstances: true})
	if err != nil {
		return nil, fmt.Errorf("nvcf simulator: %w", err)
	}
	specs := make([]sim.FunctionSpec, len(fns))
	for i, f := range fns {
		reg := func(min int) {
			w.NVCF.Register(nvcfsim.FunctionVersion{
				FunctionID: f.FunctionID, VersionID: f.FunctionVersionID, NcaID: f.NcaID, Status: nvcfsim.StatusActive,
				Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", InstanceType: "gl40s_1.br20_2xlarge", MinInstances: min, MaxInstances: f.MaxInstances}},
			})
		}
		// A new version starts at its min; registering again keeps the
		// count, which is how a version starts with InitialInstances.
		reg(max(f.InitialInstances, f.MinInstances))
		reg(f.MinInstances)
		if specs[i], err = f.Spec(); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", f.FunctionID, f.FunctionVersionID, err)
		}
		if f.InitialInstances > 0 {
			// The NVCF side starts where the data plane starts.
			w.NVCF.SetInstances(f.FunctionID, f.FunctionVersionID, nvcfsim.InstanceCounts{Active: f.InitialInstances})
		}
	}
	w.LoadStart = time.Now()
	w.Data = sim.NewDataPlane(w.LoadStart, w.NVCF, o.Lifecycle, specs...)

	// The data plane's metrics on the address the stack's TSDBs scrape.
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.Data)
	ln, err := net.Listen("tcp", o.SimAddr)
	if err != nil {
		return nil, fmt.Errorf("simulator metrics on %s (is another run using it?): %w", o.SimAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	w.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = w.metricsSrv.Serve(ln) }()

	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go w.advance(runCtx)

	if o.External {
		ok = true
		return w, nil
	}
	env := BaseEnv(o)
	env["NVCF_API_URL"] = w.NVCF.HTTPURL()
	for k, v := range o.Env {
		env[k] = v
	}
	scaleEnv := copyEnv(env)
	scaleEnv["AUTOSCALER_ROLE"] = "scale"
	var targets []string
	for i := 0; i < o.ScaleProcesses; i++ {
		e := copyEnv(scaleEnv)
		e["NODE_ID"] = "scale-" + strconv.Itoa(i)
		p, err := harness.StartFunction(ctx, bin, "scale-"+strconv.Itoa(i), o.LogDir, e, 90*time.Second)
		if err != nil {
			return nil, err
		}
		w.Scale = append(w.Scale, p)
		targets = append(targets, p.URL())
	}
	w.Proxy, err = harness.NewRoundRobin(targets...)
	if err != nil {
		return nil, err
	}
	if err := w.StartDiscovery(ctx, env); err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go w.tick(runCtx)
	ok = true
	return w, nil
}

// StartDiscovery (re)starts the discovery process.
func (w *World) StartDiscovery(ctx context.Context, env map[string]string) error {
	if env == nil {
		env = BaseEnv(w.Opts)
		env["NVCF_API_URL"] = w.NVCF.HTTPURL()
		for k, v := range w.Opts.Env {
			env[k] = v
		}
	}
	e := copyEnv(env)
	e["AUTOSCALER_ROLE"] = "discovery"
	e["K_SINK"] = w.Proxy.URL()
	e["NODE_ID"] = "discovery-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	p, err := harness.StartFunction(ctx, w.binPath(), "discovery", w.Opts.LogDir, e, 90*time.Second)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.Discovery = p
	w.mu.Unlock()
	return nil
}

func (w *World) binPath() string {
	return harness.BinaryPath(w.Opts.Root)
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// advance moves the data plane forward and reports instance counts to the
// NVCF side, twice a second.
func (w *World) advance(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.Data.Advance(now)
			snaps := w.Data.Snapshots()
			for _, s := range snaps {
				w.NVCF.SetInstances(s.FunctionID, s.FunctionVersionID, nvcfsim.InstanceCounts{Active: s.Active, Pending: s.Pending, Terminating: s.Terminating})
			}
			w.mu.Lock()
			w.history = append(w.history, snaps...)
			w.mu.Unlock()
		}
	}
}

// tick sends a PingSource event to discovery every period, aligned to the
// period like a cron.
func (w *World) tick(ctx context.Context) {
	defer w.wg.Done()
	p := w.Opts.Period
	for {
		next := time.Now().Truncate(p).Add(p)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		w.mu.Lock()
		paused, d := w.paused, w.Discovery
		w.mu.Unlock()
		if paused || d == nil {
			continue
		}
		go w.sendTick(ctx, d, next)
	}
}

func (w *World) sendTick(ctx context.Context, d *harness.Process, at time.Time) {
	cctx, cancel := context.WithTimeout(ctx, 2*w.Opts.Period)
	defer cancel()
	status, reply, err := harness.Send(cctx, d.URL(), harness.Ping(at, "nvcf", "autoscaler-tick"))
	c := Cycle{At: at, Status: status}
	if reply != nil {
		c.Reply = string(reply.Data())
	}
	if err != nil {
		c.Err = err.Error()
	}
	w.mu.Lock()
	w.cycles = append(w.cycles, c)
	w.mu.Unlock()
}

// PauseTicks stops or resumes the PingSource stand-in.
func (w *World) PauseTicks(paused bool) {
	w.mu.Lock()
	w.paused = paused
	w.mu.Unlock()
}

// KillDiscovery ends the discovery process abruptly, as a crash would.
func (w *World) KillDiscovery() {
	w.mu.Lock()
	d := w.Discovery
	w.Discovery = nil
	w.mu.Unlock()
	d.Kill()
}

// History returns every snapshot taken so far.
func (w *World) History() []sim.Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sim.Snapshot(nil), w.history...)
}

// Cycles returns the ticks sent so far.
func (w *World) Cycles() []Cycle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Cycle(nil), w.cycles...)
}

// Latest returns the newest snapshot of one version.
func (w *World) Latest(fid, vid string) (sim.Snapshot, bool) {
	for _, s := range w.Data.Snapshots() {
		if s.FunctionID == fid && s.FunctionVersionID == vid {
			return s, true
		}
	}
	return sim.Snapshot{}, false
}

// Activate sends an activation event straight to a scale process.
func (w *World) Activate(ctx context.Context, fid, vid, nca string) (int, *event.Event, error) {
	e := event.New()
	e.SetID(fmt.Sprintf("activate-%s-%d", vid, time.Now().UnixNano()))
	e.SetType("com.nvidia.nvcf.autoscaler.function.activate")
	e.SetSource("/nvcf/invocation")
	_ = e.SetData(event.ApplicationJSON, map[string]string{"functionId": fid, "functionVersionId": vid, "ncaId": nca})
	return harness.Send(ctx, w.Proxy.URL(), e)
}

// SendBucket sends one bucket event of a new cycle straight to the scale
// processes, as a Knative redelivery or a bucket sent just before an outage
// would arrive, and returns the reply status and the event id (which the
// scale process logs with everything it did for the event).
func (w *World) SendBucket(ctx context.Context, bucket, count int) (int, string, error) {
	now := time.Now()
	cycle := now.UnixMilli()
	e := event.New()
	e.SetID(events.BucketEventID(cycle, bucket, count))
	e.SetType(events.TypeBucket)
	e.SetSource(events.Source + "/discovery")
	e.SetTime(now.UTC())
	_ = e.SetData(event.ApplicationJSON, events.Bucket{
		Bucket: bucket, Buckets: count, Cycle: cycle, Deadline: now.Add(w.Opts.Period).UTC(), Versions: 1,
	})
	status, _, err := harness.Send(ctx, w.Proxy.URL(), e)
	return status, e.ID(), err
}

// Stop ends everything the world started, by PID for processes.
func (w *World) Stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
	w.mu.Lock()
	d := w.Discovery
	w.mu.Unlock()
	d.Stop()
	for _, p := range w.Scale {
		p.Stop()
	}
	if w.Proxy != nil {
		w.Proxy.Close()
	}
	if w.metricsSrv != nil {
		_ = w.metricsSrv.Close()
	}
	if w.NVCF != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = w.NVCF.Close(ctx)
		cancel()
	}
}

// ErrTimeout is returned by WaitFor when the condition never held.
var ErrTimeout = errors.New("condition not met in time")

// WaitFor polls cond every 250 ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return ErrTimeout
}
