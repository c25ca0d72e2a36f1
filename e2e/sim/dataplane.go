// Package sim is the data plane of the NVCF simulator: function instances
// that provision, serve and terminate, the load offered to them, and the
// worker and request metrics they expose with the real names and labels.
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

	"github.com/prometheus/client_golang/prometheus"
)

// Controller says how many instances a version should have (the NVCF API's
// clamped desired count).
type Controller interface {
	Desired(functionID, functionVersionID string) (int, bool)
}

// FunctionSpec describes one simulated function version.
type FunctionSpec struct {
	FunctionID        string
	FunctionVersionID string
	NcaID             string
	// ServiceTime is the busy time one request takes on one worker thread.
	ServiceTime time.Duration
	// ThreadsPerInstance is the worker threads of one instance.
	ThreadsPerInstance int
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
	queue     float64 // requests waiting for a free thread
	requests  float64 // arrivals, counter
	lastLoad  float64
	lastUtil  float64
}

// Snapshot is one version's state at a point in time, for plots and tests.
type Snapshot struct {
	FunctionID        string
	FunctionVersionID string
	At                time.Time
	Load              float64 // offered requests per second
	Active            int
	Pending           int
	Terminating       int
	Desired           int
	Utilization       float64 // percent of active thread time busy in the last tick
	Queue             float64
}

// DataPlane advances every function's instances and load in ticks.
type DataPlane struct {
	mu                sync.Mutex
	start             time.Time
	now               time.Time
	ctrl              Controller
	provisioningDelay time.Duration
	terminationDelay  time.Duration
	functions         map[string]*function
	order             []string
}

// Options tune instance lifecycle timing.
type Options struct {
	ProvisioningDelay time.Duration // pending -> active
	TerminationDelay  time.Duration // terminating -> gone
}

// NewDataPlane starts a data plane at start.
func NewDataPlane(start time.Time, ctrl Controller, opts Options, specs ...FunctionSpec) *DataPlane {
	dp := &DataPlane{start: start, now: start, ctrl: ctrl, provisioningDelay: opts.ProvisioningDelay,
		terminationDelay: opts.TerminationDelay, functions: map[string]*function{}}
	for _, s := range specs {
		dp.Add(s)
	}
	return dp
}

func key(fid, vid string) string { return fid + "/" + vid }

// Add registers a function version with its initial active instances.
func (dp *DataPlane) Add(s FunctionSpec) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if s.ThreadsPerInstance < 1 {
		s.ThreadsPerInstance = 1
	}
	if s.ServiceTime <= 0 {
		s.ServiceTime = 100 * time.Millisecond
	}
	f := &function{spec: s}
	for i := 0; i < s.InitialInstances; i++ {
		f.instances = append(f.instances, f.newInstance(dp.now))
	}
	k := key(s.FunctionID, s.FunctionVersionID)
	if _, ok := dp.functions[k]; !ok {
		dp.order = append(dp.order, k)
	}
	dp.functions[k] = f
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
	for _, k := range dp.order {
		f := dp.functions[k]
		f.reconcile(dp, now)
		f.serve(now.Sub(dp.start), now, dt)
	}
	dp.now = now
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
	rate := 0.0
	if f.spec.Load != nil {
		rate = math.Max(0, f.spec.Load(elapsed))
	}
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
			Load: f.lastLoad, Utilization: f.lastUtil, Queue: f.queue}
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

// Metric names and labels: the contract the autoscaler reads.
const (
	MetricBusySeconds = "nvcf_worker_service_worker_thread_busy_seconds_total"
	MetricThreadCount = "nvcf_worker_service_worker_thread_count_total"
	MetricRequests    = "function_request_total"
)

var (
	busyDesc    = prometheus.NewDesc(MetricBusySeconds, "Busy seconds of a worker's threads.", []string{"function_id", "function_version_id", "nca_id", "instance_id"}, nil)
	threadsDesc = prometheus.NewDesc(MetricThreadCount, "Worker threads of one instance; one series per instance.", []string{"function_id", "function_version_id", "nca_id", "instance_id"}, nil)
	requestDesc = prometheus.NewDesc(MetricRequests, "Requests routed to the function version.", []string{"function_id", "function_version_id", "nca_id"}, nil)
)

// Describe implements prometheus.Collector.
func (dp *DataPlane) Describe(ch chan<- *prometheus.Desc) {
	ch <- busyDesc
	ch <- threadsDesc
	ch <- requestDesc
}

// Collect implements prometheus.Collector: workers report only while they
// are active (a pending worker has not started its exporter; a terminating
// one has stopped serving).
func (dp *DataPlane) Collect(ch chan<- prometheus.Metric) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	for _, k := range dp.order {
		f := dp.functions[k]
		s := f.spec
		for _, in := range f.instances {
			if !in.terminateAt.IsZero() || dp.now.Before(in.readyAt) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(busyDesc, prometheus.CounterValue, in.busySeconds, s.FunctionID, s.FunctionVersionID, s.NcaID, in.id)
			ch <- prometheus.MustNewConstMetric(threadsDesc, prometheus.GaugeValue, float64(s.ThreadsPerInstance), s.FunctionID, s.FunctionVersionID, s.NcaID, in.id)
		}
		ch <- prometheus.MustNewConstMetric(requestDesc, prometheus.CounterValue, f.requests, s.FunctionID, s.FunctionVersionID, s.NcaID)
	}
}
