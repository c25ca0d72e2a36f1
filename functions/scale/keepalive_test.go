package scale

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

var kaStart = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// minutes builds request counts at 60 s steps from kaStart: one value per step.
func minutes(values ...float64) []tsdb.Sample {
	out := make([]tsdb.Sample, len(values))
	for i, v := range values {
		out[i] = tsdb.Sample{At: kaStart.Add(time.Duration(i) * time.Minute), Value: v}
	}
	return out
}

func minute(step int) time.Time { return kaStart.Add(time.Duration(step) * time.Minute) }

func histogramOf(t *testing.T, k store.KeepAlive) policy.IdleHistogram {
	h, err := policy.DecodeIdleHistogram(k.Histogram)
	require.NoError(t, err)
	return h
}

// Two bursts with a quiet stretch between: the gap from the last invoked
// step of the first to the first of the second is folded once, and
// walking the same steps again (a replayed event, a second replica)
// folds nothing.
func TestFoldBurstsFoldsEachGapOnce(t *testing.T) {
	view := minutes(3, 2, 0, 0, 0, 0, 1, 4, 0)
	next, folded := foldBursts(store.KeepAlive{}, policy.IdleHistogram{}, view, time.Minute)
	require.Equal(t, 1, folded)
	require.Equal(t, minute(7), next.BurstEnd, "the second burst ended at its last invoked step, a quiet step followed")
	require.Equal(t, minute(6), next.FoldedTo)
	h := histogramOf(t, next)
	require.InDelta(t, 1, h.Gaps(), 1e-9)
	p, ok := h.Percentile(0.5)
	require.True(t, ok)
	require.True(t, p >= 4*time.Minute && p < 5*time.Minute, "the gap runs from step 1, the burst's last, to step 5, the last quiet one: %s", p)

	again, folded := foldBursts(next, h, view, time.Minute)
	require.Zero(t, folded, "a replay folds nothing")
	require.Equal(t, next, again)

	// The next cycle's view: one more quiet step, then a third burst.
	later, folded := foldBursts(next, h, append(view[2:], tsdb.Sample{At: minute(9), Value: 0}, tsdb.Sample{At: minute(10), Value: 2}), time.Minute)
	require.Equal(t, 1, folded)
	require.Equal(t, minute(10), later.FoldedTo)
	require.Equal(t, minute(7), later.BurstEnd, "the third burst has not ended yet")
	require.InDelta(t, 2, histogramOf(t, later).Gaps(), 0.2)
}

// A burst in progress across cycles is one burst: its start, folded in
// the cycle that saw it, is not folded again when the next cycle's view
// starts inside it.
func TestFoldBurstsBurstInProgressIsNotRefolded(t *testing.T) {
	stored := store.KeepAlive{BurstEnd: minute(0), FoldedTo: minute(5)}
	next, folded := foldBursts(stored, policy.IdleHistogram{}, minutes(0, 0, 0, 0, 0, 0, 2, 2, 2)[6:], time.Minute)
	require.Zero(t, folded)
	require.Equal(t, stored, next)
}

// The first burst ever seen folds no gap, nor does the first after a burst
// whose end the view no longer shows; a step without a sample is unknown
// and never ends a burst.
func TestFoldBurstsLeavesUnknownGapsOut(t *testing.T) {
	next, folded := foldBursts(store.KeepAlive{}, policy.IdleHistogram{}, minutes(0, 0, 1, 1, 0), time.Minute)
	require.Zero(t, folded, "where the burst before the first one ended is unknown")
	require.Equal(t, minute(3), next.BurstEnd)

	view := minutes(2, 2, 0, 0, 2)
	holed := append(append([]tsdb.Sample{}, view[:2]...), view[4]) // steps 2 and 3 have no sample
	next, folded = foldBursts(store.KeepAlive{}, policy.IdleHistogram{}, holed, time.Minute)
	require.Zero(t, folded)
	require.True(t, next.BurstEnd.IsZero(), "a scrape gap is no quiet step: still one burst")

	// A burst whose steps scrolled out of view (the autoscaler was away):
	// its end is unknown, so the burst after it folds no gap.
	stored := store.KeepAlive{BurstEnd: minute(-30), FoldedTo: minute(-20)}
	next, folded = foldBursts(stored, policy.IdleHistogram{}, minutes(0, 0, 3, 0), time.Minute)
	require.Zero(t, folded)
	require.Equal(t, minute(2), next.BurstEnd)
}

