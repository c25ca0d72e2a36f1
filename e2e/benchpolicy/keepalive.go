package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"function/shared/policy"
)

// The keep-alive benchmark (issue 18) replays invocation traces: a few
// short requests at a time with long idle gaps between them, where what a
// policy gets wrong is not the size of a running version but when it
// keeps one up with nothing to do and when a request finds none.

// invocationCost is the busy seconds of one invocation on one instance:
// a short GPU inference call, so a burst's utilization stays below
// saturation and the traces measure keep-alive, not sizing.
const invocationCost = 20.0

// InvocationTrace is a list of invocation times over a span.
type InvocationTrace struct {
	Name        string
	Description string
	Minutes     int
	// Periodic marks the traces whose cold starts pre-warming should turn
	// warm (the goal).
	Periodic bool
	// At are the invocations' seconds, sorted.
	At []int
}

// trace is the load the world replays: one invocation arriving in its
// second, as demand in busy instances.
func (it InvocationTrace) trace() Trace {
	count := map[int]int{}
	for _, s := range it.At {
		count[s]++
	}
	return Trace{Name: it.Name, Description: it.Description, Minutes: it.Minutes, CostSeconds: invocationCost, Threads: 1, StepAt: -1,
		demand: func(m float64) float64 {
			return float64(count[int(math.Round(m*60))]) * invocationCost
		}}
}

// InvocationTraces are the shapes of issue 18, each from a fixed seed so
// every run replays the same invocations. Every gap of the periodic
// shapes is longer than the fixed 30-minute timeout, so each of their
// bursts is a cold start under it.
func InvocationTraces() []InvocationTrace {
	const day = 24 * 60
	rng := func(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 18)) }
	var out []InvocationTrace
	add := func(name, desc string, minutes int, periodic bool, at []float64) {
		secs := make([]int, 0, len(at))
		for _, m := range at {
			if m >= 0 && m < float64(minutes) {
				secs = append(secs, int(m*60))
			}
		}
		sort.Ints(secs)
		out = append(out, InvocationTrace{Name: name, Description: desc, Minutes: minutes, Periodic: periodic, At: secs})
	}

	// An hourly job: three calls a minute apart, on the hour, for 3 days.
	var at []float64
	for m := 0.0; m < 3*day; m += 60 {
		at = append(at, m, m+1, m+2)
	}
	add("hourly", "an hourly job: 3 calls a minute apart on the hour, 3 days", 3*day, true, at)

	// Every 45 minutes, each run up to 5 minutes late.
	r := rng(1)
	at = nil
	for m := 0.0; m < 3*day; m += 45 {
		at = append(at, m+5*r.Float64())
	}
	add("jittered", "one call every 45 minutes, each up to 5 minutes late, 3 days", 3*day, true, at)

	// Bursts of 3 to 8 calls 0.5 to 3 minutes apart, 90 to 210 minutes
	// between bursts.
	r = rng(2)
	at = nil
	for m := 0.0; m < 7*day; {
		n := 3 + r.IntN(6)
		for range n {
			at = append(at, m)
			m += 0.5 + 2.5*r.Float64()
		}
		m += 90 + 120*r.Float64()
	}
	add("bursty", "bursts of 3-8 calls 0.5-3 minutes apart, 90-210 minutes between bursts, 7 days", 7*day, false, at)

	// Office hours: Poisson, one call every 4 minutes on average from 8:00
	// to 20:00, one every 3 hours at night.
	r = rng(3)
	at = nil
	for m := 0.0; m < 3*day; {
		mean := 180.0
		if h := math.Mod(m, day) / 60; h >= 8 && h < 20 {
			mean = 4
		}
		m += r.ExpFloat64() * mean
		at = append(at, m)
	}
	add("diurnal", "Poisson, a call every 4 minutes on average 8:00-20:00, every 3 hours at night, 3 days", 3*day, false, at)

	// Poisson at a low rate: no pattern to learn.
	r = rng(4)
	at = nil
	for m := r.ExpFloat64() * 40; m < 4*day; m += r.ExpFloat64() * 40 {
		at = append(at, m)
	}
	add("poisson", "Poisson, a call every 40 minutes on average, 4 days", 4*day, false, at)

	// A job every 20 minutes that becomes a job every 70 minutes.
	at = nil
	for m := 0.0; m < 1.5*day; m += 20 {
		at = append(at, m)
	}
	for m := 1.5 * day; m < 3*day; m += 70 {
		at = append(at, m)
	}
	add("changing", "a call every 20 minutes for 36 hours, then every 70 minutes for 36 hours", 3*day, false, at)
	return out
}

