package closedloop

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/e2e/sim"
	"function/e2e/world"
	"function/shared/buckets"
)

// The closed loop for the metric sources besides worker threads (issue
// 12): LLM functions behind the API gateway, whose demand is visible only
// at the function level, and bring-your-own-cluster (BYOC) functions, seen
// only through the invocation service's latency sum and the control plane.
// As in the rest of this package, every write is tied to the decision that
// made it (attribute), and the assertions are on that decision's source,
// reason and inputs.

// sourceOf is the decision log's name of the metric source each simulated
// kind must be decided from.
var sourceOf = map[sim.Kind]string{sim.KindWorker: "worker", sim.KindGateway: "gateway", sim.KindBYOC: "control_plane"}

// kindFn builds a gateway or BYOC scenario version: concurrency 1 and 1 s
// per request, so one instance serves 1 request per second at 100 %.
func kindFn(kind sim.Kind, id, vid string, min, max, initial int, load sim.LoadSpec) sim.ScenarioFunction {
	return sim.ScenarioFunction{FunctionID: id, FunctionVersionID: vid, NcaID: "nca-e2e", Kind: kind, MinInstances: min,
		MaxInstances: max, InitialInstances: initial, ServiceTime: sim.Duration(time.Second), Concurrency: 1, Load: load}
}

// freshRE reads the fresh (partial-window) sample a target-mode decision
// scaled up on, when it raised the count ("fresh=93.7 raises to 8").
var freshRE = regexp.MustCompile(`fresh=([0-9.]+)`)

// upEvidence is the utilization a scale-up decision acted on: the settled
// sample, or the fresh one when that raised the count.
func upEvidence(d world.Decision) float64 {
	u := d.Utilization
	if m := freshRE.FindStringSubmatch(d.Detail); m != nil {
		if f, err := strconv.ParseFloat(m[1], 64); err == nil {
			u = max(u, f)
		}
	}
	return u
}

// demandRE reads the demand estimate a decision sized from, with its
// numbers.
var demandRE = regexp.MustCompile(`demand=[0-9.]+ busy instances \([^)]*\)`)

// idleEvidenceRE reads the idle evidence out of a scale-to-zero decision's
// detail ("last invoked 41s ago" or "no invocation in 44s").
var idleEvidenceRE = regexp.MustCompile(`(?:last invoked|no invocation in) ([0-9hms.]+)`)