// The cold start runs from the write above zero to the first step with a
// worker, and is learned once; a worker already reporting at the write, or
// a write back to zero first, ends the measurement without learning.
func TestMeasureColdStart(t *testing.T) {
	from := minute(1).Add(10 * time.Second)
	st := store.ScalingState{HasLastRequested: true, LastRequested: 1, KeepAlive: store.KeepAlive{ColdFrom: from}}
	cs, done := measureColdStart(st, minutes(0, 0, 0), time.Minute)
	require.False(t, done, "no worker yet")
	require.False(t, cs.Known())

	cs, done = measureColdStart(st, minutes(0, 0, 0, 0, 1, 1), time.Minute)
	require.True(t, done)
	require.True(t, cs.Known())
	require.Equal(t, (minute(4).Sub(from)).Seconds(), cs.Seconds)
	require.Equal(t, minute(4), cs.UpdatedAt)

	_, done = measureColdStart(st, minutes(0, 1, 1, 1), time.Minute)
	require.True(t, done)
	cs, _ = measureColdStart(st, minutes(0, 1, 1, 1), time.Minute)
	require.False(t, cs.Known(), "a worker reporting at the write: no cold start learned")

	back := st
	back.LastRequested, back.LastWrittenAt = 0, from.Add(time.Minute)
	cs, done = measureColdStart(back, minutes(0, 0, 0, 0, 1), time.Minute)
	require.True(t, done)
	require.False(t, cs.Known(), "written back to zero before a worker came")
}

// A pre-warm is used when the next burst's first step finds a worker up,
// late when it finds none, wasted when the version went back to zero with
// no invocation since.
func TestPrewarmOutcome(t *testing.T) {
	k := keepAlive{prewarmAt: minute(2).Add(-10 * time.Second), burstEnd: minute(-10)}
	up := minutes(0, 0, 0, 1, 1, 1)
	m := tsdb.VersionMetrics{SettledAt: minute(5), RequestCounts: minutes(0, 0, 0, 0, 0, 0), InstanceCounts: up}
	require.Equal(t, "", prewarmOutcome(k, store.ScalingState{HasLastRequested: true, LastRequested: 1}, m), "still pending")

	m.RequestCounts = minutes(0, 0, 0, 0, 3, 0)
	require.Equal(t, "used", prewarmOutcome(k, store.ScalingState{}, m))
	m.RequestCounts = minutes(0, 0, 2, 0, 3, 0)
	require.Equal(t, "late", prewarmOutcome(k, store.ScalingState{}, m), "the burst came at step 2, the worker at step 3")
	m.RequestCounts = minutes(0, 0, 0, 0, 0, 0, 5)
	require.Equal(t, "", prewarmOutcome(k, store.ScalingState{}, m), "an unsettled step settles nothing")

	m.RequestCounts = minutes(0, 0, 0, 0, 0, 0)
	back := store.ScalingState{HasLastRequested: true, LastRequested: 0, LastWrittenAt: minute(5)}
	require.Equal(t, "wasted", prewarmOutcome(k, back, m))
	require.Equal(t, "", prewarmOutcome(keepAlive{}, back, m), "no pre-warm pending")
}

