package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"function/e2e/harness"
)

// Totals sums a contender's results over every trace. Reaction times are
// the step trace's.
func Totals(results []Result) Result {
	var t Result
	t.Trace = "total"
	for _, r := range results {
		t.Contender = r.Contender
		t.OverloadedMinutes += r.OverloadedMinutes
		t.InstanceMinutes += r.InstanceMinutes
		t.QueuedRequestMinutes += r.QueuedRequestMinutes
		t.ScaleEvents += r.ScaleEvents
		t.PeakInstances = max(t.PeakInstances, r.PeakInstances)
		t.Arrived += r.Arrived
		t.Served += r.Served
		t.QueuedAtStart += r.QueuedAtStart
		t.QueuedAtEnd += r.QueuedAtEnd
		if r.Trace == "step" {
			t.ReactionSeconds, t.Reaction90Seconds = r.ReactionSeconds, r.Reaction90Seconds
		}
	}
	return t
}

// ParetoBetter reports whether a overloads for fewer minutes AND uses
// fewer instance-minutes than b.
func ParetoBetter(a, b Result) bool {
	return a.OverloadedMinutes < b.OverloadedMinutes && a.InstanceMinutes < b.InstanceMinutes
}

// printTable writes one row per result.
func printTable(out io.Writer, title string, rows []Result) {
	fmt.Fprintf(out, "\n%s\n", title)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\toverloaded min\tinstance-min\tqueued req-min\tscale events\tpeak instances\treaction s (own target)\treaction s (90 %)\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%d\t%d\t%s\t%s\t\n", r.Contender, r.OverloadedMinutes, r.InstanceMinutes,
			r.QueuedRequestMinutes, r.ScaleEvents, r.PeakInstances, seconds(r.ReactionSeconds), seconds(r.Reaction90Seconds))
	}
	tw.Flush()
}

func seconds(s float64) string {
	if s < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f", s)
}

// markdownTable is the same figures as a README table: one row per trace
// and one for the total, one column per contender, each cell "overloaded
// minutes / instance-minutes / queued-request-minutes / scale events".
func markdownTable(traces []Trace, byTrace map[string][]Result, totals []Result) string {
	var b strings.Builder
	b.WriteString("| trace |")
	for _, r := range totals {
		fmt.Fprintf(&b, " %s |", r.Contender)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(totals)) + "\n")
	row := func(name string, rs []Result) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range rs {
			fmt.Fprintf(&b, " %d / %.0f / %.0f / %d |", r.OverloadedMinutes, r.InstanceMinutes, r.QueuedRequestMinutes, r.ScaleEvents)
		}
		b.WriteString("\n")
	}
	for _, tr := range traces {
		row(tr.Name, byTrace[tr.Name])
	}
	row("**total**", totals)
	return b.String()
}

// cpuModel is the processor's model name and count.
func cpuModel() string {
	model, n := harness.CPU()
	return fmt.Sprintf("%s, %d CPUs", model, n)
}

// plot draws one panel per contender: offered demand, serving capacity
// and paid-for instances, all in busy instances, with overloaded minutes
// shaded.
func plot(tr Trace, results []Result) string {
	const w, ph, pad = 960.0, 150.0, 48.0
	var b strings.Builder
	height := float64(len(results))*(ph+pad) + pad
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="14">%s: %s (busy instances against minutes)</text>`+"\n", pad, tr.Name, tr.Description)
	maxY := 1.0
	for _, r := range results {
		for _, m := range r.Minutes {
			maxY = max(maxY, m.Demand, m.Instances)
		}
	}
	maxY *= 1.1
	for i, r := range results {
		top := pad + float64(i)*(ph+pad)
		x := func(minute float64) float64 { return pad + minute/float64(max(tr.Minutes, 1))*(w-2*pad) }
		y := func(v float64) float64 { return top + ph - v/maxY*ph }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s: %d overloaded minutes, %.0f instance-minutes</text>`+"\n",
			pad, top-8, r.Contender, r.OverloadedMinutes, r.InstanceMinutes)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#ccc"/>`+"\n", pad, top, w-2*pad, ph)
		for _, m := range r.Minutes {
			if m.Overloaded {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.2f" height="%.0f" fill="#fdd"/>`+"\n", x(float64(m.Minute)), top, x(1)-x(0), ph)
			}
		}
		for _, tick := range []float64{0, maxY / 2, maxY / 1.1} {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#666">%.0f</text>`+"\n", pad-4, y(tick)+4, tick)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#666">%d min</text>`+"\n", w-pad, top+ph+14, tr.Minutes)
		line := func(color, dash string, v func(Minute) float64) {
			pts := make([]string, 0, len(r.Minutes))
			for _, m := range r.Minutes {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(m.Minute)+0.5), y(v(m))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="%s" points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
		}
		line("#d62728", "", func(m Minute) float64 { return m.Demand })
		line("#1f77b4", "", func(m Minute) float64 { return m.Capacity })
		line("#2ca02c", "4 3", func(m Minute) float64 { return m.Instances })
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#d62728">demand</text><text x="%.0f" y="%.0f" fill="#1f77b4">capacity (serving)</text><text x="%.0f" y="%.0f" fill="#2ca02c">instances (paid)</text>`+"\n",
			w-pad-330, top-8, w-pad-270, top-8, w-pad-150, top-8)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
