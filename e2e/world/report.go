package world

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"function/e2e/sim"
)

// Decision is one "decision" log line of a scale process: what the policy
// was given (current count, newest sample, recommendation history through
// Recommendation) and what came of it, so tests can attribute every NVCF
// write to its cause.
type Decision struct {
	Time              string  `json:"time"`
	Cycle             int64   `json:"cycle"`
	Bucket            int     `json:"bucket"`
	FunctionID        string  `json:"function_id"`
	FunctionVersionID string  `json:"function_version_id"`
	Source            string  `json:"source"` // the metric source the inputs came from
	Current           int     `json:"current"`
	Desired           int     `json:"desired"`
	LastRequested     int     `json:"last_requested"`
	Utilization       float64 `json:"utilization"`
	// Recommendation is the raw recommendation before stabilization and
	// rate bounds: what the stabilization window remembers.
	Recommendation int `json:"recommendation"`
	// SampleAt is the newest utilization sample the policy used (zero if
	// none); DecidedAt is the time the policy was given.
	SampleAt  time.Time `json:"sample_at"`
	DecidedAt time.Time `json:"decided_at"`
	Valid     bool      `json:"valid"`
	Reason    string    `json:"reason"`
	Action    string    `json:"action"`
	Detail    string    `json:"detail"`
	Error     string    `json:"error"`
	// ClampedTo is the count the NVCF API targets instead of Desired when
	// it clamped the request to the version's min or max instances; -1 or
	// absent when it did not.
	ClampedTo *int `json:"clamped_to"`
	// The keep-alive inputs: the mode, the idle histogram's decayed gap
	// count and whether it is representative, its keep-alive and pre-warm
	// percentiles and the learned cold start in seconds (-1: none), and
	// the last invocation the idle rules counted from.
	KeepAlive          string    `json:"keep_alive"`
	IdleGaps           float64   `json:"idle_gaps"`
	IdleRepresentative bool      `json:"idle_representative"`
	IdleKeepAliveS     float64   `json:"idle_keep_alive_s"`
	IdlePrewarmS       float64   `json:"idle_prewarm_s"`
	ColdStartS         float64   `json:"cold_start_s"`
	LastInvokedAt      time.Time `json:"last_invoked_at"`
	// The learned cost in seconds per request and the requests behind it,
	// and the estimated backlog in requests (-1: none): what target mode
	// sized a worker version's demand from.
	CostS           float64 `json:"cost_s"`
	CostRequests    float64 `json:"cost_requests"`
	BacklogRequests float64 `json:"backlog_requests"`
}

// Summary is the decision in a few words for a table: its reason and
// action, and the count NVCF holds the version at when it clamped the
// request (otherwise a clamped version reads "unchanged" every cycle
// while running fewer instances than decided).
func (d Decision) Summary() string {
	if d.ClampedTo != nil && *d.ClampedTo >= 0 {
		return fmt.Sprintf("%s (%s; wants %d, clamped by NVCF to %d)", d.Reason, d.Action, d.Desired, *d.ClampedTo)
	}
	return fmt.Sprintf("%s (%s)", d.Reason, d.Action)
}

// Decisions reads the decision lines from a scale process's JSON log.
func Decisions(path string) []Decision {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Decision
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"msg":"decision"`) {
			continue
		}
		var d Decision
		if json.Unmarshal(line, &d) == nil {
			out = append(out, d)
		}
	}
	return out
}

// AllDecisions reads every scale process's decisions, ordered by the time
// each was decided.
func (w *World) AllDecisions() []Decision {
	var out []Decision
	for _, p := range w.Scale {
		out = append(out, Decisions(p.LogPath)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].DecidedAt.Before(out[j].DecidedAt) })
	return out
}

// Plot draws, per function, demand and capacity in one unit over time as
// an SVG with one panel per function, titled with the function's kind
// (worker, gateway or byoc) and its peak load: demand is the offered load
// in instances kept fully busy (sim.Snapshot.Demand), next to the instances
// running (active), provisioning (active + pending) and NVCF's desired
// count. Capacity followed demand where the active line is at or above
// the demand line; a policy targeting 60 % keeps it about 1/0.6 above.
func Plot(names []string, byFn map[string][]sim.Snapshot, start time.Time) string {
	const w, ph, pad = 900.0, 180.0, 50.0
	var b strings.Builder
	height := float64(len(names))*(ph+pad) + pad
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, name := range names {
		ss := byFn[name]
		if len(ss) == 0 {
			continue
		}
		top := pad + float64(i)*(ph+pad)
		maxT := ss[len(ss)-1].At.Sub(start).Seconds()
		maxY, peak := 1.0, 0.0
		for _, s := range ss {
			maxY = max(maxY, s.Demand, float64(s.Active+s.Pending), float64(s.Desired))
			peak = max(peak, s.Load)
		}
		maxY *= 1.1
		x := func(t time.Time) float64 { return pad + (t.Sub(start).Seconds()/max(maxT, 1))*(w-2*pad) }
		y := func(v float64) float64 { return top + ph - v/maxY*ph }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s (%s, peak %.1f req/s)</text>`+"\n", pad, top-8, name, ss[0].Kind, peak)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#ccc"/>`+"\n", pad, top, w-2*pad, ph)
		for _, tick := range []float64{0, maxY / 2, maxY / 1.1} {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#666">%.1f</text>`+"\n", pad-4, y(tick)+4, tick)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#666">%.0fs</text>`+"\n", w-pad, top+ph+14, maxT)
		line := func(color string, dash string, v func(sim.Snapshot) float64) {
			var pts []string
			for _, s := range ss {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.At), y(v(s))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
		}
		line("#d62728", "", func(s sim.Snapshot) float64 { return s.Demand })
		line("#1f77b4", "", func(s sim.Snapshot) float64 { return float64(s.Active) })
		line("#1f77b4", "2 2", func(s sim.Snapshot) float64 { return float64(s.Active + s.Pending) })
		line("#2ca02c", "4 3", func(s sim.Snapshot) float64 { return float64(max(s.Desired, 0)) })
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#d62728">demand (busy instances)</text><text x="%.0f" y="%.0f" fill="#1f77b4">active (+pending, dotted)</text><text x="%.0f" y="%.0f" fill="#2ca02c">desired</text>`+"\n",
			w-pad-420, top-8, w-pad-250, top-8, w-pad-60, top-8)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