// A worker version that NVCF last accepted 0 for and that shows no worker
// series runs none: decidable at zero, not "unknown". Any other evidence
// of instances (a series, a clamp up to a min, a non-zero request) keeps
// today's reading.
func TestWorkerVersionAtZeroIsKnown(t *testing.T) {
	zero := store.ScalingState{HasLastRequested: true, LastRequested: 0}
	require.True(t, atZero(zero, observation{}))
	require.True(t, atZero(zero, observation{known: true}))
	require.False(t, atZero(zero, observation{metrics: tsdb.VersionMetrics{InstancesKnown: true, Instances: 1}}))
	require.False(t, atZero(store.ScalingState{}, observation{}), "nothing written yet: unknown")
	require.False(t, atZero(store.ScalingState{HasLastRequested: true, LastRequested: 2}, observation{}))
	clamped := zero
	clamped.HasAppliedTarget, clamped.AppliedTarget = true, 1
	require.False(t, atZero(clamped, observation{}), "NVCF clamped the 0 up to its min")
	require.False(t, atZero(zero, observation{source: tsdb.SourceControlPlane}))
}

// Each metric source's series reach learned keep-alive as the same
// evidence, and teach it the same thing: nine bursts ten minutes apart
// (one invoked step each) fold eight 9-minute gaps, an instance serving
// at the step after a write from zero ends a 30 s cold start, and the
// policy then releases the quiet version early and pre-warms it before
// its next burst. The control plane reports an average over its
// reporters (one of two counting an instance reads 0.5, serving); the
// gateway's requests are the function's and its instances the sum over
// its versions.
func TestKeepAliveLearnsFromEachSource(t *testing.T) {
	var reqs, inst []tsdb.Sample
	for i := 0; i <= 84; i++ {
		r, n := 0.0, 0.0
		if i%10 == 1 {
			r = 3
		}
		if m := i % 10; m >= 2 && m <= 6 {
			n = 0.5
		}
		reqs = append(reqs, tsdb.Sample{At: minute(i), Value: r})
		inst = append(inst, tsdb.Sample{At: minute(i), Value: n})
	}
	settled, last := minute(83), minute(81)
	for _, c := range []struct {
		source string
		m      tsdb.VersionMetrics
	}{
		{"worker", tsdb.VersionMetrics{RequestCounts: reqs, InstanceCounts: inst, SettledAt: settled, LastInvokedAt: last}},
		{"control_plane", controlPlaneEvidence(tsdb.ControlPlaneMetrics{RequestCounts: reqs, InstanceCounts: inst, SettledAt: settled, LastInvokedAt: last})},
		{"gateway", gatewayEvidence(tsdb.GatewayMetrics{RequestCounts: reqs, InstanceCounts: inst, SettledAt: settled, LastInvokedAt: last}, time.Minute)},
	} {
		t.Run(c.source, func(t *testing.T) {
			next, folded := foldBursts(store.KeepAlive{}, policy.IdleHistogram{}, settledSteps(c.m.RequestCounts, c.m.SettledAt), time.Minute)
			require.Equal(t, 8, folded)
			require.Equal(t, last, next.BurstEnd)
			h := histogramOf(t, next)
			require.InDelta(t, 6.59, h.Gaps(), 0.01)
			p5, _ := h.Percentile(0.05)
			require.Equal(t, 9*time.Minute+3*time.Second, p5.Round(time.Second))
			// The newest step (84) is not settled: nothing beyond 83 is read.
			_, again := foldBursts(next, h, settledSteps(c.m.RequestCounts, c.m.SettledAt), time.Minute)
			require.Zero(t, again)

			st := store.ScalingState{HasLastRequested: true, LastRequested: 1, KeepAlive: store.KeepAlive{ColdFrom: last.Add(30 * time.Second)}}
			cs, done := measureColdStart(st, c.m.InstanceCounts, time.Minute)
			require.True(t, done)
			require.Equal(t, 30*time.Second, cs.Duration())
			require.Equal(t, minute(82), cs.UpdatedAt)

			p := policy.Defaults()
			p.KeepAlive, p.IdleTimeout = policy.KeepAliveLearned, 5*time.Minute
			k := keepAlive{idle: h, coldStart: cs, burstEnd: next.BurstEnd}
			in := policy.Input{Now: minute(84).Add(30 * time.Second), Current: 1, CurrentKnown: true, LastRequested: 1, LastRequestedKnown: true,
				MetricsOK: true, Utilization: []policy.Sample{{At: settled, Value: 0}}, InvocationsSince: minute(0), Source: c.source}
			k.applyTo(&in)
			require.Equal(t, last, in.LastInvokedAt)
			d := policy.Decide(p, in)
			require.Equal(t, policy.ReasonScaleToZeroLearned, d.Reason, d.Detail)
			require.Zero(t, d.Desired)
			require.Contains(t, d.Detail, "last invoked 3m30s ago, released until the pre-warm at 7m39s")
			require.Contains(t, d.Detail, "cold start 30s")

			// At zero, released at 84:30: nothing until the pre-warm is due.
			k.released = in.Now
			zero := policy.Input{Now: last.Add(7*time.Minute + 30*time.Second), CurrentKnown: true, LastRequestedKnown: true, MetricsOK: true,
				InvocationsSince: minute(0), Source: c.source}
			k.applyTo(&zero)
			require.Equal(t, policy.ReasonHoldAtZero, policy.Decide(p, zero).Reason)
			zero.Now = last.Add(8*time.Minute + 30*time.Second)
			d = policy.Decide(p, zero)
			require.Equal(t, policy.ReasonPrewarm, d.Reason, d.Detail)
			require.Equal(t, 1, d.Desired)
		})
	}
}

