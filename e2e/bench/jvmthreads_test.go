package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeStat writes a /proc stat line whose command is comm, whose user
// and system times are ut and st ticks and whose minor page faults are
// minflt; the other fields are filler.
func writeStat(t *testing.T, path, comm string, ut, st, minflt int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("42 (%s) S 1 1 1 0 -1 4194560 %d 0 0 0 %d %d 0 0 20 0 60 0 7 1 1\n", comm, minflt, ut, st)
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Two samples of a fake process: threads are grouped by name (even one
// with a space and a parenthesis in it), a thread that started between
// them counts all its CPU, and one that ended is the process's rest.
func TestGroupsBetween(t *testing.T) {
	dir := t.TempDir()
	// The process's ticks are split 3:1 between user and kernel, and it
	// faults a page per tick of kernel time.
	sample := func(total int, threads map[int][3]any) threadSample {
		os.RemoveAll(filepath.Join(dir, "task"))
		writeStat(t, filepath.Join(dir, "stat"), "java", total*3/4, total/4, total/4)
		for tid, th := range threads {
			writeStat(t, filepath.Join(dir, "task", fmt.Sprint(tid), "stat"), th[0].(string), th[1].(int), th[2].(int), 0)
		}
		return sampleThreads(dir)
	}
	a := sample(1000, map[int][3]any{
		10: {"C2 CompilerThre", 300, 10},
		11: {"G1 Conc#0", 50, 0},
		12: {"Native-Transpor", 100, 20},
		13: {"MutationStage-3", 40, 0}, // ends before the second sample
		14: {"odd) name (x", 5, 0},
	})
	b := sample(2000, map[int][3]any{
		10: {"C2 CompilerThre", 600, 10},
		11: {"G1 Conc#0", 80, 0},
		12: {"Native-Transpor", 300, 20},
		14: {"odd) name (x", 5, 0},
		15: {"GC Thread#1", 60, 10}, // new
	})
	got := threadsBetween(a, b)
	want := map[string]float64{"JIT C2": 3, "GC": 1, "Native-Transport": 2, "other": 0, exitedThreads: 4}
	if len(got.GroupS) != len(want) {
		t.Fatalf("groups %v, want %v", got.GroupS, want)
	}
	for k, v := range want {
		if d := got.GroupS[k] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: %.3f CPU-s, want %.3f (all: %v)", k, got.GroupS[k], v, got.GroupS)
		}
	}
	if got.KernelS != 2.5 || got.MinorFaults != 250 {
		t.Errorf("kernel %.2f CPU-s, %.0f minor faults, want 2.5 and 250", got.KernelS, got.MinorFaults)
	}
	if line, want := got.String(), "exited threads 4.0, JIT C2 3.0, Native-Transport 2.0, GC 1.0; kernel 2.5 of it, 0k minor page faults"; line != want {
		t.Errorf("line %q, want %q", line, want)
	}
	if g := threadsBetween(a, sample(0, nil)); g != nil {
		t.Errorf("a process that is gone: %v, want nothing", g)
	}
}
