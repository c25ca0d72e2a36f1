package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"function/shared/policy"
)

// candidate is one point of the settings search.
type candidate struct {
	p           policy.Policy
	total, step Result
	score       float64
}

// Explore runs a grid of settings (mode, target utilization, tolerance,
// stabilization window, rate bounds) around the shipped policy over every
// trace and prints the ones Pareto-better than the reference in total and
// on the step trace that react no slower, best first by the sum of their
// overload and instance-minute ratios to the reference, and the Pareto
// front of the whole grid.
func Explore(out io.Writer, base policy.Policy, traces []Trace, ref, refStep Result) {
	var grid []policy.Policy
	stabs := []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute, 10 * time.Minute}
	ups := []float64{0, 4, 10}
	downs := []float64{0, 1.25, 1.5, 2}
	for _, stab := range stabs {
		for _, up := range ups {
			for _, down := range downs {
				p := base
				p.ScaleDownStabilization, p.MaxScaleUpRate, p.MaxScaleDownRate = stab, up, down
				p.Mode = policy.ModeNVCF
				grid = append(grid, p)
				p.Mode = policy.ModeTarget
				for _, target := range []float64{50, 60, 70, 75, 80, 85} {
					for _, tol := range []float64{0.05, 0.1, 0.2} {
						p.TargetUtilization, p.Tolerance = target, tol
						grid = append(grid, p)
					}
				}
			}
		}
	}
	began := time.Now()
	var all, winners []candidate
	for _, p := range grid {
		c := Contender{Name: "candidate", Policy: p, Loop: cycle, Phase: decisionLatency, Demand: true}
		var rs []Result
		var step Result
		for _, tr := range traces {
			r := Run(tr, c)
			r.Minutes = nil
			rs = append(rs, r)
			if tr.Name == "step" {
				step = r
			}
		}
		total := Totals(rs)
		cand := candidate{p: p, total: total, step: step,
			score: float64(total.OverloadedMinutes)/float64(max(ref.OverloadedMinutes, 1)) + total.InstanceMinutes/ref.InstanceMinutes}
		all = append(all, cand)
		if ParetoBetter(total, ref) && ParetoBetter(step, refStep) && step.ReactionSeconds >= 0 && step.ReactionSeconds <= refStep.ReactionSeconds {
			winners = append(winners, cand)
		}
	}
	sort.Slice(winners, func(i, j int) bool { return winners[i].score < winners[j].score })
	fmt.Fprintf(out, "\nexplored %d settings in %.1f s; %d are Pareto-better than the reference (%d overloaded min, %.0f instance-min) in total and on the step trace and react no slower\n",
		len(grid), time.Since(began).Seconds(), len(winners), ref.OverloadedMinutes, ref.InstanceMinutes)
	printCandidates(out, "best 20 of those (score = overload ratio + instance-minute ratio to the reference):", winners[:min(20, len(winners))])

	sort.Slice(all, func(i, j int) bool {
		if all[i].total.OverloadedMinutes != all[j].total.OverloadedMinutes {
			return all[i].total.OverloadedMinutes < all[j].total.OverloadedMinutes
		}
		return all[i].total.InstanceMinutes < all[j].total.InstanceMinutes
	})
	var front []candidate
	for _, c := range all {
		if len(front) == 0 || c.total.InstanceMinutes < front[len(front)-1].total.InstanceMinutes {
			front = append(front, c)
		}
	}
	printCandidates(out, "Pareto front of the whole grid (total overloaded minutes against instance-minutes):", front)
}

func printCandidates(out io.Writer, title string, cs []candidate) {
	fmt.Fprintf(out, "\n%s\n", title)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\ttarget\ttolerance\tstabilization\tup rate\tdown rate\toverloaded min\tinstance-min\tstep overloaded\tstep instance-min\treaction s\tscore\t")
	for _, c := range cs {
		p := c.p
		target, tol := "-", "-"
		if p.Mode == policy.ModeTarget {
			target, tol = fmt.Sprint(p.TargetUtilization), fmt.Sprint(p.Tolerance)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%g\t%d\t%.0f\t%d\t%.0f\t%s\t%.3f\t\n", p.Mode, target, tol, p.ScaleDownStabilization,
			p.MaxScaleUpRate, p.MaxScaleDownRate, c.total.OverloadedMinutes, c.total.InstanceMinutes,
			c.step.OverloadedMinutes, c.step.InstanceMinutes, seconds(c.step.ReactionSeconds), c.score)
	}
	tw.Flush()
}