// A gateway function's keep-alive is read from whichever of its versions'
// rows holds the newest of each group of columns, as the row it is
// written to follows the target version.
func TestGatewayKeepAliveStateTakesEachGroupFromTheNewestRow(t *testing.T) {
	target := store.VersionKey{FunctionID: "f", FunctionVersionID: "a"}
	states := map[string]store.ScalingState{
		"a": {HasLastRequested: true, LastRequested: 0, LastWrittenAt: minute(10), KeepAlive: store.KeepAlive{
			Histogram: "old", BurstEnd: minute(1), FoldedTo: minute(0),
			ColdStartSeconds: 40, ColdStartWeight: 2, ColdStartAt: minute(30)}},
		"b": {HasLastRequested: true, LastRequested: 0, LastWrittenAt: minute(20), KeepAlive: store.KeepAlive{
			Histogram: "new", BurstEnd: minute(5), FoldedTo: minute(4),
			ColdStartSeconds: 20, ColdStartWeight: 1, ColdStartAt: minute(8), ColdFrom: minute(7),
			PrewarmAt: minute(15), PrewarmFor: minute(5)}},
		"c": {},
	}
	f := gatewayKeepAliveState(states, states["a"], target, 0)
	k := f.KeepAlive
	require.Equal(t, "new", k.Histogram, "the idle group with the newest fold keys")
	require.Equal(t, minute(5), k.BurstEnd)
	require.Equal(t, minute(4), k.FoldedTo)
	require.Equal(t, 40.0, k.ColdStartSeconds, "the newest cold start learned")
	require.Equal(t, minute(30), k.ColdStartAt)
	require.True(t, k.ColdFrom.IsZero(), "a measurement begun before the last cold start learned is over")
	require.Equal(t, minute(15), k.PrewarmAt)
	require.Equal(t, store.VersionKey{FunctionID: "f", FunctionVersionID: "b"}, f.prewarmIn, "settled in the row it was written to")
	require.Equal(t, minute(20), f.LastWrittenAt, "the function's last write")
	require.True(t, f.HasLastRequested)
	require.Zero(t, f.LastRequested)

	// A cold start being measured since after the last one learned stands.
	b := states["b"]
	b.KeepAlive.ColdFrom = minute(40)
	states["b"] = b
	require.Equal(t, minute(40), gatewayKeepAliveState(states, states["a"], target, 1).KeepAlive.ColdFrom)
}

