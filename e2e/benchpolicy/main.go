// Command benchpolicy replays load shapes through the real policy.Decide
// in a closed loop with production timings, for the reference autoscaler
// at its 15 s loop, our modes at the PingSource's 60 s and an oracle, and
// prints per trace and in total: overloaded minutes, instance-minutes,
// queued-request-minutes, scale events and the reaction time to a 10x
// step. It needs no servers and runs in seconds; `make bench-policy` runs
// it. -explore searches the settings for the Pareto front against the
// reference (how the shipped default was chosen).
//
// The loop is one function version in virtual seconds: load arrives as
// requests, queues when capacity is short and is served in order; workers
// report busy seconds, the invocation plane counts requests on arrival,
// both are scraped every 30 s, and each decision reads them as the scale
// function's queries do (60 s steps ending at the decision's minute,
// instances at the settled minute, a partial window ending now). Written
// counts take provisioningDelay to serve.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"function/shared/policy"
)

// Summary is what summary.json holds.
type Summary struct {
	CPU         string            `json:"cpu"`
	Timings     map[string]string `json:"timings"`
	Contenders  map[string]string `json:"contenders"`
	Totals      []Result          `json:"totals"`
	ParetoTotal bool              `json:"defaultParetoBetterInTotal"`
	ParetoStep  bool              `json:"defaultParetoBetterOnStep"`
	ReactsFast  bool              `json:"defaultReactsNoSlower"`
}

func main() {
	out := flag.String("out", "e2e/out/benchpolicy", "directory for the JSON and SVG files")
	plotCopy := flag.String("keepalive-plot", "e2e/benchpolicy/keepalive.svg", "also write the keep-alive plot here, the copy the README shows (empty: no copy)")
	explore := flag.Bool("explore", false, "also search the settings for the Pareto front against the reference")
	var o overrides
	flag.StringVar(&o.mode, "mode", "", "replace the default's POLICY_MODE (nvcf or target)")
	flag.Float64Var(&o.target, "target", 0, "replace the default's TARGET_UTILIZATION")
	flag.Float64Var(&o.tolerance, "tolerance", -1, "replace the default's TARGET_TOLERANCE")
	flag.DurationVar(&o.stabilization, "stabilization", -1, "replace the default's SCALE_DOWN_STABILIZATION")
	flag.DurationVar(&o.flapWindow, "flap-window", -1, "replace the default's SCALE_DOWN_FLAP_WINDOW")
	flag.Float64Var(&o.upRate, "up-rate", -1, "replace the default's MAX_SCALE_UP_RATE")
	flag.Float64Var(&o.downRate, "down-rate", -1, "replace the default's MAX_SCALE_DOWN_RATE")
	flag.Parse()
	ok, err := run(*out, *plotCopy, *explore, o)
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		os.Exit(1)
	}
}

// overrides replace settings of the "default" contender, to see what a
// configuration would do before shipping it; unset fields keep the
// shipped value.
type overrides struct {
	mode                                string
	target, tolerance, upRate, downRate float64
	stabilization, flapWindow           time.Duration
}

func (o overrides) apply(p policy.Policy) (policy.Policy, error) {
	if o.mode != "" {
		p.Mode = policy.Mode(o.mode)
	}
	if o.target > 0 {
		p.TargetUtilization = o.target
	}
	if o.tolerance >= 0 {
		p.Tolerance = o.tolerance
	}
	if o.stabilization >= 0 {
		p.ScaleDownStabilization = o.stabilization
	}
	if o.flapWindow >= 0 {
		p.ScaleDownFlapWindow = o.flapWindow
	}
	if o.upRate >= 0 {
		p.MaxScaleUpRate = o.upRate
	}
	if o.downRate >= 0 {
		p.MaxScaleDownRate = o.downRate
	}
	return p, p.Validate()
}