// KeepAliveResult is one contender on one invocation trace.
type KeepAliveResult struct {
	Trace       string `json:"trace"`
	Contender   string `json:"contender"`
	Invocations int    `json:"invocations"`
	// ColdStarts counts invocations that arrived with no instance serving
	// (none kept up, or one still provisioning).
	ColdStarts int `json:"coldStarts"`
	// IdleInstanceMinutes is instance time paid for with no work:
	// provisioning instances, and serving ones not busy.
	IdleInstanceMinutes float64 `json:"idleInstanceMinutes"`
	InstanceMinutes     float64 `json:"instanceMinutes"`
	// Prewarms counts pre-warm writes; PrewarmedWarm the invocations that
	// found an instance a pre-warm brought up (the first of each burst);
	// PrewarmsWasted the pre-warmed instances released unused.
	Prewarms       int `json:"prewarms"`
	PrewarmedWarm  int `json:"prewarmedWarm"`
	PrewarmsWasted int `json:"prewarmsWasted"`
	ScaleEvents    int `json:"scaleEvents"`
}

// KeepAliveContenders are the reference (its 30-minute timeout, 15 s loop,
// no activation events), the shipped default with the fixed 30-minute
// timeout, and the same with learned keep-alive.
func KeepAliveContenders(def policy.Policy) []Contender {
	fixed, learned := def, def
	fixed.KeepAlive, learned.KeepAlive = policy.KeepAliveFixed, policy.KeepAliveLearned
	return []Contender{
		{Name: "reference", Policy: policy.Defaults(), Loop: referenceLoop, Phase: referencePhase, Reference: true, TiledEvidence: true},
		{Name: "fixed-30m", Policy: fixed, Loop: cycle, Phase: decisionLatency, Demand: true, TiledEvidence: true, ZeroKnown: true},
		{Name: "learned", Policy: learned, Loop: cycle, Phase: decisionLatency, Demand: true, TiledEvidence: true, ZeroKnown: true},
	}
}

// SourceContenders are the fixed 30-minute timeout and learned
// keep-alive of KeepAliveContenders read through the control plane and
// the LLM gateway instead of worker series, named "<contender>/<source>".
func SourceContenders(def policy.Policy) []Contender {
	var out []Contender
	for _, src := range []string{sourceControlPlane, sourceGateway} {
		for _, c := range KeepAliveContenders(def)[1:] {
			c.Name, c.Source = c.Name+"/"+src, src
			out = append(out, c)
		}
	}
	return out
}

// RunKeepAlive replays an invocation trace through the contender: the
// same world and controller as Run, from zero instances (the first
// invocation is a cold start for every contender, and the one that
// teaches learned keep-alive the version's cold start).
func RunKeepAlive(it InvocationTrace, c Contender) KeepAliveResult {
	tr := it.trace()
	w := newWorld(tr, 0)
	w.source = c.Source
	ctl := &controller{c: c, lastInvoked: -1}
	res := KeepAliveResult{Trace: it.Name, Contender: c.Name, Invocations: len(it.At)}
	next := 0          // index into it.At
	prewarmed := false // the current up period began with a pre-warm
	for s := range tr.Minutes * 60 {
		w.promote(s)
		w.record(s)
		if c.due(s) {
			before := w.allocated()
			ctl.applied = ""
			ctl.decide(w, s)
			if ctl.applied == policy.ReasonPrewarm && before == 0 {
				res.Prewarms++
				prewarmed = true
			}
		}
		arriving := 0
		for next < len(it.At) && it.At[next] == s {
			arriving++
			next++
		}
		if arriving > 0 {
			if w.ready == 0 {
				res.ColdStarts += arriving
			} else if prewarmed {
				res.PrewarmedWarm++
			}
			prewarmed = false
			if !c.Reference && w.allocated() == 0 {
				// function.activate: the first request brings it up.
				w.resize(s, max(1, c.Policy.MinInstances))
			}
		}
		if prewarmed && w.allocated() == 0 {
			res.PrewarmsWasted++
			prewarmed = false
		}
		_, served := w.serve(tr.demandAt(s))
		alloc := float64(w.allocated())
		res.InstanceMinutes += alloc / 60
		res.IdleInstanceMinutes += (alloc - served*tr.CostSeconds/float64(tr.Threads)) / 60
	}
	res.ScaleEvents = w.writes
	return res
}

