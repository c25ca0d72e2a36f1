package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A fresh Cassandra JVM spent about three times the CPU of an hour-old one
// on the same first cycle. Its threads say on what: the JIT compilers, the
// garbage collector, the request stages, flushes and compaction. The
// groups below are by thread name (Linux keeps its first 15 characters).

// threadGroups maps a thread-name prefix to its group, first match wins.
var threadGroups = []struct{ prefix, group string }{
	{"C2 CompilerThre", "JIT C2"},
	{"C1 CompilerThre", "JIT C1"},
	{"Sweeper thread", "JIT C1"}, // the code cache's sweeper: compiled code, like the compilers
	{"G1 ", "GC"},
	{"GC Thread", "GC"},
	{"VM Thread", "VM Thread"}, // safepoint operations: GC pauses' coordination, deoptimisation
	{"Native-Transpor", "Native-Transport"},
	{"epollEventLoop", "netty event loop"},
	{"MutationStage", "MutationStage"},
	{"ReadStage", "ReadStage"},
	{"MemtableFlushWr", "MemtableFlushWriter"},
	{"MemtablePostFlu", "MemtableFlushWriter"},
	{"PerDiskMemtable", "MemtableFlushWriter"},
	{"CompactionExecu", "CompactionExecutor"},
	{"COMMIT-LOG", "CommitLog"},
	{"PERIODIC-COMMIT", "CommitLog"},
}

// threadGroup is the group of a thread named comm.
func threadGroup(comm string) string {
	for _, g := range threadGroups {
		if strings.HasPrefix(comm, g.prefix) {
			return g.group
		}
	}
	return "other"
}

// exitedThreads is the group of the CPU used by threads that ended between
// two samples: the process's total counts it, no live thread does (idle
// pool threads of Cassandra's stages end after a while).
const exitedThreads = "exited threads"

// threadSample is one instant's CPU seconds of a process (with its
// kernel seconds and minor page faults) and of each of its live threads,
// by thread id.
type threadSample struct {
	total, kernel, minorFaults float64
	threads                    map[int]threadCPU
}

type threadCPU struct {
	group string
	cpu   float64
}

// procStat is what the bench reads of a /proc stat line.
type procStat struct {
	comm                string
	user, kernel, minor float64 // CPU seconds; minor page faults
}

// parseStat parses a /proc stat line (proc(5)); the command name is
// between the first '(' and the last ')', as it may hold either.
func parseStat(stat []byte) (procStat, bool) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 > len(stat) {
		return procStat{}, false
	}
	fields := strings.Fields(string(stat[end+2:]))
	if len(fields) < 13 {
		return procStat{}, false
	}
	var v [3]float64
	for i, f := range []int{11, 12, 7} { // utime, stime, minflt
		x, err := strconv.ParseFloat(fields[f], 64)
		if err != nil {
			return procStat{}, false
		}
		v[i] = x
	}
	return procStat{string(stat[open+1 : end]), v[0] / 100, v[1] / 100, v[2]}, true // USER_HZ is 100 on Linux
}

// statCPU is a /proc stat line's user plus system CPU seconds.
func statCPU(stat []byte) float64 {
	p, _ := parseStat(stat)
	return p.user + p.kernel
}

// sampleThreads reads procDir/stat and procDir/task/*/stat (procDir is
// /proc/PID); a process that is gone gives an empty sample.
func sampleThreads(procDir string) threadSample {
	s := threadSample{threads: map[int]threadCPU{}}
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return s
	}
	p, _ := parseStat(b)
	s.total, s.kernel, s.minorFaults = p.user+p.kernel, p.kernel, p.minor
	tasks, _ := os.ReadDir(filepath.Join(procDir, "task"))
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, "task", t.Name(), "stat"))
		if err != nil {
			continue // ended while we listed the others
		}
		if p, ok := parseStat(b); ok {
			s.threads[tid] = threadCPU{threadGroup(p.comm), p.user + p.kernel}
		}
	}
	return s
}

// JVMThreads is a JVM's CPU over an interval by thread group, and the
// kernel's part of it and the minor page faults: a heap touched for the
// first time shows as faults and kernel time, slow code as user time.
type JVMThreads struct {
	GroupS      map[string]float64 `json:"groupCpuSeconds"`
	KernelS     float64            `json:"kernelCpuSeconds"`
	MinorFaults float64            `json:"minorPageFaults"`
}

// threadsBetween is what the process's threads used from a to b; nil when
// the process is gone at b. A thread new in b began after a and counts all
// its CPU; one gone from b is in exitedThreads, the rest of the process's
// total.
func threadsBetween(a, b threadSample) *JVMThreads {
	if len(b.threads) == 0 {
		return nil
	}
	j := &JVMThreads{GroupS: map[string]float64{}, KernelS: b.kernel - a.kernel, MinorFaults: b.minorFaults - a.minorFaults}
	known := 0.0
	for tid, t := range b.threads {
		d := t.cpu - a.threads[tid].cpu
		j.GroupS[t.group] += d
		known += d
	}
	if rest := b.total - a.total - known; rest > 0.005 {
		j.GroupS[exitedThreads] = rest
	}
	return j
}

// String lists the groups largest first, those under 0.05 s together.
func (j *JVMThreads) String() string {
	if j == nil {
		return ""
	}
	g := j.GroupS
	names := make([]string, 0, len(g))
	for k := range g {
		names = append(names, k)
	}
	sort.Slice(names, func(a, b int) bool {
		if g[names[a]] != g[names[b]] {
			return g[names[a]] > g[names[b]]
		}
		return names[a] < names[b]
	})
	var parts []string
	rest := 0.0
	for _, k := range names {
		if g[k] < 0.05 {
			rest += g[k]
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f", k, g[k]))
	}
	if rest >= 0.05 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("smaller groups %.1f", rest))
	}
	return fmt.Sprintf("%s; kernel %.1f of it, %.0fk minor page faults", strings.Join(parts, ", "), j.KernelS, j.MinorFaults/1000)
}
