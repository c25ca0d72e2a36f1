package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Breakdown says where one cycle's time went: discovery's phases (from its
// reply), each bucket's wait in the broker and its own phases (from its
// reply), and the CPU each process and the whole machine used while
// discovery ran and after it answered. It is how the first cycle after
// the import was taken apart: what waits on what, and on whose CPU.
type Breakdown struct {
	// Discovery's phases, seconds: the PromQL queries, the read of the
	// stored rows, the upsert, and the fan-out of the bucket events.
	DiscoveryQueryS  float64 `json:"discoveryQuerySeconds"`
	DiscoveryReadS   float64 `json:"discoveryReadSeconds"`
	DiscoveryUpsertS float64 `json:"discoveryUpsertSeconds"`
	DiscoverySendS   float64 `json:"discoverySendSeconds"`
	DiscoveryRows    int     `json:"discoveryRowsWritten"`
	// FirstBucketS and LastAnswerS are when the broker began the first
	// delivery and had the last answer, seconds after the tick.
	FirstBucketS float64 `json:"firstBucketSeconds"`
	LastAnswerS  float64 `json:"lastAnswerSeconds"`
	// Decided buckets answered with a decision; Expired ones arrived past
	// their deadline and were dropped.
	Decided int `json:"decided"`
	Expired int `json:"expired"`
	// Per decided bucket: its time in the broker's queue, its whole
	// handling and its phases (Cassandra read, PromQL, decide and write).
	QueueS   Stat `json:"queueSeconds"`
	BucketS  Stat `json:"bucketSeconds"`
	ReadS    Stat `json:"readSeconds"`
	MetricsS Stat `json:"metricsSeconds"`
	ApplyS   Stat `json:"applySeconds"`
	// Phases is the CPU each process used while discovery ran (from the
	// tick to its reply) and after (to the cycle's end).
	Phases []PhaseCPU `json:"phases"`
	// Buckets are the deliveries themselves, in the order they began.
	Buckets []bucketAnswer `json:"buckets,omitempty"`
}

// Stat summarises one figure over a cycle's buckets.
type Stat struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	Max  float64 `json:"max"`
	Sum  float64 `json:"sum"`
}

func statOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	var st Stat
	for _, x := range s {
		st.Sum += x
	}
	st.Mean, st.P50, st.Max = st.Sum/float64(len(s)), s[(len(s)-1)/2], s[len(s)-1]
	return st
}

// PhaseCPU is the CPU seconds used in one phase of a cycle, by process
// (discovery, scale, tsdb, cassandra, bench: the NVCF simulator and the
// broker) and by the whole machine ("machine"; other engineers' work is
// the machine's less the named ones).
type PhaseCPU struct {
	Name  string             `json:"name"`
	WallS float64            `json:"wallSeconds"`
	CPUS  map[string]float64 `json:"cpuSeconds"`
	// CassandraThreads is the local Cassandra's CPU by thread group
	// (jvmthreads.go): JIT compilers, GC, request stages, flushes.
	CassandraThreads *JVMThreads `json:"cassandraThreads,omitempty"`
}

// bucketAnswer is one bucket delivery as the broker saw it, with the
// phases the scale function reported in its reply.
type bucketAnswer struct {
	Bucket int `json:"bucket"`
	// QueuedS, StartS and EndS are seconds after the tick: accepted from
	// discovery, first delivery attempt begun, last attempt answered.
	QueuedS float64 `json:"queuedSeconds"`
	StartS  float64 `json:"startSeconds"`
	EndS    float64 `json:"endSeconds"`
	OK      bool    `json:"ok"`
	Expired bool    `json:"expired,omitempty"`
	Written int     `json:"written"`
	Queries int     `json:"queries"`
	ReadMS  int64   `json:"readMs"`
	// MetricsMS and ApplyMS are the scale function's PromQL and its
	// decide-and-write phases.
	MetricsMS int64 `json:"metricsMs"`
	ApplyMS   int64 `json:"applyMs"`
}

// cpuSample is the CPU seconds each named process and the whole machine
// had used at one instant.
type cpuSample struct {
	procs   map[string]float64
	machine float64
	// cassandra is the local Cassandra's threads, when its PID is known.
	cassandra threadSample
}

// sampleCPU reads the CPU seconds of pids (a pid of 0 is skipped) and the
// machine's busy seconds over all CPUs from /proc/stat.
func sampleCPU(pids map[string][]int) cpuSample {
	s := cpuSample{procs: map[string]float64{}, machine: machineBusy()}
	for name, ps := range pids {
		for _, pid := range ps {
			s.procs[name] += procCPU(pid)
		}
	}
	if ps := pids["cassandra"]; len(ps) == 1 && ps[0] != 0 {
		s.cassandra = sampleThreads(fmt.Sprintf("/proc/%d", ps[0]))
	}
	return s
}

