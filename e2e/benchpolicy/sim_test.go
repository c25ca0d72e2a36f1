package main

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
)

// flat is a trace of constant demand (busy instances) for the world tests.
func flat(demand, cost float64, threads int) Trace {
	return Trace{Name: "flat", Minutes: 60, CostSeconds: cost, Threads: threads, StepAt: -1,
		demand: func(float64) float64 { return demand }}
}

// Every request that arrives is either served or still queued, in every
// replay the benchmark reports.
func TestRequestsAreConserved(t *testing.T) {
	shipped, err := Shipped("")
	require.NoError(t, err)
	cs, err := Contenders(shipped)
	require.NoError(t, err)
	for _, tr := range Traces() {
		for _, c := range cs {
			r := Run(tr, c)
			in, out := r.QueuedAtStart+r.Arrived, r.Served+r.QueuedAtEnd
			require.InDelta(t, in, out, 1e-9*in+1e-6, "%s/%s: arrived %v + queued at start %v != served %v + queued at end %v",
				tr.Name, c.Name, r.Arrived, r.QueuedAtStart, r.Served, r.QueuedAtEnd)
			require.Len(t, r.Minutes, tr.Minutes, "%s/%s", tr.Name, c.Name)
		}
	}
}

// Little's law, checked request by request: the queued-request-seconds the
// world integrates must equal the waits of the requests it served, taken
// first come first served from an independent queue of arrival cohorts.
func TestQueuedTimeIsTheRequestsWaits(t *testing.T) {
	w := newWorld(flat(3, 2, 1), 2) // 1.5 req/s offered, 1 req/s served by 2 instances
	type cohort struct {
		at     int
		amount float64
	}
	var fifo []cohort
	var waits float64
	capacityAt := func(s int) int {
		switch {
		case s < 600:
			return 2 // short: a backlog builds
		case s < 900:
			return 0 // nothing serves
		default:
			return 6 // 3 req/s: the backlog drains
		}
	}
	for s := range 3600 {
		w.ready = capacityAt(s)
		arrived, served := w.serve(3)
		fifo = append(fifo, cohort{s, arrived})
		for served > 1e-12 {
			take := math.Min(served, fifo[0].amount)
			waits += take * float64(s-fifo[0].at)
			fifo[0].amount -= take
			served -= take
			if fifo[0].amount <= 1e-12 {
				fifo = fifo[1:]
			}
		}
	}
	require.Zero(t, w.queue, "the backlog should have drained")
	require.Greater(t, waits, 0.0)
	require.InDelta(t, waits, w.queuedSeconds, 1e-6*waits)
	// L = lambda * W over the run: mean queue = arrival rate * mean wait.
	meanQueue := w.queuedSeconds / 3600
	require.InDelta(t, meanQueue, (w.arrived/3600)*(waits/w.arrived), 1e-9*meanQueue)
}

// A backlog builds at the shortfall and drains at the surplus, to the
// second the fluid model predicts.
func TestBacklogBuildsAndDrains(t *testing.T) {
	w := newWorld(flat(4, 1, 1), 2) // 4 req/s offered, 2 served
	for range 600 {
		w.serve(4)
	}
	require.InDelta(t, 2*600.0, w.queue, 1e-6)
	w.ready = 6 // 6 req/s for 4 offered: drains 2 a second
	for range 599 {
		w.serve(4)
	}
	require.InDelta(t, 2.0, w.queue, 1e-6, "one second of backlog left")
	w.serve(4)
	require.Zero(t, w.queue)
	require.InDelta(t, w.arrived, w.served, 1e-6)
}

// The TSDB reads utilization as the workers report it: the share of the
// reporting threads' time spent busy, capped at 100 % even when fewer
// instances report than did the work.
func TestUtilizationAsWorkersReportIt(t *testing.T) {
	w := newWorld(flat(2, 1, 2), 4) // 2 busy instances' work on 4 instances
	for s := range 600 {
		w.record(s)
		w.serve(2)
	}
	u, ok := w.utilization(599)
	require.True(t, ok)
	require.InDelta(t, 50, u, 1e-9)
	o := w.gather(605)
	require.True(t, o.known)
	require.Equal(t, 4, o.current)
	require.Len(t, o.samples, 10)
	require.Equal(t, at(600), o.samples[len(o.samples)-1].At, "the newest point is now rounded down to the step")

	w.ready = 1 // three instances stop: the window's busy seconds now exceed one instance's threads
	for s := 600; s < 700; s++ {
		w.record(s)
		w.serve(2)
	}
	u, ok = w.utilization(660)
	require.True(t, ok)
	require.Equal(t, 100.0, u)
	o = w.gather(665)
	require.Equal(t, 4, o.current, "the instance count is the settled minute's (600), not the newest scrape's")
}