// KeepAliveTotals sums a contender's results.
func KeepAliveTotals(rs []KeepAliveResult) KeepAliveResult {
	t := KeepAliveResult{Trace: "total"}
	for _, r := range rs {
		t.Contender = r.Contender
		t.Invocations += r.Invocations
		t.ColdStarts += r.ColdStarts
		t.IdleInstanceMinutes += r.IdleInstanceMinutes
		t.InstanceMinutes += r.InstanceMinutes
		t.Prewarms += r.Prewarms
		t.PrewarmedWarm += r.PrewarmedWarm
		t.PrewarmsWasted += r.PrewarmsWasted
		t.ScaleEvents += r.ScaleEvents
	}
	return t
}

// KeepAliveGoals are issue 18's acceptance figures.
type KeepAliveGoals struct {
	// IdleSaving is 1 - learned/fixed idle instance-minutes in total
	// (goal: at least 0.3).
	IdleSaving float64 `json:"idleSaving"`
	// ColdStarts learned and fixed in total (goal: learned no more).
	LearnedColdStarts int `json:"learnedColdStarts"`
	FixedColdStarts   int `json:"fixedColdStarts"`
	// PeriodicTurnedWarm is, on the periodic traces, the share of the
	// fixed timeout's cold starts that learned keep-alive turned warm
	// (goal: at least 0.5).
	PeriodicTurnedWarm float64 `json:"periodicTurnedWarm"`
	Met                bool    `json:"met"`
}

func keepAliveGoals(traces []InvocationTrace, byTrace map[string][]KeepAliveResult, totals []KeepAliveResult) KeepAliveGoals {
	fixed, learned := findKA(totals, "fixed-30m"), findKA(totals, "learned")
	g := KeepAliveGoals{LearnedColdStarts: learned.ColdStarts, FixedColdStarts: fixed.ColdStarts}
	if fixed.IdleInstanceMinutes > 0 {
		g.IdleSaving = 1 - learned.IdleInstanceMinutes/fixed.IdleInstanceMinutes
	}
	var fixedCold, learnedCold int
	for _, it := range traces {
		if it.Periodic {
			fixedCold += findKA(byTrace[it.Name], "fixed-30m").ColdStarts
			learnedCold += findKA(byTrace[it.Name], "learned").ColdStarts
		}
	}
	if fixedCold > 0 {
		g.PeriodicTurnedWarm = 1 - float64(learnedCold)/float64(fixedCold)
	}
	g.Met = g.IdleSaving >= 0.3 && g.LearnedColdStarts <= g.FixedColdStarts && g.PeriodicTurnedWarm >= 0.5
	return g
}

// keepAliveGoalsOf is keepAliveGoals for the contenders read through
// one source (named "<contender>/<source>").
func keepAliveGoalsOf(traces []InvocationTrace, byTrace map[string][]KeepAliveResult, totals []KeepAliveResult, src string) KeepAliveGoals {
	only := func(rs []KeepAliveResult) []KeepAliveResult {
		var out []KeepAliveResult
		for _, r := range rs {
			if name, ok := strings.CutSuffix(r.Contender, "/"+src); ok {
				r.Contender = name
				out = append(out, r)
			}
		}
		return out
	}
	of := map[string][]KeepAliveResult{}
	for name, rs := range byTrace {
		of[name] = only(rs)
	}
	return keepAliveGoals(traces, of, only(totals))
}

func findKA(rs []KeepAliveResult, name string) KeepAliveResult {
	for _, r := range rs {
		if r.Contender == name {
			return r
		}
	}
	return KeepAliveResult{}
}

func printKeepAliveTable(out io.Writer, title string, rows []KeepAliveResult) {
	fmt.Fprintf(out, "\n%s\n", title)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tinvocations\tcold starts\tidle instance-min\tinstance-min\tpre-warms\twarm by pre-warm\twasted\tscale events\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t%d\t\n", r.Contender, r.Invocations, r.ColdStarts, r.IdleInstanceMinutes,
			r.InstanceMinutes, r.Prewarms, r.PrewarmedWarm, r.PrewarmsWasted, r.ScaleEvents)
	}
	tw.Flush()
}

