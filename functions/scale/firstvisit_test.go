package scale

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// A version that holds from its first sight stores no recommendation
// history (its only entry would be the seed the next cycle seeds again)
// and no idle fold keys (its first burst has not ended), yet every
// guarantee of a first visit holds: nothing is scaled down in a fresh
// install's first cycles, a drop in load waits out the stabilization
// window, counted from the first recommendation below what runs, and
// scale to zero counts from the first cycle that watched the version,
// whose mark is written on first sight and never moved.
func TestFirstVisitStoresOnlyWhatALaterCycleCannotRebuild(t *testing.T) {
	f := setup(t, 0)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	f.settings.Scale.DownStabilization = 3 * time.Minute
	f.settings.Scale.IdleTimeout = 4 * time.Minute
	t0 := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	drop := t0.Add(time.Minute)
	keys := f.addVersions(t, time.Now(),
		// 2 instances at 60 %, the target, until drop, 10 % after it: one
		// is enough from the cycle whose settled window is after drop.
		load{id: "drops", instances: 2, threads: 1, steps: []time.Time{start, drop}, busy: []float64{0.6, 0.1}, requests: []float64{1, 1}},
		// 2 instances at 10 % from the start: the fresh install must not
		// take it down on first sight.
		load{id: "low", instances: 2, threads: 1, steps: []time.Time{start}, busy: []float64{0.1}, requests: []float64{1}},
		// 1 instance never invoked: to zero once watched for the idle
		// timeout, and not before.
		load{id: "idle", instances: 1, threads: 1, steps: []time.Time{start}, busy: []float64{0}},
	)
	ctx := context.Background()
	running := map[string]int{"drops": 2, "low": 2, "idle": 1}
	for id, k := range keys {
		// NVCF was last asked for what runs, before this autoscaler
		// watched the version (an earlier install, or the bench's seed).
		require.NoError(t, f.store.RecordWrite(ctx, k, running[id], t0.Add(-time.Hour).UnixMilli(), "ok", time.Hour))
	}
	state := func(id string) store.ScalingState {
		st, err := f.store.ReadState(ctx, keys[id])
		require.NoError(t, err)
		return st
	}

	// First sight. The holders store their watch mark and no history; the
	// busy "drops" has no idle fold key either (its first burst goes on).
	c1 := t0
	r := f.decideAt(t, c1)
	for id, k := range keys {
		o := outcomeOf(t, r, k)
		require.Equal(t, running[id], o.Desired, "%s on first sight: %+v", id, o)
		require.Zero(t, f.sim.Calls(k.FunctionID, k.FunctionVersionID), "%s written on first sight", id)
		st := state(id)
		require.True(t, c1.Equal(st.WatchSince), "%s: watched since %s", id, st.WatchSince)
		require.Equal(t, string(tsdb.SourceWorker), st.Source, id)
	}
	require.Empty(t, state("drops").Recommendations, "a history that is only its seed is not stored")
	require.Empty(t, state("idle").Recommendations, "a history that is only its seed is not stored")
	require.NotEmpty(t, state("low").Recommendations, "a recommendation below the seed is stored with it")
	require.Equal(t, store.KeepAlive{}, state("drops").KeepAlive, "a first burst still going on keys no fold")
	require.NotZero(t, state("drops").Cost.Weight, "the learned cost is stored")

	// Second cycle: the same, and the watch mark stays where it was.
	c2 := t0.Add(time.Minute)
	r = f.decideAt(t, c2)
	require.Equal(t, 2, outcomeOf(t, r, keys["drops"]).Desired)
	require.Equal(t, 1, outcomeOf(t, r, keys["idle"]).Desired, "watched for one minute of four")
	require.Empty(t, state("drops").Recommendations)
	require.True(t, c1.Equal(state("idle").WatchSince), "the watch mark is never moved")

	// c3's settled window is the first after drop: one instance would do,
	// but the seed (2 running) stands for the window, and is stored now.
	c3 := t0.Add(3 * time.Minute)
	r = f.decideAt(t, c3)
	o := outcomeOf(t, r, keys["drops"])
	require.Equal(t, 2, o.Desired, "held by stabilization: %+v", o)
	got := decodeHistory(state("drops").Recommendations)
	require.Equal(t, history{{At: c3.UnixMilli(), Count: 2}, {At: c3.UnixMilli(), Count: 1}}, got, "the seed and the first recommendation below it")
	require.Equal(t, 1, outcomeOf(t, r, keys["idle"]).Desired, "watched for three minutes of four")

	// Inside the window counted from c3 it holds; after it, it goes down.
	// The idle version goes to zero four minutes after its first sight.
	r = f.decideAt(t, c3.Add(2*time.Minute))
	require.Equal(t, 2, outcomeOf(t, r, keys["drops"]).Desired, "two minutes into the three-minute window")
	require.Zero(t, outcomeOf(t, r, keys["idle"]).Desired, "watched for five minutes since c1: idle")
	require.Equal(t, string(policy.ReasonScaleToZero), outcomeOf(t, r, keys["idle"]).Reason)
	r = f.decideAt(t, c3.Add(4*time.Minute))
	o = outcomeOf(t, r, keys["drops"])
	require.Equal(t, 1, o.Desired, "past the window: %+v", o)
	require.Equal(t, 1, f.sim.Calls(keys["drops"].FunctionID, keys["drops"].FunctionVersionID), "written down once")
}