// The gateway counts a request when it answers it: a step's answers are
// moved back by their mean latency, in whole steps, to when they came. A
// request that waited 2m20s for a cold start, answered in the window
// ending at minute 5, arrived in the one ending at minute 3; 20 s answers
// stay; a step with unknown latency stays; unknown counts stay unknown.
func TestGatewayArrivals(t *testing.T) {
	nan := math.NaN()
	m := tsdb.GatewayMetrics{
		RequestCounts: minutes(0, 1, 0, 0, 0, 1, 0, 2, nan, 1),
		// completions per second and in-flight (duration sum's rate) per step
		RequestRates: minutes(0, 1.0/60, 0, 0, 0, 1.0/60, 0, 2.0/60, nan, 1.0/60),
		InFlights:    minutes(0, 20.0/60, 0, 0, 0, 140.0/60, 0, 40.0/60, 0),
	}
	got := gatewayArrivals(m, time.Minute)
	want := []float64{0, 1, 0, 1, 0, 0, 0, 2, nan, 1}
	require.Len(t, got, len(want))
	for i, w := range want {
		require.Equal(t, minute(i), got[i].At)
		if math.IsNaN(w) {
			require.True(t, math.IsNaN(got[i].Value), "step %d", i)
			continue
		}
		require.InDelta(t, w, got[i].Value, 1e-9, "step %d", i)
	}
}

// The scale function's grid ends at now, so cycles 20 s apart read the
// same requests on grids 20 s apart, and a step of one grid sees requests
// a step of the previous one already counted. Each gap between bursts is
// still folded once, and measured as cycles a minute apart on one grid
// measure it, to within a step: never a second time from a shifted view
// of a burst that ended, never a negative gap.
func TestFoldBurstsOnGridsThatMoveWithNow(t *testing.T) {
	const window = 70 * time.Second
	var requests []time.Time
	burst := func(from, to time.Duration) {
		for d := from; d <= to; d += 10 * time.Second {
			requests = append(requests, kaStart.Add(d))
		}
	}
	// Bursts 0:10-2:50, 9:05-10:40 and 15:30: gaps of about 6 and 5
	// minutes as the minute grid measures them (last invoked step to the
	// last quiet one).
	burst(10*time.Second, 170*time.Second)
	burst(545*time.Second, 640*time.Second)
	burst(930*time.Second, 930*time.Second)
	// view is what a cycle at now reads: the requests in the window
	// ending at each step of a ten-point grid ending at now, settled
	// steps only (up to now - step).
	view := func(now time.Time) []tsdb.Sample {
		var out []tsdb.Sample
		for i := 9; i >= 1; i-- {
			at := now.Add(-time.Duration(i) * time.Minute)
			n := 0
			for _, r := range requests {
				if r.After(at.Add(-window)) && !r.After(at) {
					n++
				}
			}
			out = append(out, tsdb.Sample{At: at, Value: float64(n)})
		}
		return out
	}
	run := func(every time.Duration) policy.IdleHistogram {
		var k store.KeepAlive
		idle := policy.NewIdleHistogram(time.Minute)
		folded := 0
		for now := kaStart.Add(2 * time.Minute); now.Before(kaStart.Add(25 * time.Minute)); now = now.Add(every) {
			next, n := foldBursts(k, idle, view(now), time.Minute)
			require.False(t, next.BurstEnd.Before(k.BurstEnd), "cycle at %s: the burst end went back from %s to %s", now, k.BurstEnd, next.BurstEnd)
			if n > 0 {
				idle = histogramOf(t, next)
			}
			folded, k = folded+n, next
		}
		require.Equal(t, 2, folded, "cycles every %s: each gap once", every)
		return idle
	}
	aligned, moving := run(time.Minute), run(20*time.Second)
	require.InDelta(t, 2, moving.Gaps(), 0.2)
	for _, q := range []float64{0.25, 0.75} {
		a, ok := aligned.Percentile(q)
		require.True(t, ok)
		m, ok := moving.Percentile(q)
		require.True(t, ok)
		require.True(t, m > 0 && (m-a).Abs() <= time.Minute, "gap percentile %g: %s on moving grids, %s on one grid", q, m, a)
	}
}