// keepAliveMarkdown is the README table: per trace and in total, each
// cell "cold starts / idle instance-minutes".
func keepAliveMarkdown(traces []InvocationTrace, byTrace map[string][]KeepAliveResult, totals []KeepAliveResult) string {
	var b strings.Builder
	b.WriteString("| trace | invocations |")
	for _, r := range totals {
		fmt.Fprintf(&b, " %s |", r.Contender)
	}
	b.WriteString("\n| --- | --- |" + strings.Repeat(" --- |", len(totals)) + "\n")
	row := func(name string, rs []KeepAliveResult) {
		fmt.Fprintf(&b, "| %s | %d |", name, rs[0].Invocations)
		for _, r := range rs {
			fmt.Fprintf(&b, " %d / %.0f |", r.ColdStarts, r.IdleInstanceMinutes)
		}
		b.WriteString("\n")
	}
	for _, it := range traces {
		row(it.Name, byTrace[it.Name])
	}
	row("**total**", totals)
	return b.String()
}

// keepAlivePlot draws two grouped bar charts, cold starts and idle
// instance-minutes, one group per trace and the total, one bar per
// contender.
func keepAlivePlot(traces []InvocationTrace, byTrace map[string][]KeepAliveResult, totals []KeepAliveResult) string {
	const w, ph, pad, top = 960.0, 200.0, 56.0, 40.0
	colors := []string{"#7f7f7f", "#d62728", "#1f77b4", "#2ca02c"}
	groups := make([]string, 0, len(traces)+1)
	for _, it := range traces {
		groups = append(groups, it.Name)
	}
	groups = append(groups, "total")
	rows := func(g string) []KeepAliveResult {
		if g == "total" {
			return totals
		}
		return byTrace[g]
	}
	var b strings.Builder
	height := top + 2*(ph+pad) + 20
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">make bench-policy: keep-alive on invocation traces (total at the right, on its own scale)</text>`+"\n", pad)
	for i, r := range totals {
		fmt.Fprintf(&b, `<rect x="%.0f" y="26" width="10" height="10" fill="%s"/><text x="%.0f" y="35">%s</text>`+"\n",
			w-pad-330+float64(i)*110, colors[i%len(colors)], w-pad-316+float64(i)*110, r.Contender)
	}
	panel := func(y0 float64, title string, v func(KeepAliveResult) float64, format string) {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", pad, y0-6, title)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#ccc"/>`+"\n", pad, y0, w-2*pad, ph)
		gw := (w - 2*pad) / float64(len(groups))
		for gi, g := range groups {
			rs := rows(g)
			// Each trace on the scale of the largest trace; the total on
			// its own, or it would flatten the rest.
			maxV := 1.0
			for _, gg := range groups {
				if (gg == "total") == (g == "total") {
					for _, r := range rows(gg) {
						maxV = math.Max(maxV, v(r))
					}
				}
			}
			bw := gw * 0.8 / float64(len(rs))
			for ri, r := range rs {
				hgt := v(r) / maxV * (ph - 16)
				x := pad + float64(gi)*gw + gw*0.1 + float64(ri)*bw
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y0+ph-hgt, bw-2, hgt, colors[ri%len(colors)])
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">`+format+`</text>`+"\n", x+bw/2-1, y0+ph-hgt-3, v(r))
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", pad+float64(gi)*gw+gw/2, y0+ph+14, g)
		}
	}
	panel(top+pad-16, "cold starts (invocations that found no serving instance)", func(r KeepAliveResult) float64 { return float64(r.ColdStarts) }, "%.0f")
	panel(top+ph+2*pad-16, "idle instance-minutes (paid for, no work)", func(r KeepAliveResult) float64 { return r.IdleInstanceMinutes }, "%.0f")
	b.WriteString("</svg>\n")
	return b.String()
}

// keepAliveDescribe names what a contender does when idle.
func keepAliveDescribe(c Contender) string {
	p := c.Policy
	s := fmt.Sprintf("mode=%s keep-alive=%s idle-timeout=%s, every %s", p.Mode, p.KeepAlive, p.IdleTimeout, c.Loop)
	if p.KeepAlive == policy.KeepAliveLearned {
		s += fmt.Sprintf(", p%g keep-alive, p%g pre-warm", p.KeepAlivePercentile, p.PrewarmPercentile)
	}
	if c.Reference {
		s += ", no activation events"
	}
	return s + fmt.Sprintf(", cold start %s", provisioningDelay)
}

