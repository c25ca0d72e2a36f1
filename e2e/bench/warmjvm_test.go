package main

import (
	"context"
	"testing"
	"time"
)

// compilerTrace is a sampler of the JIT's cumulative CPU: steps[i] is what
// the compilers spent before the i-th sample after the first; the trace
// ends in gone when set.
func compilerTrace(steps []float64, gone bool) (func() (float64, bool), *int) {
	calls := 0
	cpu := 0.0
	return func() (float64, bool) {
		defer func() { calls++ }()
		if calls == 0 {
			return cpu, true
		}
		i := calls - 1
		if i >= len(steps) {
			if gone {
				return 0, false
			}
			return cpu, true
		}
		cpu += steps[i]
		return cpu, true
	}, &calls
}

// TestSettleCompilersWaitsForTwoQuietIntervals: a queue that drains after
// three busy intervals is quiet after two more, and the CPU spent while
// waiting is what the compilers spent; one quiet interval between busy
// ones is not enough.
func TestSettleCompilersWaitsForTwoQuietIntervals(t *testing.T) {
	const interval = time.Millisecond
	// Per interval: busy, busy, quiet, busy, then quiet. The rate is per
	// interval: 0.00004 s in 1 ms is 0.04 s a second (under the bar),
	// 0.0001 is 0.1 (over it).
	sample, calls := compilerTrace([]float64{0.0005, 0.0005, 0.00004, 0.0001, 0, 0}, false)
	_, cpu, quiet := settleCompilers(context.Background(), sample, interval, time.Minute)
	if !quiet {
		t.Fatal("the compilers went quiet, the wait says not")
	}
	if *calls != 7 {
		t.Fatalf("settled after %d samples, want 7 (the first, six intervals: quiet only in the last two running)", *calls)
	}
	if want := 0.00114; cpu < want-1e-9 || cpu > want+1e-9 {
		t.Fatalf("compilers' CPU during the wait %.6f, want %.6f", cpu, want)
	}
}

// TestSettleCompilersStopsAtItsLimitOrWithTheProcess: compilers that never
// go quiet end the wait at its limit, reported not quiet; a JVM gone ends
// it at once, not quiet either.
func TestSettleCompilersStopsAtItsLimitOrWithTheProcess(t *testing.T) {
	busy := make([]float64, 1_000_000)
	for i := range busy {
		busy[i] = 0.001
	}
	sample, _ := compilerTrace(busy, false)
	if _, _, quiet := settleCompilers(context.Background(), sample, time.Millisecond, 20*time.Millisecond); quiet {
		t.Fatal("compilers busy in every interval were reported quiet")
	}
	sample, calls := compilerTrace([]float64{0.001}, true)
	if _, _, quiet := settleCompilers(context.Background(), sample, time.Millisecond, time.Minute); quiet || *calls != 3 {
		t.Fatalf("a JVM gone at the third sample: quiet %v after %d samples, want false after 3", quiet, *calls)
	}
}