// TestGatewayAndBYOCFollowStep drives a 5x load step up and back down
// through a gateway function (two versions: one running, one new at zero)
// and a BYOC function, while a gateway and a BYOC function that were
// briefly used go idle.
//
// The warm-up at 1 req/s is long enough for each to learn its service
// time (1 s) from unsaturated windows: 20 requests' worth, about six 4 s
// steps once the first scale-up settled. The step's demand is then read
// from the arrivals, not from Little's law's requests in flight, which
// count the queue and its waiting time and took both to the max of 20 for
// a load that needs 7; a doubling on saturation may set a count while
// the arrivals estimate still lags the step, and the peak stays bounded.
func TestGatewayAndBYOCFollowStep(t *testing.T) {
	warmup, high := 60*time.Second, 96*time.Second
	step := sim.LoadSpec{Kind: "phases", Phases: []sim.LoadSpec{
		{Kind: "constant", Rate: 1, For: d(warmup)},
		{Kind: "constant", Rate: 5, For: d(high)},
		{Kind: "constant", Rate: 1},
	}}
	const burstFor = 12 * time.Second
	burst := sim.LoadSpec{Kind: "phases", Phases: []sim.LoadSpec{{Kind: "constant", Rate: 0.5, For: d(burstFor)}, {Kind: "idle"}}}
	fns := []sim.ScenarioFunction{
		kindFn(sim.KindGateway, "gw-step", "gw-step-v1", 0, 20, 1, step),
		// A second version, deployed but at zero: the gateway sums its
		// versions' load profiles, so it adds none.
		kindFn(sim.KindGateway, "gw-step", "gw-step-v2", 0, 20, 0, sim.LoadSpec{Kind: "idle"}),
		kindFn(sim.KindBYOC, "byoc-step", "byoc-step-v1", 0, 20, 1, step),
		kindFn(sim.KindGateway, "gw-idle", "gw-idle-v1", 0, 4, 1, burst),
		kindFn(sim.KindBYOC, "byoc-idle", "byoc-idle-v1", 0, 4, 1, burst),
	}
	w := newWorld(t, "sources", map[string]string{"POLICY_MODE": "target", "MAX_SCALE_DOWN_RATE": "2", "TARGET_UTILIZATION": "75"}, fns...)
	stepAt, dropAt := w.LoadStart.Add(warmup), w.LoadStart.Add(warmup+high)
	target := 75.0
	// 5 req/s of 1 s each, 1 at once per instance: 5 busy instances, 7 at the target.
	need := int(math.Ceil(5 * 1.0 / 1 / (target / 100)))
	idleTimeout := setting(t, w, "SCALE_TO_ZERO_IDLE_TIMEOUT")
	steps := map[string]sim.Kind{"gw-step": sim.KindGateway, "byoc-step": sim.KindBYOC}

	// Up: both meet the step, as the simulator sees it (under the target,
	// nothing waiting; sized to the need, 5 req/s on 7 instances reads
	// 71 %) ...
	recovered := map[string]bool{}
	require.NoError(t, world.WaitFor(time.Until(dropAt), func() bool {
		for id := range steps {
			s, _ := w.Latest(id, id+"-v1")
			if time.Now().After(stepAt.Add(2*period)) && s.Load > 4 && s.Utilization < target && s.Queue < 1 {
				recovered[id] = true
			}
		}
		return len(recovered) == len(steps)
	}), "the step was not met: %s", describe(w))
	time.Sleep(time.Until(dropAt))
	// ... because of writes whose decisions read their kind's own source
	// and saw utilization over the target; over the whole high phase, the
	// count asked for peaks near the need.
	for id, kind := range steps {
		ups, peak, peakTarget := 0, 0, 0
		var sized []string
		for _, c := range attributeSettled(t, w, id+"-v1") {
			require.Equal(t, sourceOf[kind], c.Decision.Source, "%s decided from the wrong source: %+v", id, c.Decision)
			if !c.Write.Time.After(stepAt) || !c.Write.Time.Before(dropAt) {
				continue
			}
			peak, peakTarget = max(peak, c.Write.Requested), max(peakTarget, c.Write.Applied)
			if c.Decision.Desired > max(c.Decision.Current, c.Decision.LastRequested) {
				require.Greater(t, upEvidence(c.Decision), target, "%s scaled up on utilization under the target: %+v", id, c.Decision)
				ups++
				// The demand the decision read, whether it or a doubling on
				// saturation set the count: at the step's start the
				// gateway's arrivals estimate (from the growth of served
				// requests' latency) lags the step by a window or two, and
				// which of the two is larger then depends on where the
				// cycle fell. What the warm-up must have taught is where
				// the demand comes from.
				how := c.Decision.Reason
				if m := demandRE.FindString(c.Decision.Detail); m != "" {
					how += ", " + m
				}
				sized = append(sized, fmt.Sprintf("%d <- %s", c.Write.Requested, how))
			}
		}
		require.Positive(t, ups, "%s: no scale-up write after the step", id)
		t.Logf("RESULT %s (%s source) met the 5x step with %d scale-up writes, peak %d requested (NVCF target %d) for a need of %d at the %g %% target; sized: %s",
			id, sourceOf[kind], ups, peak, peakTarget, need, target, strings.Join(sized, "; "))
		// Sized from the arrivals and the service time learned in the
		// warm-up, never from the requests in flight.
		require.Contains(t, strings.Join(sized, "; "), "arrivals x learned service time", "%s: no scale-up read its demand from the learned service time", id)
		require.NotContains(t, strings.Join(sized, "; "), "little's law", "%s: sized from the requests in flight", id)
		// The bound: sized from the arrivals at the target (the need), and
		// held there while the queue of the climb drains, instead of
		// doubling on a saturation reading that counts that queue. Twice
		// the need leaves room for one doubling on a saturation reading
		// that outlasts the queue (a latency is summed when the request
		// leaves). Little's law took both to the max of 20.
		require.LessOrEqual(t, peak, 2*need, "%s: peak %d over twice the need %d: %s", id, peak, need, strings.Join(sized, "; "))
		if kind == sim.KindGateway {
			// The gateway's arrivals read from its scrape intervals
			// (policy.ArrivalsFromCurve): within 12 % of the truth on the
			// simulated queue with these timings, so at most one instance
			// over the need. From the two windows' rates it asked 8 or 9
			// here (the simulation: up to 4.2x, capped at 1.5x).
			require.LessOrEqual(t, peak, need+1, "%s: peak %d for a need of %d: %s", id, peak, need, strings.Join(sized, "; "))
		}
	}

	// Down: back at 1 req/s (2 instances at the 75 % target), each comes
	// down, through decisions on low utilization, and never to zero while
	// it is being invoked.
	require.NoError(t, world.WaitFor(150*time.Second, func() bool {
		for id := range steps {
			if n, _ := w.NVCF.Desired(id, id+"-v1"); n > 3 {
				return false
			}
		}
		return true
	}), "did not come back down: %s", describe(w))
	for id, kind := range steps {
		cs := attributeSettled(t, w, id+"-v1")
		downs := 0
		for _, c := range cs {
			dec := c.Decision
			if !c.Write.Time.After(dropAt) || dec.Desired >= max(dec.Current, dec.LastRequested) {
				continue
			}
			require.Positive(t, dec.Desired, "%s went to zero while invoked: %+v", id, dec)
			require.Equal(t, sourceOf[kind], dec.Source, "%s: %+v", id, dec)
			require.Less(t, dec.Utilization, target, "%s scaled down on utilization at or over the target: %+v", id, dec)
			downs++
		}
		require.Positive(t, downs, "%s never scaled down", id)
		assertOneWritePerCycle(t, cs)
	}

	// A gateway decision is per function and writes one target version:
	// the one running (v1); the new version at zero is never written.
	require.Empty(t, attributeSettled(t, w, "gw-step-v2"), "the gateway function's decisions wrote its second version")
	got, _ := w.NVCF.Desired("gw-step", "gw-step-v2")
	require.Zero(t, got)

	// Idle: used for 12 s and never again, each went to zero once, by a
	// scale-to-zero decision from its own source whose invocation evidence
	// covers the idle timeout, and its last request is that old by the
	// simulator's clock too.
	require.NoError(t, world.WaitFor(60*time.Second, func() bool {
		a, _ := w.NVCF.Desired("gw-idle", "gw-idle-v1")
		b, _ := w.NVCF.Desired("byoc-idle", "byoc-idle-v1")
		return a == 0 && b == 0
	}), "idle functions did not reach zero: %s", describe(w))
	lastRequest := w.LoadStart.Add(burstFor)
	for id, kind := range map[string]sim.Kind{"gw-idle": sim.KindGateway, "byoc-idle": sim.KindBYOC} {
		var toZero []cause
		for _, c := range attributeSettled(t, w, id+"-v1") {
			if c.Write.Requested == 0 {
				toZero = append(toZero, c)
			}
		}
		require.Len(t, toZero, 1, "%s: want exactly one write to zero", id)
		dec := toZero[0].Decision
		require.Equal(t, "scale_to_zero", dec.Reason, "%s: %+v", id, dec)
		require.Equal(t, sourceOf[kind], dec.Source, "%s: %+v", id, dec)
		m := idleEvidenceRE.FindStringSubmatch(dec.Detail)
		require.NotNil(t, m, "%s: the scale-to-zero decision gives no idle evidence: %q", id, dec.Detail)
		since, err := time.ParseDuration(m[1])
		require.NoError(t, err)
		require.GreaterOrEqual(t, since, idleTimeout, "%s: %+v", id, dec)
		wr := toZero[0].Write
		require.GreaterOrEqual(t, wr.Time.Sub(lastRequest), idleTimeout, "%s written to zero inside the idle timeout after its last request", id)
		t.Logf("RESULT %s (%s source) went to zero %.0fs after its last request: %s", id, sourceOf[kind], wr.Time.Sub(lastRequest).Seconds(), dec.Detail)
	}
}

