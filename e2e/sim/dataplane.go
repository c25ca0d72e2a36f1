// Package sim is the data plane of the NVCF simulator: function instances
// that provision, serve and terminate, the load offered to them, and the
// metrics NVCF exposes about them with the real names and labels. A version
// is one of three kinds, as in NVCF: served by NVCF worker threads, an LLM
// function behind the API gateway, or a bring-your-own-cluster (BYOC)
// function seen only through the control plane and the invocation service.
// The control side (the NVCF API that accepts instance counts) is the
// nvcfsim package; it tells the data plane how many instances each version
// should have through a Controller.
package sim

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Controller says how many instances a version should have (the NVCF API's
// clamped desired count).
type Controller interface {
	Desired(functionID, functionVersionID string) (int, bool)
}

// Kind is how a version is served, which decides the metrics that tell of
// its load.
type Kind string

// The kinds of function version.
const (
	// KindWorker versions run NVCF worker threads: per-instance busy
	// seconds and thread counts, and the invocation service's request
	// counter.
	KindWorker Kind = "worker"
	// KindGateway versions serve an LLM function behind the API gateway,
	// whose request counter and duration sum carry the function id only:
	// the gateway spreads a function's requests over all its versions.
	KindGateway Kind = "gateway"
	// KindBYOC versions run on the customer's own cluster: no worker
	// series, only the invocation service's request counter and latency
	// sum and the control plane's gauges.
	KindBYOC Kind = "byoc"
)

// FunctionSpec describes one simulated function version.
type FunctionSpec struct {
	FunctionID        string
	FunctionVersionID string
	NcaID             string
	// Kind is KindWorker when empty.
	Kind Kind
	// ServiceTime is the busy time one request takes on one worker thread
	// (worker) or holds one request slot (gateway, BYOC).
	ServiceTime time.Duration
	// ThreadsPerInstance is the worker threads of one instance (worker).
	ThreadsPerInstance int
	// Concurrency is the requests one instance serves at once (gateway,
	// BYOC; the nvcf_function_concurrency gauge). Worker versions report
	// their threads.
	Concurrency int
	// InitialInstances start active at time zero.
	InitialInstances int
	// Load is the offered request rate (requests per second) at an offset
	// from the start of the run.
	Load LoadFunc
}

// LoadFunc gives the offered requests per second at elapsed time t.
type LoadFunc func(t time.Duration) float64

type instance struct {
	id          string
	readyAt     time.Time // pending until then
	terminateAt time.Time // zero while serving; terminating instances stop serving and vanish at this time
	busySeconds float64
}

type function struct {
	spec      FunctionSpec
	instances []*instance
	nextID    int
	queue     float64 // requests waiting for a free thread (worker)
	requests  float64 // arrivals, counter (worker)
	pool      *requestPool
	lastLoad  float64
	lastUtil  float64
}

// gateway is the API gateway's view of one LLM function: one request pool
// over the slots of all the function's versions.
type gateway struct {
	functionID string
	versions   []*function
	pool       *requestPool
	lastLoad   float64
	lastUtil   float64
}

// Snapshot is one version's state at a point in time, for plots and tests.
type Snapshot struct {
	FunctionID        string
	FunctionVersionID string
	At                time.Time
	Load              float64 // offered requests per second
	// Demand is the offered load in instances kept fully busy: requests
	// per second x service time / requests one instance serves at once
	// (threads, or request slots). It shares the instances' unit, so a
	// plot shows at a glance whether capacity followed the load.
	Demand      float64
	Active      int
	Pending     int
	Terminating int
	Desired     int
	Kind        Kind
	Utilization float64 // percent of active thread time (or request slots) busy in the last tick
	Queue       float64 // requests waiting
	// InFlight is the requests waiting or being served (gateway and BYOC;
	// a gateway version reports its function's).
	InFlight float64
}

// DataPlane advances every function's instances and load in ticks.
type DataPlane struct {
	mu                sync.Mutex
	start             time.Time
	now               time.Time
	ctrl              Controller
	provisioningDelay time.Duration
	terminationDelay  time.Duration
	giveUp            time.Duration
	env               Environment
	functions         map[string]*function
	order             []string
	gateways          map[string]*gateway
	gatewayOrder      []string
}

// Environment is one NVCF environment as each metric family spells it in
// its label: worker and request-counter series `environment`,
// control-plane series `environment` (other words), gateway and latency
// series `aws_env`.
type Environment struct {
	Worker       string
	ControlPlane string
	Gateway      string
}

// The two NVCF environments.
var (
	Production = Environment{Worker: "prod", ControlPlane: "production", Gateway: "prd"}
	Staging    = Environment{Worker: "stage", ControlPlane: "staging", Gateway: "stg"}
)

// Options tune instance lifecycle timing and the metrics' environment.
type Options struct {
	ProvisioningDelay time.Duration // pending -> active
	TerminationDelay  time.Duration // terminating -> gone
	// RequestGiveUp is how long a gateway or BYOC request waits for a
	// free slot before it leaves unserved (60 s when zero).
	RequestGiveUp time.Duration
	// Environment labels every series; Production when zero.
	Environment Environment
}

// NewDataPlane starts a data plane at start.
func NewDataPlane(start time.Time, ctrl Controller, opts Options, specs ...FunctionSpec) *DataPlane {
	if opts.RequestGiveUp <= 0 {
		opts.RequestGiveUp = time.Minute
	}
	if opts.Environment == (Environment{}) {
		opts.Environment = Production
	}
	dp := &DataPlane{start: start, now: start, ctrl: ctrl, provisioningDelay: opts.ProvisioningDelay,
		terminationDelay: opts.TerminationDelay, giveUp: opts.RequestGiveUp, env: opts.Environment,
		functions: map[string]*function{}, gateways: map[string]*gateway{}}
	for _, s := range specs {
		dp.Add(s)
	}
	return dp
}

// Start is the data plane's time zero: load profiles count from it.
func (dp *DataPlane) Start() time.Time { return dp.start }

func key(fid, vid string) string { return fid + "/" + vid }

// Add registers a function version with its initial active instances.
// Adding a version again replaces it. A gateway version joins its
// function's gateway pool, whose service time is its first version's.
func (dp *DataPlane) Add(s FunctionSpec) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if s.Kind == "" {
		s.Kind = KindWorker
	}
	if s.ThreadsPerInstance < 1 {
		s.ThreadsPerInstance = 1
	}
	if s.Concurrency < 1 {
		s.Concurrency = 1
	}
	if s.ServiceTime <= 0 {
		s.ServiceTime = 100 * time.Millisecond
	}
	f := &function{spec: s}
	for i := 0; i < s.InitialInstances; i++ {
		f.instances = append(f.instances, f.newInstance(dp.now))
	}
	k := key(s.FunctionID, s.FunctionVersionID)
	old, known := dp.functions[k]
	if !known {
		dp.order = append(dp.order, k)
	}
	dp.functions[k] = f
	switch s.Kind {
	case KindBYOC:
		f.pool = newRequestPool(s.ServiceTime.Seconds(), dp.giveUp.Seconds())
	case KindGateway:
		g, ok := dp.gateways[s.FunctionID]
		if !ok {
			g = &gateway{functionID: s.FunctionID, pool: newRequestPool(s.ServiceTime.Seconds(), dp.giveUp.Seconds())}
			dp.gateways[s.FunctionID] = g
			dp.gatewayOrder = append(dp.gatewayOrder, s.FunctionID)
		}
		replaced := false
		for i, v := range g.versions {
			if v == old {
				g.versions[i], replaced = f, true
			}
		}
		if !replaced {
			g.versions = append(g.versions, f)
		}
	}
}

