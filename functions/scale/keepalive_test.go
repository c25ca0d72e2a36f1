package scale

import (
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