// TestTSDBOutageHoldsEveryKind takes the TSDB away under a worker, a
// gateway and a BYOC function, each under control of its own source
// beforehand: every bucket holds while the metrics are missing, nothing is
// written from a cycle without them, and control resumes from the same
// sources once they are back.
func TestTSDBOutageHoldsEveryKind(t *testing.T) {
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	stack := filepath.Join(root, "e2e", "stack", "stack.sh")
	// 2.4 req/s on 4 instances is 60 %: in band, but a policy that read
	// missing data as zero load would take them down at once.
	steady := sim.LoadSpec{Kind: "constant", Rate: 2.4}
	fns := []sim.ScenarioFunction{
		fn("w-steady", 1, 10, 4, steady),
		kindFn(sim.KindGateway, "gw-steady", "gw-steady-v1", 1, 10, 4, steady),
		kindFn(sim.KindBYOC, "byoc-steady", "byoc-steady-v1", 1, 10, 4, steady),
	}
	kinds := map[string]sim.Kind{"w-steady": sim.KindWorker, "gw-steady": sim.KindGateway, "byoc-steady": sim.KindBYOC}
	w := newWorld(t, "sources_outage", map[string]string{"SCALE_DOWN_STABILIZATION": "0s"}, fns...)

	// underControl waits until every function has a valid decision from
	// its own source made after `since`.
	underControl := func(since time.Time) error {
		return world.WaitFor(20*period, func() bool {
			seen := map[string]bool{}
			for _, d := range w.AllDecisions() {
				if loggedAt(t, d).After(since) && d.Valid && d.Source == sourceOf[kinds[d.FunctionID]] {
					seen[d.FunctionID] = true
				}
			}
			return len(seen) == len(kinds)
		})
	}
	require.NoError(t, underControl(time.Time{}), "not every kind came under control of its source: %s", describe(w))
	time.Sleep(4 * period)
	settled := map[string]int{}
	for id := range kinds {
		settled[id], _ = w.NVCF.Desired(id, id+"-v1")
	}

	from := len(w.NVCF.Writes())
	run(t, stack, "stop", "vm")
	outage := time.Now()
	// Discovery cannot query either, so send each version's bucket
	// straight, as a redelivery would arrive: each must hold with a 503.
	var held []string
	for id := range kinds {
		status, eventID, err := w.SendBucket(context.Background(), buckets.OfVersion(id, id+"-v1", 4), 4)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, status, "bucket of %s (event %s) with the TSDB down", id, eventID)
		held = append(held, eventID)
	}
	time.Sleep(3 * period)
	for _, eventID := range held {
		require.True(t, logged(w, "bucket metrics unavailable; holding every version", eventID), "no scale process logged holding for bucket event %s", eventID)
	}
	for _, wr := range w.NVCF.Writes()[from:] {
		require.GreaterOrEqual(t, wr.Applied, settled[wr.FunctionID], "scaled down during the TSDB outage: %+v", wr)
		require.True(t, wr.Time.Before(outage.Add(period)), "written by a cycle that had no metrics: %+v", wr)
	}
	run(t, stack, "start", "vm")
	back := time.Now()

	// Control resumes from each kind's own source, nothing lost.
	require.NoError(t, underControl(back), "control did not resume for every kind: %s", describe(w))
	for id := range kinds {
		got, _ := w.NVCF.Desired(id, id+"-v1")
		require.GreaterOrEqual(t, got, settled[id], "%s lost instances across the outage", id)
		assertOneWritePerCycle(t, attributeSettled(t, w, id+"-v1"))
	}
	t.Logf("RESULT tsdb outage of %.0fs under a worker, a gateway and a BYOC function: %d bucket events held with 503, %d NVCF writes during it (none down)",
		back.Sub(outage).Seconds(), len(held), len(w.NVCF.Writes())-from)
}