func (f *function) newInstance(readyAt time.Time) *instance {
	f.nextID++
	return &instance{id: fmt.Sprintf("%s-w%d", f.spec.FunctionVersionID, f.nextID), readyAt: readyAt}
}

// Advance moves the simulation to now: instances follow the controller's
// desired counts, then load is served for the elapsed time.
func (dp *DataPlane) Advance(now time.Time) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	dt := now.Sub(dp.now).Seconds()
	if dt <= 0 {
		return
	}
	from, to := dp.now.Sub(dp.start).Seconds(), now.Sub(dp.start).Seconds()
	for _, k := range dp.order {
		f := dp.functions[k]
		f.reconcile(dp, now)
		switch f.spec.Kind {
		case KindWorker:
			f.serve(now.Sub(dp.start), now, dt)
		case KindBYOC:
			f.lastLoad = f.offered(now.Sub(dp.start))
			f.lastUtil = serveRequests(f.pool, from, to, f.lastLoad, float64(f.active(now)*f.spec.Concurrency))
		}
	}
	// The gateway sees the function, not its versions: the function's load
	// goes to the slots of all its versions, reconciled above.
	for _, fid := range dp.gatewayOrder {
		g := dp.gateways[fid]
		g.lastLoad = 0
		slots := 0
		for _, v := range g.versions {
			g.lastLoad += v.offered(now.Sub(dp.start))
			slots += v.active(now) * v.spec.Concurrency
		}
		g.lastUtil = serveRequests(g.pool, from, to, g.lastLoad, float64(slots))
	}
	dp.now = now
}

// offered is the load the version's profile offers at elapsed time t.
func (f *function) offered(t time.Duration) float64 {
	if f.spec.Load == nil {
		return 0
	}
	return math.Max(0, f.spec.Load(t))
}