// phase is the CPU used between two samples.
func phase(name string, wall time.Duration, a, b cpuSample) PhaseCPU {
	p := PhaseCPU{Name: name, WallS: wall.Seconds(), CPUS: map[string]float64{"machine": b.machine - a.machine},
		CassandraThreads: threadsBetween(a.cassandra, b.cassandra)}
	for k, v := range b.procs {
		p.CPUS[k] = v - a.procs[k]
	}
	return p
}

// machineBusy is the CPU seconds the machine spent on anything but idle
// and I/O wait, over all CPUs, since boot.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	total := 0.0
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		total += x
	}
	return total / 100 // USER_HZ
}

// cassandraPID is the local stack's Cassandra, from its pid file (0 when
// the bench runs against another one).
func cassandraPID(root string) int {
	dir := os.Getenv("STACK_DIR")
	if dir == "" {
		dir = filepath.Join(root, ".cache")
	}
	b, err := os.ReadFile(filepath.Join(dir, "run", "cassandra.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// breakdown puts a cycle's bucket answers and CPU phases together.
func breakdown(d discoveryResult, answers []bucketAnswer, phases []PhaseCPU) *Breakdown {
	b := &Breakdown{
		DiscoveryQueryS: float64(d.QueryMS) / 1000, DiscoveryReadS: float64(d.ReadMS) / 1000,
		DiscoveryUpsertS: float64(d.UpsertMS) / 1000, DiscoverySendS: float64(d.SendMS) / 1000,
		DiscoveryRows: d.Upserted, Phases: phases, Buckets: answers, FirstBucketS: math.Inf(1),
	}
	var queue, whole, read, metrics, apply []float64
	for _, a := range answers {
		b.FirstBucketS = math.Min(b.FirstBucketS, a.StartS)
		b.LastAnswerS = math.Max(b.LastAnswerS, a.EndS)
		switch {
		case a.Expired:
			b.Expired++
		case a.OK:
			b.Decided++
			queue = append(queue, a.StartS-a.QueuedS)
			whole = append(whole, a.EndS-a.StartS)
			read, metrics, apply = append(read, float64(a.ReadMS)/1000), append(metrics, float64(a.MetricsMS)/1000), append(apply, float64(a.ApplyMS)/1000)
		}
	}
	if len(answers) == 0 {
		b.FirstBucketS = 0
	}
	b.QueueS, b.BucketS, b.ReadS, b.MetricsS, b.ApplyS = statOf(queue), statOf(whole), statOf(read), statOf(metrics), statOf(apply)
	return b
}

// breakdownLines prints a breakdown as a few indented lines.
func breakdownLines(b *Breakdown) string {
	if b == nil {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "     discovery: query %.1fs, read %.1fs, upsert %.1fs (%d rows), send %.1fs\n",
		b.DiscoveryQueryS, b.DiscoveryReadS, b.DiscoveryUpsertS, b.DiscoveryRows, b.DiscoverySendS)
	fmt.Fprintf(&sb, "     buckets: first begun %.1fs, last answered %.1fs after the tick; %d decided, %d expired; per decided bucket mean (p50, max): queue %.1fs, whole %.2fs (%.2f, %.2f), read %.2fs, PromQL %.2fs (%.2f, %.2f), decide+write %.2fs (%.2f, %.2f)\n",
		b.FirstBucketS, b.LastAnswerS, b.Decided, b.Expired, b.QueueS.Mean, b.BucketS.Mean, b.BucketS.P50, b.BucketS.Max,
		b.ReadS.Mean, b.MetricsS.Mean, b.MetricsS.P50, b.MetricsS.Max, b.ApplyS.Mean, b.ApplyS.P50, b.ApplyS.Max)
	for _, p := range b.Phases {
		names := make([]string, 0, len(p.CPUS))
		for k := range p.CPUS {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		ours := 0.0
		for _, k := range names {
			if k == "machine" {
				continue
			}
			ours += p.CPUS[k]
			parts = append(parts, fmt.Sprintf("%s %.1f", k, p.CPUS[k]))
		}
		fmt.Fprintf(&sb, "     CPU-s %s (%.1fs): %s; machine %.1f (%.2f cores busy; %.1f not the bench's)\n",
			p.Name, p.WallS, strings.Join(parts, ", "), p.CPUS["machine"], p.CPUS["machine"]/math.Max(p.WallS, 1e-9), p.CPUS["machine"]-ours)
		if p.CassandraThreads != nil {
			fmt.Fprintf(&sb, "       cassandra's threads: %s\n", p.CassandraThreads)
		}
	}
	return sb.String()
}