// Provisioning takes provisioningDelay; a smaller write cancels the newest
// provisioning instances before stopping serving ones.
func TestResizeProvisionsAndCancels(t *testing.T) {
	w := newWorld(flat(1, 1, 1), 2)
	w.resize(0, 5)
	require.Equal(t, 2, w.ready)
	require.Equal(t, 5, w.allocated())
	w.promote(int(provisioningDelay/time.Second) - 1)
	require.Equal(t, 2, w.ready)
	w.resize(60, 3)
	require.Equal(t, 3, w.allocated())
	w.promote(int(provisioningDelay / time.Second))
	require.Equal(t, 3, w.ready)
	w.resize(200, 1)
	require.Equal(t, 1, w.ready)
	require.Equal(t, 3, w.writes)
	w.resize(300, 1)
	require.Equal(t, 3, w.writes, "writing the same count again is no scale event")
}

// The oracle is the floor it is meant to be: never overloaded, nothing
// queued, and its instances are the fewest that keep each minute's peak
// at overloadUtilization.
func TestOracleIsTheFloor(t *testing.T) {
	for _, tr := range Traces() {
		oracle := Run(tr, Contender{Name: "oracle", Oracle: true})
		require.Zero(t, oracle.OverloadedMinutes, tr.Name)
		require.Zero(t, oracle.QueuedRequestMinutes, tr.Name)
	}
	step := Traces()[0]
	require.Equal(t, "step", step.Name)
	// 2 busy instances need 3 at 90 %, 20 need 23: 90 minutes at 3 and 60 at 23.
	require.InDelta(t, 90*3+60*23, Run(step, Contender{Name: "oracle", Oracle: true}).InstanceMinutes, 1e-6)
}

// The shipped default must beat the reference autoscaler on both axes, in
// total and on the step trace, and react to a 10x step at its 60 s cycle
// no slower than the reference at its 15 s loop. A change of defaults or
// of the policy that loses this fails here before the README's table
// goes stale.
func TestDefaultIsParetoBetterThanTheReference(t *testing.T) {
	shipped, err := Shipped("")
	require.NoError(t, err)
	cs, err := Contenders(shipped)
	require.NoError(t, err)
	var ref, def Contender
	for _, c := range cs {
		switch c.Name {
		case "reference":
			ref = c
		case "default":
			def = c
		}
	}
	var refs, defs []Result
	for _, tr := range Traces() {
		r, d := Run(tr, ref), Run(tr, def)
		refs, defs = append(refs, r), append(defs, d)
		if tr.Name == "step" {
			require.True(t, ParetoBetter(d, r), "step: default %d overloaded min / %.0f instance-min, reference %d / %.0f",
				d.OverloadedMinutes, d.InstanceMinutes, r.OverloadedMinutes, r.InstanceMinutes)
			require.GreaterOrEqual(t, d.ReactionSeconds, 0.0)
			require.LessOrEqual(t, d.ReactionSeconds, r.ReactionSeconds, "default reacts slower to the 10x step")
		}
	}
	dt, rt := Totals(defs), Totals(refs)
	require.True(t, ParetoBetter(dt, rt), "total: default %d overloaded min / %.0f instance-min, reference %d / %.0f",
		dt.OverloadedMinutes, dt.InstanceMinutes, rt.OverloadedMinutes, rt.InstanceMinutes)
}

// POLICY_MODE=nvcf alone, through the settings and the scale function's
// own policy builder, is the reference's policy: every field that acts in
// nvcf mode equal (the target-mode fields do nothing there). The bench's
// "nvcf" column therefore differs from the reference's only by the loop.
func TestNVCFModeAloneIsTheReferencePolicy(t *testing.T) {
	got, err := Shipped("nvcf")
	require.NoError(t, err)
	want := policy.Defaults()
	want.TargetUtilization, want.Tolerance = got.TargetUtilization, got.Tolerance
	require.Equal(t, want, got)
}