// A burst whose first step a cycle on another grid stored ends no earlier
// than that step, even when this grid saw its requests last at a step
// before it: an end before the stored start would leave the burst open
// for ever, and the next gap unmeasured.
func TestFoldBurstsEndsABurstNoEarlierThanItsStoredStart(t *testing.T) {
	stored := store.KeepAlive{BurstEnd: minute(0), FoldedTo: minute(5)}
	shifted := func(step int, v float64) tsdb.Sample {
		return tsdb.Sample{At: minute(step).Add(20 * time.Second), Value: v}
	}
	next, folded := foldBursts(stored, policy.IdleHistogram{}, []tsdb.Sample{shifted(3, 0), shifted(4, 1), shifted(5, 0), shifted(6, 0)}, time.Minute)
	require.Zero(t, folded)
	require.Equal(t, minute(5), next.BurstEnd)
	require.False(t, next.FoldedTo.After(next.BurstEnd), "the burst is over: %+v", next)
}

// Before anything is learned (no histogram, no burst end), a fold that
// only moves the key of the first burst's start is not stored: walking a
// version's cycles storing only what idleWorthSaving asks for finds the
// same burst ends and folds the same gaps, cycle by cycle, as storing
// every change, including a first burst longer than the view and a first
// sight in its middle.
func TestIdleFoldKeysOfAFirstBurstAreNotWorthAWrite(t *testing.T) {
	invoked := map[int]bool{}
	for _, r := range [][2]int{{0, 14}, {20, 21}, {31, 31}, {38, 40}} {
		for m := r[0]; m <= r[1]; m++ {
			invoked[m] = true
		}
	}
	view := func(c int) []tsdb.Sample {
		var out []tsdb.Sample
		for m := max(0, c-9); m <= c; m++ {
			v := 0.0
			if invoked[m] {
				v = 2
			}
			out = append(out, tsdb.Sample{At: minute(m), Value: v})
		}
		return out
	}
	var every, some store.KeepAlive
	writes := 0
	for c := 5; c <= 45; c++ {
		a, foldedA := foldBursts(every, histogramOrNew(t, every), view(c), time.Minute)
		b, foldedB := foldBursts(some, histogramOrNew(t, some), view(c), time.Minute)
		require.Equal(t, foldedA, foldedB, "cycle %d folds the same gaps", c)
		require.True(t, a.BurstEnd.Equal(b.BurstEnd), "cycle %d finds the same burst end: %s, %s", c, a.BurstEnd, b.BurstEnd)
		require.Equal(t, a.Histogram, b.Histogram, "cycle %d learns the same histogram", c)
		every = a
		if idleWorthSaving(some, b, foldedB) {
			some = b
			writes++
		}
		if c < 15 {
			require.Equal(t, store.KeepAlive{}, some, "cycle %d: the first burst goes on, nothing stored", c)
		}
	}
	require.InDelta(t, 3, histogramOrNew(t, some).Gaps(), 0.2, "the three gaps after the first burst")
	require.Less(t, writes, 10)

	// Once something is learned, a moved key alone is stored as before.
	learned := store.KeepAlive{BurstEnd: minute(3), FoldedTo: minute(1)}
	require.True(t, idleWorthSaving(learned, store.KeepAlive{BurstEnd: minute(3), FoldedTo: minute(2)}, 0))
	require.True(t, idleWorthSaving(store.KeepAlive{Histogram: "h"}, store.KeepAlive{Histogram: "h", FoldedTo: minute(2)}, 0))
	require.False(t, idleWorthSaving(store.KeepAlive{}, store.KeepAlive{FoldedTo: minute(2)}, 0))
	require.True(t, idleWorthSaving(store.KeepAlive{}, store.KeepAlive{FoldedTo: minute(2), BurstEnd: minute(4)}, 0))
}

// histogramOrNew decodes k's idle histogram, a new one at a minute's bin
// when it has none, as learnKeepAlive starts one.
func histogramOrNew(t *testing.T, k store.KeepAlive) policy.IdleHistogram {
	if k.Histogram == "" {
		return policy.NewIdleHistogram(time.Minute)
	}
	return histogramOf(t, k)
}