func run(outDir, plotCopy string, explore bool, o overrides) (bool, error) {
	began := time.Now()
	shipped, err := Shipped("")
	if err != nil {
		return false, err
	}
	if shipped, err = o.apply(shipped); err != nil {
		return false, fmt.Errorf("flags: %w", err)
	}
	contenders, err := Contenders(shipped)
	if err != nil {
		return false, err
	}
	traces := Traces()

	sum := Summary{CPU: cpuModel(), Timings: timings(), Contenders: map[string]string{}}
	fmt.Printf("policy benchmark on %s\n", sum.CPU)
	fmt.Printf("timings: %v\n", sum.Timings)
	for _, c := range contenders {
		sum.Contenders[c.Name] = describe(c)
		fmt.Printf("  %-18s %s\n", c.Name, sum.Contenders[c.Name])
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return false, err
	}
	byTrace := map[string][]Result{}
	byContender := map[string][]Result{}
	for _, tr := range traces {
		var rows []Result
		for _, c := range contenders {
			r := Run(tr, c)
			rows = append(rows, r)
			byContender[c.Name] = append(byContender[c.Name], r)
		}
		byTrace[tr.Name] = rows
		printTable(os.Stdout, fmt.Sprintf("%s: %s (%d min)", tr.Name, tr.Description, tr.Minutes), rows)
		if err := writeJSON(filepath.Join(outDir, tr.Name+".json"), map[string]any{"trace": tr.Name, "description": tr.Description, "results": rows}); err != nil {
			return false, err
		}
		if err := os.WriteFile(filepath.Join(outDir, tr.Name+".svg"), []byte(plot(tr, rows)), 0o644); err != nil {
			return false, err
		}
	}
	for _, c := range contenders {
		sum.Totals = append(sum.Totals, Totals(byContender[c.Name]))
	}
	printTable(os.Stdout, "total over every trace (reaction: the step trace)", sum.Totals)

	ref, def := find(sum.Totals, "reference"), find(sum.Totals, "default")
	refStep, defStep := find(byTrace["step"], "reference"), find(byTrace["step"], "default")
	sum.ParetoTotal = ParetoBetter(def, ref)
	sum.ParetoStep = ParetoBetter(defStep, refStep)
	sum.ReactsFast = defStep.ReactionSeconds >= 0 && defStep.ReactionSeconds <= refStep.ReactionSeconds
	fmt.Printf("\ndefault against the reference: overloaded minutes %d vs %d, instance-minutes %.0f vs %.0f (total); step %d vs %d, %.0f vs %.0f\n",
		def.OverloadedMinutes, ref.OverloadedMinutes, def.InstanceMinutes, ref.InstanceMinutes,
		defStep.OverloadedMinutes, refStep.OverloadedMinutes, defStep.InstanceMinutes, refStep.InstanceMinutes)
	fmt.Printf("reaction to the 10x step: default at 60 s %ss (90 %%: %ss), reference at 15 s %ss (90 %%: %ss)\n",
		seconds(defStep.ReactionSeconds), seconds(defStep.Reaction90Seconds), seconds(refStep.ReactionSeconds), seconds(refStep.Reaction90Seconds))
	fmt.Printf("Pareto-better in total: %v, on the step trace: %v; reacts no slower: %v\n", sum.ParetoTotal, sum.ParetoStep, sum.ReactsFast)

	fmt.Printf("\nREADME table:\n%s", markdownTable(traces, byTrace, sum.Totals))
	if err := writeJSON(filepath.Join(outDir, "summary.json"), sum); err != nil {
		return false, err
	}
	fmt.Printf("\nwrote %s/{summary,<trace>}.json and <trace>.svg in %.1f s\n", outDir, time.Since(began).Seconds())
	if explore {
		Explore(os.Stdout, shipped, traces, ref, refStep)
	}
	goals, err := runKeepAlive(outDir, plotCopy, shipped)
	if err != nil {
		return false, err
	}
	pareto := sum.ParetoTotal && sum.ParetoStep && sum.ReactsFast
	if !pareto {
		fmt.Println("\nFAIL: the shipped default is not Pareto-better than the reference (see above)")
	}
	if !goals.Met {
		fmt.Println("\nFAIL: learned keep-alive misses issue 18's goals (see above)")
	}
	return pareto && goals.Met, nil
}

func find(rs []Result, name string) Result {
	for _, r := range rs {
		if r.Contender == name {
			return r
		}
	}
	return Result{}
}

func timings() map[string]string {
	return map[string]string{
		"cycle": cycle.String(), "decisionLatency": decisionLatency.String(),
		"referenceLoop": referenceLoop.String(), "scrapeInterval": scrapeInterval.String(),
		"step": step.String(), "window": window.String(), "lookback": lookback.String(),
		"provisioningDelay": provisioningDelay.String(), "warmup": warmup.String(),
		"overloadUtilization": fmt.Sprint(overloadUtilization),
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return os.WriteFile(path, b, 0o644)
}