// Issue 18's goals, on the benchmark's invocation traces with the shipped
// defaults: learned keep-alive keeps at least 30 % fewer idle
// instance-minutes than the fixed 30-minute timeout in total with no more
// cold starts, turns at least half of the periodic traces' cold starts
// warm, and pays no more cold starts than fixed on any trace.
func TestLearnedKeepAliveMeetsIssue18Goals(t *testing.T) {
	shipped, err := Shipped("")
	require.NoError(t, err)
	traces := InvocationTraces()
	byTrace := map[string][]KeepAliveResult{}
	byContender := map[string][]KeepAliveResult{}
	for _, it := range traces {
		for _, c := range KeepAliveContenders(shipped) {
			r := RunKeepAlive(it, c)
			byTrace[it.Name] = append(byTrace[it.Name], r)
			byContender[c.Name] = append(byContender[c.Name], r)
		}
		fixed, learned := findKA(byTrace[it.Name], "fixed-30m"), findKA(byTrace[it.Name], "learned")
		require.LessOrEqual(t, learned.ColdStarts, fixed.ColdStarts, "%s: %+v against %+v", it.Name, learned, fixed)
		if it.Periodic {
			require.Positive(t, learned.Prewarms, it.Name)
		}
	}
	var totals []KeepAliveResult
	for _, c := range KeepAliveContenders(shipped) {
		totals = append(totals, KeepAliveTotals(byContender[c.Name]))
	}
	g := keepAliveGoals(traces, byTrace, totals)
	require.True(t, g.Met, "%+v", g)
}

// Through the control plane and the LLM gateway, learned keep-alive meets
// the same goals against the fixed timeout read the same way: a version
// at zero reads 0 instances from the control plane's count, and the
// gateway sees an invocation only when it is answered (after a cold
// start, when there is one).
func TestLearnedKeepAliveMeetsIssue18GoalsThroughEachSource(t *testing.T) {
	shipped, err := Shipped("")
	require.NoError(t, err)
	traces := InvocationTraces()
	byTrace, totals := replayKeepAlive(traces, SourceContenders(shipped))
	for _, src := range []string{sourceControlPlane, sourceGateway} {
		for _, it := range traces {
			fixed, learned := findKA(byTrace[it.Name], "fixed-30m/"+src), findKA(byTrace[it.Name], "learned/"+src)
			require.Equal(t, len(it.At), learned.Invocations)
			if it.Periodic {
				require.Positive(t, learned.Prewarms, "%s %s", src, it.Name)
				require.Less(t, learned.ColdStarts, fixed.ColdStarts/2, "%s %s: %+v against %+v", src, it.Name, learned, fixed)
				continue
			}
			// On an irregular trace a run of similar gaps now and then
			// passes the replay test and the next gap does not fit it:
			// through the gateway one such early release on the diurnal
			// trace costs 2 cold starts (15 against 13). No more than that.
			require.LessOrEqual(t, learned.ColdStarts, fixed.ColdStarts+2, "%s %s: %+v against %+v", src, it.Name, learned, fixed)
		}
		g := keepAliveGoalsOf(traces, byTrace, totals, src)
		require.True(t, g.Met, "%s: %+v", src, g)
	}
}

// The keep-alive runs count what they claim: every invocation is counted
// once, a cold start is an invocation with nothing serving, and idle time
// never exceeds what is paid for.
func TestKeepAliveAccounting(t *testing.T) {
	it := InvocationTrace{Name: "two", Minutes: 120, At: []int{0, 90 * 60}}
	shipped, err := Shipped("")
	require.NoError(t, err)
	for _, c := range KeepAliveContenders(shipped) {
		r := RunKeepAlive(it, c)
		require.Equal(t, 2, r.Invocations, c.Name)
		// From zero, and 90 minutes later, past any 30-minute timeout and
		// with nothing learned: both are cold.
		require.Equal(t, 2, r.ColdStarts, c.Name)
		require.LessOrEqual(t, r.IdleInstanceMinutes, r.InstanceMinutes, c.Name)
		require.InDelta(t, r.InstanceMinutes-2*invocationCost/60, r.IdleInstanceMinutes, 1e-6, "%s: idle is paid minus busy", c.Name)
		require.Zero(t, r.Prewarms, c.Name)
	}
}