// Only known request counts up to the settled step are evidence: a step
// the TSDB could not compute (NaN), an infinite or negative count (what
// a counter reset can make of an increase) is unknown like a missing
// sample, so it never ends a burst; the settled step itself is in, since
// its scrapes are, and its quiet confirms a burst's end this cycle.
func TestSettledStepsAreTheKnownOnesUpToTheSettledStep(t *testing.T) {
	counts := minutes(1, math.NaN(), math.Inf(1), -1, 0, 2, 3)
	require.Equal(t, []tsdb.Sample{counts[0], counts[4], counts[5]}, settledSteps(counts, minute(5)))

	next, _ := foldBursts(store.KeepAlive{}, policy.NewIdleHistogram(time.Minute),
		settledSteps(minutes(2, math.NaN(), 2, 0), minute(3)), time.Minute)
	require.Equal(t, minute(2), next.BurstEnd, "one burst through the unknown step, ended by the settled quiet one")
}

// A gap is measured to the last quiet step before the next burst: across
// steps with no sample (the request may have come in any of them), and
// to one step before the burst when no quiet step since the last end is
// in view.
func TestFoldBurstsMeasuresAGapToTheLastQuietStepBeforeTheBurst(t *testing.T) {
	stored := store.KeepAlive{BurstEnd: minute(0), FoldedTo: minute(-2)}
	gapOf := func(view []tsdb.Sample) time.Duration {
		t.Helper()
		next, folded := foldBursts(stored, policy.NewIdleHistogram(time.Minute), view, time.Minute)
		require.Equal(t, 1, folded)
		h := histogramOf(t, next)
		require.InDelta(t, 1, h.Gaps(), 1e-9)
		p, ok := h.Percentile(0.5)
		require.True(t, ok)
		return p.Truncate(time.Minute)
	}
	view := minutes(0, 0, 0, 0, 0, 3, 0)[1:]                           // the steps after the end at 0: quiet, then a burst at 5
	holed := append(append([]tsdb.Sample{}, view[:2]...), view[4:]...) // steps 3 and 4 have no sample
	require.Equal(t, 2*time.Minute, gapOf(holed), "from the end at 0 to the quiet step 2")
	require.Equal(t, 4*time.Minute, gapOf(view[4:]), "steps 1 to 4 out of view: to the step before the burst at 5")
}

// A worker count the TSDB could not compute is no worker, and a worker
// reporting a whole step before the write was not reporting at it.
func TestMeasureColdStartReadsOnlyWorkersSinceTheWrite(t *testing.T) {
	from := minute(1).Add(10 * time.Second)
	st := store.ScalingState{HasLastRequested: true, LastRequested: 1, KeepAlive: store.KeepAlive{ColdFrom: from}}
	cs, done := measureColdStart(st, minutes(0, 0, math.NaN(), 0, 1), time.Minute)
	require.True(t, done)
	require.Equal(t, minute(4).Sub(from).Seconds(), cs.Seconds)

	st.KeepAlive.ColdFrom = minute(2)
	cs, done = measureColdStart(st, minutes(0, 1, 0, 0, 1), time.Minute)
	require.True(t, done)
	require.Equal(t, (2 * time.Minute).Seconds(), cs.Seconds, "the worker at step 1 went before the write at 2")
}