// active counts the instances serving at now.
func (f *function) active(now time.Time) int {
	n := 0
	for _, in := range f.instances {
		if in.terminateAt.IsZero() && !now.Before(in.readyAt) {
			n++
		}
	}
	return n
}

// serveRequests advances a request pool over [from, to] at `rate` requests
// per second and returns the percent of slots held.
func serveRequests(p *requestPool, from, to, rate, slots float64) float64 {
	busy := p.busySeconds
	p.advance(from, to, rate*(to-from), slots)
	if slots <= 0 {
		return 0
	}
	return math.Min(100, 100*(p.busySeconds-busy)/(slots*(to-from)))
}

// reconcile makes active+pending follow the desired count: new instances
// start pending; removals take pending ones first, then the newest active.
func (f *function) reconcile(dp *DataPlane, now time.Time) {
	// Drop instances whose termination finished.
	kept := f.instances[:0]
	for _, in := range f.instances {
		if !in.terminateAt.IsZero() && !now.Before(in.terminateAt) {
			continue
		}
		kept = append(kept, in)
	}
	f.instances = kept
	if dp.ctrl == nil {
		return
	}
	desired, ok := dp.ctrl.Desired(f.spec.FunctionID, f.spec.FunctionVersionID)
	if !ok {
		return
	}
	var live []*instance
	for _, in := range f.instances {
		if in.terminateAt.IsZero() {
			live = append(live, in)
		}
	}
	switch {
	case desired > len(live):
		for i := len(live); i < desired; i++ {
			f.instances = append(f.instances, f.newInstance(now.Add(dp.provisioningDelay)))
		}
	case desired < len(live):
		// Pending (not yet ready) first, newest first.
		sort.SliceStable(live, func(i, j int) bool { return live[i].readyAt.After(live[j].readyAt) })
		for _, in := range live[:len(live)-desired] {
			in.terminateAt = now.Add(dp.terminationDelay)
		}
	}
}

// serve offers dt seconds of load to the active threads. Work that does not
// fit queues, so a saturated function shows ~100 % busy and a growing
// queue, as a real one would.
func (f *function) serve(elapsed time.Duration, now time.Time, dt float64) {
	rate := f.offered(elapsed)
	f.lastLoad = rate
	arrivals := rate * dt
	f.requests += arrivals
	work := (f.queue + arrivals) * f.spec.ServiceTime.Seconds() // thread-seconds demanded
	var active []*instance
	for _, in := range f.instances {
		if in.terminateAt.IsZero() && !now.Before(in.readyAt) {
			active = append(active, in)
		}
	}
	capacity := float64(len(active)*f.spec.ThreadsPerInstance) * dt
	done := math.Min(work, capacity)
	if len(active) > 0 {
		per := done / float64(len(active))
		for _, in := range active {
			in.busySeconds += per
		}
	}
	f.queue = (work - done) / f.spec.ServiceTime.Seconds()
	// A real queue times out; cap it at one minute of demand so a long
	// outage does not take hours to drain.
	f.queue = math.Min(f.queue, rate*60)
	if capacity > 0 {
		f.lastUtil = 100 * done / capacity
	} else {
		f.lastUtil = 0
	}
}

// Snapshots returns every version's state at the current time.
func (dp *DataPlane) Snapshots() []Snapshot {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	out := make([]Snapshot, 0, len(dp.order))
	for _, k := range dp.order {
		f := dp.functions[k]
		s := Snapshot{FunctionID: f.spec.FunctionID, FunctionVersionID: f.spec.FunctionVersionID, At: dp.now,
			Kind: f.spec.Kind, Load: f.lastLoad, Utilization: f.lastUtil, Queue: f.queue}
		switch f.spec.Kind {
		case KindBYOC:
			s.Queue = f.pool.waitingAmount()
			s.InFlight = s.Queue + f.pool.servingAmount()
		case KindGateway:
			g := dp.gateways[f.spec.FunctionID]
			s.Load, s.Utilization = g.lastLoad, g.lastUtil
			s.Queue = g.pool.waitingAmount()
			s.InFlight = s.Queue + g.pool.servingAmount()
		}
		slots := f.spec.ThreadsPerInstance
		if f.spec.Kind != KindWorker {
			slots = f.spec.Concurrency
		}
		s.Demand = s.Load * f.spec.ServiceTime.Seconds() / float64(slots)
		for _, in := range f.instances {
			switch {
			case !in.terminateAt.IsZero():
				s.Terminating++
			case dp.now.Before(in.readyAt):
				s.Pending++
			default:
				s.Active++
			}
		}
		s.Desired = -1
		if dp.ctrl != nil {
			if d, ok := dp.ctrl.Desired(f.spec.FunctionID, f.spec.FunctionVersionID); ok {
				s.Desired = d
			}
		}
		out = append(out, s)
	}
	return out
}
