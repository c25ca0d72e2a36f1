package main

import (
	"fmt"
	"math"
	"strings"
)

// cycleLine is one cycle's figures on one line.
func cycleLine(c Cycle) string {
	line := fmt.Sprintf("%.2fs (discovery %.2fs), %d queries, %d NVCF writes", c.WallS, c.DiscoveryS, c.Queries, c.NVCFWrites)
	if c.NVCFWrites > 0 {
		line += fmt.Sprintf(" (last %.1fs after the tick)", c.LastWriteS)
	}
	line += fmt.Sprintf(", %d LWTs, CPU-s %.2f discovery %.2f scale %.2f TSDB, load %.1f", c.CQLLWTs, c.DiscoveryCPUS, c.ScaleCPUS, c.TSDBCPUS, c.Load1)
	if c.BucketsFailed+c.BucketsUnanswered > 0 {
		line += fmt.Sprintf(", buckets failed %d, unanswered at 60 s %d", c.BucketsFailed, c.BucketsUnanswered)
	}
	return line
}

func printRun(r Run) {
	s := r.Summary
	if r.WarmupCycles > 0 {
		fmt.Printf("   (after %d warm-up cycles)\n", r.WarmupCycles)
	}
	fmt.Printf("   => N=%d %s, %d scale process(es): cycle p50 %.2fs p95 %.2fs, discovery p50 %.2fs, %.0f queries/cycle (%.4f per function), %.0f LWTs/cycle, %.0f NVCF writes/cycle, %.2f CPU-s/cycle, peak RSS scale %.0f MiB discovery %.0f MiB\n",
		r.N, r.Mode, r.ScaleProcesses, s.WallP50, s.WallP95, s.DiscoveryP50, s.QueriesPerCycle, s.QueriesPerFunction, s.LWTsPerCycle, s.NVCFWritesPerCycle, s.CPUPerCycle, s.PeakRSSScaleMB, s.PeakRSSDiscoveryMB)
	if s.QueriesPerCycle > 0 {
		// Each version is read through one metric source (family), so one
		// query per version per family is N queries a cycle.
		fmt.Printf("   => N=%d %s: %.0fx fewer queries than one per version per family\n", r.N, r.Mode, float64(r.N)/s.QueriesPerCycle)
	}
}

// printTable prints one line per N and mode, then the ratios of the
// per-function runs to the batched ones of the same N.
func printTable(rep Report) {
	fmt.Println()
	fmt.Printf("machine: %s; load average at start %s\n", rep.Machine, rep.LoadAtStart)
	fmt.Printf("%-8s %-13s %5s %7s %8s %8s %9s %9s %9s %10s %8s %8s %8s %8s %8s %8s %9s %s\n",
		"N", "mode", "procs", "buckets", "p50 s", "p95 s", "disc s", "queries", "q/fn", "LWT/cycle", "writes", "CPU s", "TSDB s", "RSS sc", "RSS di", "load", "first s", "warm-up s")
	for _, r := range rep.Runs {
		s := r.Summary
		first := "-"
		if r.First.WallS > 0 {
			first = fmt.Sprintf("%.2f", r.First.WallS)
		}
		var warm []string
		for _, c := range r.Warmup {
			warm = append(warm, fmt.Sprintf("%.1f", c.WallS))
		}
		fmt.Printf("%-8d %-13s %5d %7d %8.2f %8.2f %9.2f %9.0f %9.4f %10.0f %8.0f %8.2f %8.2f %8.0f %8.0f %8.1f %9s %s\n",
			r.N, r.Mode, r.ScaleProcesses, r.Buckets, s.WallP50, s.WallP95, s.DiscoveryP50, s.QueriesPerCycle, s.QueriesPerFunction, s.LWTsPerCycle,
			s.NVCFWritesPerCycle, s.CPUPerCycle, s.TSDBCPUPerCycle, s.PeakRSSScaleMB, s.PeakRSSDiscoveryMB, s.Load1, first, strings.Join(warm, " "))
	}
	for _, b := range rep.Runs {
		if b.Mode != "batched" {
			continue
		}
		for _, p := range rep.Runs {
			if p.N == b.N && p.Mode == "batched" && p.ScaleProcesses > b.ScaleProcesses && b.ScaleProcesses == rep.Options.ScaleProcesses[0] {
				fmt.Printf("N=%d: %d/%d scale processes: %.2fx the cycle time (p50 %.2fs against %.2fs)\n", b.N, p.ScaleProcesses, b.ScaleProcesses,
					p.Summary.WallP50/b.Summary.WallP50, p.Summary.WallP50, b.Summary.WallP50)
			}
			if p.N == b.N && p.Mode == "per-function" && p.ScaleProcesses == b.ScaleProcesses {
				fmt.Printf("N=%d: per-function/batched: %.0fx the queries, %.2fx the cycle time, %.2fx the CPU\n", b.N,
					p.Summary.QueriesPerCycle/b.Summary.QueriesPerCycle, p.Summary.WallP50/b.Summary.WallP50, p.Summary.CPUPerCycle/b.Summary.CPUPerCycle)
			}
		}
	}
}

// plot draws cycle time (p50, with p95 whiskers) against N on a log axis,
// one line per mode, as a standalone SVG.
func plot(rep Report) string {
	const w, h, ml, mr, mt, mb = 640.0, 400.0, 60.0, 140.0, 30.0, 50.0
	minN, maxN, maxT := math.Inf(1), 0.0, 0.0
	for _, r := range rep.Runs {
		minN, maxN = math.Min(minN, float64(r.N)), math.Max(maxN, float64(r.N))
		maxT = math.Max(maxT, r.Summary.WallP95)
	}
	if maxN <= minN {
		maxN = minN * 10
	}
	maxT = math.Max(maxT*1.1, 1)
	x := func(n float64) float64 {
		return ml + (math.Log10(n)-math.Log10(minN))/(math.Log10(maxN)-math.Log10(minN))*(w-ml-mr)
	}
	y := func(t float64) float64 { return h - mb - t/maxT*(h-mt-mb) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="18" font-size="14">Cycle time against active function versions (%s)</text>`+"\n", ml, rep.Machine)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n",
		ml, h-mb, w-mr, h-mb, ml, mt, ml, h-mb)
	for n := minN; n <= maxN*1.001; n *= 10 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(n), h-mb+18, fmtN(n))
	}
	for i := 0; i <= 5; i++ {
		t := maxT * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.1f s</text><line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`+"\n", ml-6, y(t)+4, t, ml, y(t), w-mr, y(t))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">function versions (log)</text>`+"\n", (ml+w-mr)/2, h-12)
	colors := map[string]string{"batched": "#1f77b4", "per-function": "#d62728"}
	ly := mt + 10
	for _, mode := range []string{"batched", "per-function"} {
		var pts []string
		for _, r := range rep.Runs {
			if r.Mode != mode || r.ScaleProcesses != rep.Options.ScaleProcesses[0] {
				continue // one line per mode: the first scale process count
			}
			px := x(float64(r.N))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, y(r.Summary.WallP50)))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/><circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n",
				px, y(r.Summary.WallP50), px, y(r.Summary.WallP95), colors[mode], px, y(r.Summary.WallP50), colors[mode])
		}
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[mode], strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="3" fill="%s"/><text x="%.0f" y="%.0f">%s (p50, p95 bar)</text>`+"\n", w-mr+10, ly, colors[mode], w-mr+26, ly+5, mode)
		ly += 18
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func fmtN(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.0fM", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0fk", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}