// A pre-warm is settled only by what came after it: a burst before it
// is not its use, and a version that went back to zero is not its waste
// when it was invoked since (at a step not settled yet, or in a burst
// whose end is stored) or when that write came before the pre-warm.
func TestPrewarmOutcomeReadsOnlyWhatCameAfterThePrewarm(t *testing.T) {
	k := keepAlive{prewarmAt: minute(2).Add(-10 * time.Second), burstEnd: minute(-10)}
	m := tsdb.VersionMetrics{SettledAt: minute(5), RequestCounts: minutes(3, 0, 0, 0, 0, 0), InstanceCounts: minutes(1, 1, 1, 1, 1, 1)}
	require.Equal(t, "", prewarmOutcome(k, store.ScalingState{HasLastRequested: true, LastRequested: 1}, m), "the burst at 0 came before it")
	onStep := keepAlive{prewarmAt: minute(2), burstEnd: minute(-10)}
	m.RequestCounts = minutes(0, 0, 3, 0, 0, 0)
	require.Equal(t, "", prewarmOutcome(onStep, store.ScalingState{HasLastRequested: true, LastRequested: 1}, m),
		"a pre-warm on a step: that step's requests came in the window before it")

	m.RequestCounts = minutes(0, 0, 0, 0, 0, 0, 4)
	back := store.ScalingState{HasLastRequested: true, LastRequested: 0, LastWrittenAt: minute(5)}
	m.LastInvokedAt = minute(6)
	require.Equal(t, "", prewarmOutcome(k, back, m), "invoked at a step not settled yet")
	m.LastInvokedAt = time.Time{}
	ended := k
	ended.burstEnd = minute(3)
	require.Equal(t, "", prewarmOutcome(ended, back, m), "invoked in a burst whose end is stored")
	back.LastWrittenAt = minute(1)
	require.Equal(t, "", prewarmOutcome(k, back, m), "written to zero before the pre-warm")
}

// A version last written to zero tells the policy when, which is how an
// invocation it was down for brings it up at once under learned
// keep-alive; one above zero was not released. Known without metrics
// (nothing read) so that nothing is stored.
func TestLearnKeepAliveTellsThePolicyWhenTheVersionWentToZero(t *testing.T) {
	h := &Handler{}
	h.d.Settings.Scale.Step = time.Minute
	key := store.VersionKey{FunctionID: "f", FunctionVersionID: "v"}
	log := slog.New(slog.DiscardHandler)
	st := store.ScalingState{HasLastRequested: true, LastRequested: 0, LastWrittenAt: minute(3)}
	var in policy.Input
	h.learnKeepAlive(context.Background(), log, key, st, tsdb.VersionMetrics{}, false).applyTo(&in)
	require.Equal(t, minute(3), in.ReleasedAt)

	st.LastRequested = 2
	in = policy.Input{}
	h.learnKeepAlive(context.Background(), log, key, st, tsdb.VersionMetrics{}, false).applyTo(&in)
	require.True(t, in.ReleasedAt.IsZero(), "above zero: not released")
}

// A cold start measured ends its measurement in the store: the next
// cycle reads no write to measure from, so it neither learns nor writes
// the cold start again. Against the real Cassandra, through the state row.
func TestColdStartMeasuredEndsItsMeasurement(t *testing.T) {
	f := setup(t, 0)
	h := f.handler(t, "node-a", nil)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	key := store.VersionKey{FunctionID: "cold-once-f", FunctionVersionID: "cold-once-v"}
	from := minute(1).Add(10 * time.Second)
	require.NoError(t, f.store.SaveState(ctx, key, coldFrom(from), time.Hour))
	m := tsdb.VersionMetrics{SettledAt: minute(5), RequestCounts: minutes(0, 0, 0, 0, 0, 0), InstanceCounts: minutes(0, 0, 0, 0, 1, 1)}

	st, err := f.store.ReadState(ctx, key)
	require.NoError(t, err)
	require.True(t, st.KeepAlive.ColdFrom.Equal(from))
	k := h.learnKeepAlive(ctx, log, key, st, m, true)
	require.Equal(t, minute(4).Sub(from).Seconds(), k.coldStart.Seconds)

	st, err = f.store.ReadState(ctx, key)
	require.NoError(t, err)
	require.True(t, st.KeepAlive.ColdFrom.IsZero(), "measured: nothing left to measure")
	require.Equal(t, minute(4).Sub(from).Seconds(), st.KeepAlive.ColdStartSeconds)
}

func coldFrom(at time.Time) store.StateUpdate {
	var u store.StateUpdate
	u.ColdFrom(at)
	return u
}
