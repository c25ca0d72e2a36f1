// Package closedloop runs the autoscaler against the simulator in a closed
// loop on the real local stack (Cassandra, VictoriaMetrics scraping the
// simulator) and asserts on what a user would see: instances following
// load, slow and bounded scale-down, event-driven scale from zero, and no
// damage from TSDB, Cassandra, discovery and NVCF failures.
//
// Run with `make test`; a bare `go test` skips unless the servers are up.
package closedloop

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
	"function/e2e/sim"
	"function/e2e/world"
	"function/shared/buckets"
	"function/shared/policy"
	"function/shared/testenv"
)

const period = 4 * time.Second

func newWorld(t *testing.T, name string, env map[string]string, fns ...sim.ScenarioFunction) *world.World {
	t.Helper()
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	logDir := filepath.Join(root, ".cache", "e2e", name)
	require.NoError(t, os.RemoveAll(logDir))
	o := world.Options{
		Root: root, LogDir: logDir, Cassandra: hosts[0], TSDBURL: vm,
		Keyspace: testenv.Keyspace(t, "e2e_"+name),
		SimAddr:  simAddr(), Period: period, Env: env,
		Lifecycle: sim.Options{ProvisioningDelay: 2 * time.Second, TerminationDelay: time.Second},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, err := world.Start(ctx, o, fns...)
	require.NoError(t, err)
	t.Cleanup(func() {
		writeReport(t, w, name)
		w.Stop()
		if t.Failed() {
			t.Logf("process logs are in %s", logDir)
		}
	})
	return w
}

func simAddr() string {
	if a := os.Getenv("SIM_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:9401"
}

// fn builds a scenario function: 1 thread per instance, 1 s per request, so
// one instance serves 1 request per second at 100 %.
func fn(id string, min, max, initial int, load sim.LoadSpec) sim.ScenarioFunction {
	return sim.ScenarioFunction{FunctionID: id, FunctionVersionID: id + "-v1", NcaID: "nca-e2e", MinInstances: min, MaxInstances: max,
		InitialInstances: initial, ServiceTime: sim.Duration(time.Second), Threads: 1, Load: load}
}

func d(x time.Duration) sim.Duration { return sim.Duration(x) }

// writesOf returns the NVCF writes the API accepted for one version, in
// order (injected faults and refusals are left out).
func writesOf(w *world.World, vid string) []nvcfsim.Write {
	var out []nvcfsim.Write
	for _, wr := range w.NVCF.Writes() {
		if wr.VersionID == vid && accepted(wr) {
			out = append(out, wr)
		}
	}
	return out
}

// TestClosedLoop drives a 10x load step through both policy modes side by
// side, then removes the load, and checks recovery, stabilization and scale
// to zero, plus event-driven activation and NVCF error bursts.
func TestClosedLoop(t *testing.T) {
	// The warm-up is long enough for target mode to learn fn-target's cost
	// per request (policy.CostMinRequests of evidence from unsaturated
	// windows) before the step: at 0.5 requests/s an accelerated 4 s cycle
	// sees 2 new requests where a production minute sees 30.
	warmup, high := 100*time.Second, 96*time.Second
	load := sim.LoadSpec{Kind: "phases", Phases: []sim.LoadSpec{
		{Kind: "constant", Rate: 0.5, For: d(warmup)},
		{Kind: "constant", Rate: 5, For: d(high)},
		{Kind: "idle"},
	}}
	overrides := filepath.Join(t.TempDir(), "overrides.json")
	// Each function names its mode: the default mode has changed before,
	// and a silent change made both functions run the same policy.
	require.NoError(t, os.WriteFile(overrides, []byte(`{"functions": {"fn-nvcf": {"mode": "nvcf"}, "fn-target": {"mode": "target"}}}`), 0o644))

	fns := []sim.ScenarioFunction{fn("fn-nvcf", 0, 20, 1, load), fn("fn-target", 0, 20, 1, load)}
	const idle = 12
	for i := 0; i < idle; i++ {
		fns = append(fns, fn(fmt.Sprintf("fn-idle-%02d", i), 0, 4, 0, sim.LoadSpec{Kind: "idle"}))
	}
	w := newWorld(t, "loop", map[string]string{
		"POLICY_OVERRIDES_FILE": overrides,
		// Both modes aim at 70 %: nvcf mode's up threshold, where it stops
		// adding instances, and the adequacy bar below. The instance-minutes
		// compared at the end then compare the policies, not their goals (at
		// 60 % target mode runs 9 instances for this load where 8 reach the
		// same bar).
		"TARGET_UTILIZATION":  "70",
		"MAX_SCALE_UP_RATE":   "10",
		"MAX_SCALE_DOWN_RATE": "2",
		"DISCOVERY_LOOKBACK":  "20s",
	}, fns...)
	// The load phases run on the data plane's clock, which started before
	// the processes were built and started.
	stepAt, dropAt := w.LoadStart.Add(warmup), w.LoadStart.Add(warmup+high)
	window := setting(t, w, "SCALE_DOWN_STABILIZATION")
	idleTimeout := setting(t, w, "SCALE_TO_ZERO_IDLE_TIMEOUT")

	// Scale from zero, event driven: each idle function gets one activation,
	// and the activation itself writes max(min, 1) before it answers.
	ctx := context.Background()
	var latencies []time.Duration
	for i := 0; i < idle; i++ {
		id := fmt.Sprintf("fn-idle-%02d", i)
		t0 := time.Now()
		status, reply, err := w.Activate(ctx, id, id+"-v1", "nca-e2e")
		require.NoError(t, err)
		require.Equal(t, 200, status, "activation reply: %v", reply)
		latencies = append(latencies, time.Since(t0))
		got, ok := w.NVCF.Desired(id, id+"-v1")
		require.True(t, ok)
		require.Equal(t, 1, got, "activation must write max(min, 1) before it answers")
		require.Contains(t, string(reply.Data()), `"action":"written"`, "the activation, not a cycle, must have written %s", id)
	}
	// A second activation of the same version is single-flight: no write.
	before := len(writesOf(w, "fn-idle-00-v1"))
	status, _, err := w.Activate(ctx, "fn-idle-00", "fn-idle-00-v1", "nca-e2e")
	require.NoError(t, err)
	require.Equal(t, 200, status)
	require.Len(t, writesOf(w, "fn-idle-00-v1"), before)
	p50, p99 := percentile(latencies, 50), percentile(latencies, 99)
	t.Logf("RESULT scale-from-zero latency over %d activations: p50=%s p99=%s", len(latencies), p50, p99)
	// The point of activation is not waiting for a cycle: bounded by the
	// period, not by a figure only a fast machine meets (the latency itself
	// is a measurement, reported above).
	require.Less(t, p99, period, "activation must take a function from zero to one without waiting for a cycle")

	// 10x step: both modes must reach adequate capacity, active instances
	// that serve the load under the bar their policy aims at (1 thread, 1 s
	// per request: an instance serves 1 request/s). The backlog queued
	// before that drains afterwards; it is capacity, not the drain, that
	// the decisions control.
	//
	// nvcf mode adds instances while over its 70 % up threshold, so that is
	// its bar. Target mode aims at 70 % and, like HPA, leaves a count alone
	// within its tolerance of it: 7 instances for 5 requests/s (71.4 %) is
	// a size it holds, not one it has yet to correct. Holding it to 70 %
	// exactly made the count depend on a 2 % reading error: the step is 5
	// requests/s, whose size at 70 % is ceil(7.14) = 8, and a rate window
	// that still held 0.4 s from before the step read 4.8 requests/s and
	// sized 7 (a fresh-clone CI run; 8 came only at the drain's next
	// saturated window, 5 cycles after the step). Where the demand read
	// falls among the scrapes and cycles is not the policy's doing; what
	// it did with the reading is asserted below (the cost it sized from,
	// no doubling after the demand sizing, never above the demand size).
	bar := map[string]float64{
		"fn-nvcf":   adequateUtilization,
		"fn-target": adequateUtilization * (1 + policy.Defaults().Tolerance),
	}
	recovered := map[string]time.Time{}
	require.NoError(t, world.WaitFor(warmup+high, func() bool {
		for _, id := range []string{"fn-nvcf", "fn-target"} {
			if _, done := recovered[id]; done {
				continue
			}
			s, _ := w.Latest(id, id+"-v1")
			if s.At.After(stepAt) && s.Load > 4 && float64(s.Active)*bar[id]/100 >= s.Load {
				recovered[id] = s.At
			}
		}
		return len(recovered) == 2
	}), "recovery not reached: %s", describe(w))
	// Recovery is counted in the cycles that decided the version from the
	// first one whose inputs showed the step (its settled utilization over
	// the adequacy bar): the policy's chances to act. A loaded machine that
	// skips or delays cycles stretches the seconds, not this count; and a
	// step that falls late in a cycle's window, which that cycle sees as a
	// few percent more load, does not count as a chance it missed.
	ds := w.AllDecisions()
	cycles := map[string]int{}
	for id, at := range recovered {
		cycles[id] = cyclesFromStep(ds, id+"-v1", stepAt, at)
		require.Positive(t, cycles[id], "no decision of %s before recovery saw utilization over %g%%: %s", id, adequateUtilization, describeDecisions(ds, id+"-v1"))
		t.Logf("RESULT %s reached adequate capacity %d cycles after the 10x step, counted from the first cycle that saw it (%.1fs)", id, cycles[id], at.Sub(stepAt).Seconds())
	}
	require.LessOrEqual(t, cycles["fn-nvcf"], 30, "fn-nvcf recovery: %s", describeDecisions(ds, "fn-nvcf-v1"))
	// Target mode sizes the version for its demand (request rate x the cost
	// learned in the warm-up) in one decision: the first cycle over 70 %
	// already sees the request rate above what the workers are busy with
	// and steps to the demand size, and a saturated one after it to the
	// whole demand (measured 2 cycles: 1 -> 6 at 75 %, -> 8 saturated;
	// 1 -> 5 at 77.5 %, -> 7 saturated from a 4.8 requests/s reading).
	require.LessOrEqual(t, cycles["fn-target"], 3, "fn-target recovery: %s", describeDecisions(ds, "fn-target-v1"))
	// That size is only as right as the cost it multiplies: the simulator's
	// requests take 1 s, and a step sized from a cost 2 % low asks for 7
	// (5 req/s x 0.98 s at 70 %) where 8 are needed. The first decision
	// sized from demand must have had it within that.
	sized := false
	for _, d := range ds {
		if d.FunctionVersionID == "fn-target-v1" && d.DecidedAt.After(stepAt) && d.Reason == "scale_up_demand" {
			t.Logf("RESULT fn-target sized the step from a learned cost of %.3f s (%.0f requests behind it)", d.CostS, d.CostRequests)
			require.InDelta(t, 1.0, d.CostS, 0.02, "fn-target's learned cost when it sized the step: %s", describeDecisions(ds, "fn-target-v1"))
			sized = true
			break
		}
	}
	require.True(t, sized, "fn-target never sized the step from demand: %s", describeDecisions(ds, "fn-target-v1"))
	// With that cost right, nothing after the step is a stale cost: a
	// saturated window is the climb's queue being served, up to and
	// including the window that empties it. Doubling there (a fresh-clone
	// CI run: 8 -> 16 as the backlog estimate fell from 14 to 2 inside a
	// saturated window) is the 2x overshoot demand sizing exists to end,
	// and showed only as more instance-minutes than nvcf mode.
	for _, d := range ds {
		if d.FunctionVersionID == "fn-target-v1" && d.DecidedAt.After(stepAt) && d.Reason == "scale_up_saturated" {
			require.Failf(t, "fn-target doubled after its demand sizing", "at %s (backlog %.1f): %s",
				d.DecidedAt.Format("15:04:05.0"), d.BacklogRequests, describeDecisions(ds, "fn-target-v1"))
		}
	}

	// NVCF 503 burst during steady state: the next writes fail; checked at
	// the end, once the run has spent the burst.
	burstFrom := len(w.NVCF.Writes())
	const burst = 6
	w.NVCF.FailNext(burst, nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable})

	// Load removed: down only as far as the stabilization window allows,
	// and to zero only after the idle timeout.
	time.Sleep(time.Until(dropAt))
	gap := cycleGap(w.AllDecisions(), "fn-nvcf-v1", period)
	require.NoError(t, world.WaitFor(idleTimeout+window+20*gap, func() bool {
		d1, _ := w.NVCF.Desired("fn-nvcf", "fn-nvcf-v1")
		d2, _ := w.NVCF.Desired("fn-target", "fn-target-v1")
		return d1 == 0 && d2 == 0
	}), "did not reach zero: %s", describe(w))

	all, ds := settledView(t, w, "fn-nvcf-v1", "fn-target-v1")
	for _, id := range []string{"fn-nvcf", "fn-target"} {
		vid := id + "-v1"
		cs := attribute(t, all, ds, vid)
		assertOneWritePerCycle(t, cs)
		assertStabilized(t, cs, ds, window)

		// The window did hold the load removal back: a decision after the
		// drop recommended less than it was allowed to apply.
		var firstLow, held, firstDown, zero *world.Decision
		for i, d := range ds {
			if d.FunctionVersionID != vid || !d.Valid || !d.SampleAt.After(dropAt) {
				continue
			}
			if firstLow == nil && d.Recommendation < max(d.Current, d.LastRequested) {
				firstLow = &ds[i]
			}
			if held == nil && d.Reason == "stabilized" {
				held = &ds[i]
			}
		}
		require.NotNil(t, firstLow, "%s: no decision recommended less after the load removal: %s", id, describeDecisions(ds, vid))
		require.NotNil(t, held, "%s: the stabilization window never held a lower recommendation back after the load removal: %s", id, describeDecisions(ds, vid))
		for i, c := range cs {
			d := c.Decision
			if firstDown == nil && d.DecidedAt.After(dropAt) && d.Desired < max(d.Current, d.LastRequested) {
				firstDown = &cs[i].Decision
			}
			if zero == nil && d.Desired == 0 {
				zero = &cs[i].Decision
			}
		}
		require.NotNil(t, firstDown, "%s never scaled down", id)
		require.NotNil(t, zero, "%s: no write to zero", id)
		t.Logf("RESULT %s after load removal: first lower recommendation %.1fs, first scale-down %.1fs (%s), zero %.1fs",
			id, firstLow.DecidedAt.Sub(dropAt).Seconds(), firstDown.DecidedAt.Sub(dropAt).Seconds(), firstDown.Reason, zero.DecidedAt.Sub(dropAt).Seconds())
		// To zero only through the idle rule, and only once no request
		// arrived for the idle timeout (the last one came before dropAt).
		require.Equal(t, "scale_to_zero", zero.Reason, "%s reached zero by another rule: %+v", id, *zero)
		require.GreaterOrEqual(t, zero.DecidedAt.Sub(dropAt), idleTimeout, "%s reached zero before the idle timeout", id)
	}

	// The burst cost bounded retries inside the decisions it hit, and the
	// attribution above shows no decision wrote twice because of it.
	assertBurstBounded(t, all, burstFrom, burst, ds)

	// Faster recovery must not cost more: target mode steps to the demand
	// size and holds it while the queue of the climb drains, never above it
	// (a saturated version busier than its demand doubled before, to twice
	// the demand size). The bound is the load's own: 5 requests/s of 1 s at
	// 70 % need ceil(5/0.7) = 8 instances. Instance-minutes against nvcf
	// mode are reported, not asserted: nvcf mode climbs by 1.2x steps whose
	// count varies from run to run (13-17 cycles), and a slower climb is
	// under-provisioned for longer and so spends less (a fresh-clone CI
	// run: 17.72 for target mode, which never left 8, against 16.58 for a
	// 17-cycle nvcf climb). What target mode controls is its peak.
	demandSize := int(math.Ceil(5 * time.Second.Seconds() / (adequateUtilization / 100)))
	for _, wr := range writesOf(w, "fn-target-v1") {
		require.LessOrEqual(t, wr.Requested, demandSize, "fn-target was written %d, above its demand size %d: %s",
			wr.Requested, demandSize, describeDecisions(ds, "fn-target-v1"))
	}
	for _, id := range []string{"fn-nvcf", "fn-target"} {
		peak := 0
		for _, wr := range writesOf(w, id+"-v1") {
			peak = max(peak, wr.Requested)
		}
		t.Logf("RESULT %s instance-minutes over the run: %.2f, peak desired %d (demand size %d)", id, instanceMinutes(w.History(), id), peak, demandSize)
	}
}

// cyclesFromStep counts the cycles that decided vid from the first one
// decided after the step until to.
func cyclesFromStep(ds []world.Decision, vid string, step, to time.Time) int {
	var first time.Time
	for _, d := range ds {
		if d.FunctionVersionID == vid && !d.DecidedAt.Before(step) && d.Utilization > adequateUtilization &&
			(first.IsZero() || d.DecidedAt.Before(first)) {
			first = d.DecidedAt
		}
	}
	if first.IsZero() {
		return 0
	}
	seen := map[int64]bool{}
	for _, d := range ds {
		if d.FunctionVersionID == vid && !d.DecidedAt.Before(first) && !d.DecidedAt.After(to) {
			seen[d.Cycle] = true
		}
	}
	return len(seen)
}

// adequateUtilization is the bar for adequate capacity in the 10x step
// (the reference's up threshold): the load served under 70 % busy. A cycle
// whose settled utilization is over it is one that saw the step.
const adequateUtilization = 70.0

// setting is a duration setting the world's processes run with.
func setting(t *testing.T, w *world.World, key string) time.Duration {
	t.Helper()
	env := world.BaseEnv(w.Opts)
	for k, v := range w.Opts.Env {
		env[k] = v
	}
	d, err := time.ParseDuration(env[key])
	require.NoError(t, err, "%s=%q", key, env[key])
	return d
}

// TestFailuresDoNotScaleDown takes the TSDB away, restarts Cassandra and
// kills the discovery leader mid-run; nothing may scale down on missing
// data, and the loop must recover.
func TestFailuresDoNotScaleDown(t *testing.T) {
	root, err := harness.RepoRoot()
	require.NoError(t, err)
	stack := filepath.Join(root, "e2e", "stack", "stack.sh")
	fns := []sim.ScenarioFunction{
		// Idle-ish but busy enough to stay up: 20 % on 4 instances would be
		// scaled down by a policy that trusted missing data as zero.
		fn("fn-steady", 1, 10, 4, sim.LoadSpec{Kind: "constant", Rate: 2.4}),
	}
	w := newWorld(t, "faults", map[string]string{"SCALE_DOWN_STABILIZATION": "0s"}, fns...)
	// Let the loop settle: 2.4 req/s on 4 instances = 60 %: in band.
	time.Sleep(8 * period)
	settled, _ := w.NVCF.Desired("fn-steady", "fn-steady-v1")

	t.Run("tsdb outage holds", func(t *testing.T) {
		from := len(w.NVCF.Writes())
		run(t, stack, "stop", "vm")
		outage := time.Now()
		// Readiness follows the TSDB: every function process answers not
		// ready while it is gone, and ready again once it is back.
		for _, p := range append([]*harness.Process{w.Discovery}, w.Scale...) {
			require.NoError(t, world.WaitFor(10*time.Second, func() bool {
				code := p.Readiness(context.Background())
				return code != 0 && code != http.StatusOK
			}), "%s did not answer not-ready with the TSDB down", p.Name)
		}
		// Discovery cannot query either, so the ticks alone would never
		// reach the scale function's hold path: send it the version's
		// bucket straight, as a redelivery or a bucket sent just before the
		// outage would arrive. It must hold every version with a 503.
		bucket := buckets.OfVersion("fn-steady", "fn-steady-v1", 4)
		var held []string
		for i := 0; i < 3; i++ {
			status, id, err := w.SendBucket(context.Background(), bucket, 4)
			require.NoError(t, err)
			require.Equal(t, http.StatusServiceUnavailable, status, "bucket %s with the TSDB down", id)
			held = append(held, id)
			time.Sleep(period)
		}
		for _, id := range held {
			require.True(t, logged(w, "bucket metrics unavailable; holding every version", id), "no scale process logged holding for bucket event %s", id)
		}
		// And the ticks during the outage failed rather than acting.
		require.NoError(t, world.WaitFor(10*period, func() bool { return failedTicksSince(w, outage) >= 2 }),
			"no tick reached discovery during the outage: %+v", tailCycles(w))

		// A cycle that started once the TSDB was gone had no metrics: it
		// must not have written at all. One that started before (its
		// deadline is one period) may still land, but never lower.
		during := w.NVCF.Writes()[from:]
		for _, wr := range during {
			require.GreaterOrEqual(t, wr.Applied, settled, "scaled down during the TSDB outage: %+v", wr)
			require.True(t, wr.Time.Before(outage.Add(period)), "written by a cycle that had no metrics: %+v", wr)
		}
		run(t, stack, "start", "vm")
		t.Logf("RESULT tsdb outage of %.0fs: %d bucket events held with 503, %d failed ticks, %d NVCF writes (none down, none from a cycle without metrics)",
			time.Since(outage).Seconds(), len(held), failedTicksSince(w, outage), len(during))
		for _, p := range append([]*harness.Process{w.Discovery}, w.Scale...) {
			require.NoError(t, world.WaitFor(30*time.Second, func() bool { return p.Ready(context.Background()) }),
				"%s not ready again after the TSDB came back", p.Name)
		}
		// Scaling resumes: cycles succeed again.
		require.NoError(t, world.WaitFor(20*period, func() bool { return lastCycleOK(w) }), "cycles did not resume: %+v", tailCycles(w))
	})

	t.Run("cassandra restart and discovery killed", func(t *testing.T) {
		run(t, stack, "restart", "cassandra")
		w.KillDiscovery()
		require.NoError(t, w.StartDiscovery(context.Background(), nil))
		require.NoError(t, world.WaitFor(30*period, func() bool { return lastCycleOK(w) }), "cycles did not resume: %+v", tailCycles(w))
		got, _ := w.NVCF.Desired("fn-steady", "fn-steady-v1")
		require.GreaterOrEqual(t, got, settled, "instances lost across the restart")
		assertOneWritePerCycle(t, attributeSettled(t, w, "fn-steady-v1"))
	})
}

// logged reports whether a scale process logged msg for the event id.
func logged(w *world.World, msg, eventID string) bool {
	for _, p := range w.Scale {
		b, err := os.ReadFile(p.LogPath)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"event_id":"`+eventID+`"`) {
				return true
			}
		}
	}
	return false
}

// failedTicksSince counts ticks sent at or after `since` that discovery
// answered with an error.
func failedTicksSince(w *world.World, since time.Time) int {
	n := 0
	for _, c := range w.Cycles() {
		if !c.At.Before(since) && (c.Status >= 500 || c.Err != "") {
			n++
		}
	}
	return n
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v:\n%s", name, args, out)
}

func lastCycleOK(w *world.World) bool {
	cs := w.Cycles()
	if len(cs) == 0 {
		return false
	}
	c := cs[len(cs)-1]
	return c.Status == 200 && !strings.Contains(c.Reply, `"skipped":true`)
}

func tailCycles(w *world.World) []world.Cycle {
	cs := w.Cycles()
	if len(cs) > 3 {
		cs = cs[len(cs)-3:]
	}
	return cs
}

func accepted(wr nvcfsim.Write) bool {
	switch wr.Outcome {
	case nvcfsim.OutcomeFault, nvcfsim.OutcomeNotFound, nvcfsim.OutcomeBeyondLimits, nvcfsim.OutcomeUnauthorized:
		return false
	}
	return true
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// instanceMinutes is what the function's versions held over the run, each
// version's snapshots integrated as loadFiguresOf does (a snapshot in
// force until the version's next one; active, provisioning and
// terminating instances all hold a GPU), so the two figures agree.
func instanceMinutes(h []sim.Snapshot, fid string) float64 {
	var from, to time.Time
	versions := map[string]bool{}
	for _, s := range h {
		if s.FunctionID != fid {
			continue
		}
		versions[s.FunctionVersionID] = true
		if from.IsZero() || s.At.Before(from) {
			from = s.At
		}
		if s.At.After(to) {
			to = s.At
		}
	}
	var seconds float64
	for vid := range versions {
		seconds += loadFiguresOf(h, nil, vid, from, to).instanceSeconds
	}
	return seconds / 60
}

func describe(w *world.World) string {
	b, _ := json.Marshal(w.Data.Snapshots())
	return string(b)
}

// writeReport leaves the run's snapshots and writes as JSON for the note
// and for plots.
func writeReport(t *testing.T, w *world.World, name string) {
	b, err := json.MarshalIndent(map[string]any{"snapshots": w.History(), "writes": w.NVCF.Writes(), "cycles": w.Cycles()}, "", " ")
	if err == nil {
		_ = os.WriteFile(filepath.Join(w.Opts.LogDir, name+"-report.json"), b, 0o644)
	}
}
