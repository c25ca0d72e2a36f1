package harness

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Calibration is how long this machine takes for a fixed amount of work,
// so that benchmark figures from different machines can be compared. The
// CPU model does not tell them apart: two machines of this workplace that
// both report "Intel(R) Xeon(R) Processor" ran the same 100k-version cycle
// 1.6x apart, and hardware counters (perf stat's instructions and cycles)
// are not offered to these virtual machines.
type Calibration struct {
	// Median is the median time of Runs runs of the work, each on one
	// goroutine; lower is a faster machine.
	Median time.Duration `json:"median"`
	Runs   int           `json:"runs"`
	// Spread is the slowest run over the fastest: far above 1 says other
	// work shared the machine while it was measured.
	Spread float64 `json:"spread"`
}

// calibrationWork is the fixed work: sorting, hashing into a map and
// formatting and parsing numbers, the kinds of work the servers and the
// functions spend their cycles on (index and memtable look-ups, JSON and
// PromQL answers), on data larger than the CPU's caches so that memory
// speed counts as it does for them. It returns a checksum so that the
// compiler cannot drop any of it.
func calibrationWork(xs []uint64, m map[uint64]uint64) uint64 {
	// xorshift64: the same sequence on every machine.
	s := uint64(88172645463393265)
	next := func() uint64 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return s
	}
	for i := range xs {
		xs[i] = next()
	}
	slices.Sort(xs)
	clear(m)
	var sum uint64
	for i := 0; i < 400_000; i++ {
		k := xs[next()%uint64(len(xs))] % 200_000
		m[k] += uint64(i)
		sum += m[next()%200_000]
	}
	buf := make([]byte, 0, 32)
	for i := 0; i < 300_000; i++ {
		buf = strconv.AppendFloat(buf[:0], float64(xs[i])/math.MaxUint32, 'g', -1, 64)
		f, _ := strconv.ParseFloat(string(buf), 64)
		sum += uint64(f)
	}
	return sum + xs[len(xs)/2]
}

// Calibrate runs the fixed work runs times (at least 3) and reports the
// median: 471-495 ms a run on the 2-core machine of 2026-12-01.
func Calibrate(runs int) Calibration {
	runs = max(runs, 3)
	xs := make([]uint64, 2_000_000)
	m := make(map[uint64]uint64, 200_000)
	ds := make([]time.Duration, runs)
	var sink uint64
	for i := range ds {
		t0 := time.Now()
		sink += calibrationWork(xs, m)
		ds[i] = time.Since(t0)
	}
	calibrationSink = sink
	slices.Sort(ds)
	return Calibration{Median: ds[runs/2], Runs: runs, Spread: float64(ds[runs-1]) / float64(ds[0])}
}

// calibrationSink keeps the work's result reachable.
var calibrationSink uint64