// replayKeepAlive runs every trace through every contender: the results
// by trace (in contender order) and each contender's totals.
func replayKeepAlive(traces []InvocationTrace, contenders []Contender) (byTrace map[string][]KeepAliveResult, totals []KeepAliveResult) {
	byTrace = map[string][]KeepAliveResult{}
	byContender := map[string][]KeepAliveResult{}
	for _, it := range traces {
		for _, c := range contenders {
			r := RunKeepAlive(it, c)
			byTrace[it.Name] = append(byTrace[it.Name], r)
			byContender[c.Name] = append(byContender[c.Name], r)
		}
	}
	for _, c := range contenders {
		totals = append(totals, KeepAliveTotals(byContender[c.Name]))
	}
	return byTrace, totals
}

// runKeepAlive replays every invocation trace through the keep-alive
// contenders, prints the tables and writes keepalive.json and
// keepalive.svg to outDir.
func runKeepAlive(outDir, plotCopy string, shipped policy.Policy) (KeepAliveGoals, error) {
	traces := InvocationTraces()
	contenders := KeepAliveContenders(shipped)
	fmt.Printf("\nkeep-alive benchmark (issue 18): invocation traces, %g busy seconds per call\n", invocationCost)
	for _, c := range contenders {
		fmt.Printf("  %-10s %s\n", c.Name, keepAliveDescribe(c))
	}
	byTrace, totals := replayKeepAlive(traces, contenders)
	for _, it := range traces {
		printKeepAliveTable(os.Stdout, fmt.Sprintf("%s: %s", it.Name, it.Description), byTrace[it.Name])
	}
	printKeepAliveTable(os.Stdout, "keep-alive total over every invocation trace", totals)
	g := keepAliveGoals(traces, byTrace, totals)
	fmt.Printf("\nlearned against fixed 30m: %.0f %% fewer idle instance-minutes (goal >= 30 %%), cold starts %d vs %d (goal: no more), periodic traces' cold starts turned warm %.0f %% (goal >= 50 %%): goals met: %v\n",
		100*g.IdleSaving, g.LearnedColdStarts, g.FixedColdStarts, 100*g.PeriodicTurnedWarm, g.Met)
	fmt.Printf("\nREADME keep-alive table (cold starts / idle instance-minutes):\n%s", keepAliveMarkdown(traces, byTrace, totals))

	// The same through the other two metric sources.
	bySource, sourceTotals := replayKeepAlive(traces, SourceContenders(shipped))
	printKeepAliveTable(os.Stdout, "keep-alive total through the control plane and the LLM gateway", sourceTotals)
	sourceGoals := map[string]KeepAliveGoals{}
	for _, src := range []string{sourceControlPlane, sourceGateway} {
		sg := keepAliveGoalsOf(traces, bySource, sourceTotals, src)
		sourceGoals[src] = sg
		fmt.Printf("%s: learned against fixed 30m: %.0f %% fewer idle instance-minutes, cold starts %d vs %d, periodic traces' cold starts turned warm %.0f %%: goals met: %v\n",
			src, 100*sg.IdleSaving, sg.LearnedColdStarts, sg.FixedColdStarts, 100*sg.PeriodicTurnedWarm, sg.Met)
	}
	fmt.Printf("\nREADME keep-alive table by source (cold starts / idle instance-minutes):\n%s", keepAliveMarkdown(traces, bySource, sourceTotals))

	descs := map[string]string{}
	for _, it := range traces {
		descs[it.Name] = it.Description
	}
	if err := writeJSON(filepath.Join(outDir, "keepalive.json"), map[string]any{"traces": descs, "results": byTrace, "totals": totals, "goals": g,
		"sourceResults": bySource, "sourceTotals": sourceTotals, "sourceGoals": sourceGoals}); err != nil {
		return g, err
	}
	svg := []byte(keepAlivePlot(traces, byTrace, totals))
	for _, path := range []string{filepath.Join(outDir, "keepalive.svg"), plotCopy} {
		if path == "" {
			continue
		}
		if err := os.WriteFile(path, svg, 0o644); err != nil {
			return g, err
		}
		fmt.Printf("wrote %s\n", path)
	}
	fmt.Printf("wrote %s\n", filepath.Join(outDir, "keepalive.json"))
	return g, nil
}
