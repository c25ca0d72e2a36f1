package scale

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
	"function/shared/store"
)

// After a load step the queue built while capacity was short is folded
// window by window into the scaling state, and it is what tells the
// decision a drain (hold at the demand size) from a stale cost (double):
// two versions saturated at 2 instances whose request rate reads 1 per
// second, one serving the queue of a 10x step, the other serving requests
// that became twice as heavy as the cost learned before.
func TestBacklogTellsADrainFromAStaleCost(t *testing.T) {
	f := setup(t, 1)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	// Two instances at most, so that no decision writes a count the
	// ingested series (always two workers) would contradict; the reasons
	// and details show what the policy wanted.
	f.settings.Scale.MaxInstances = 2
	t0 := time.Now().Truncate(time.Minute).Add(-6 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	// 2 instances of 1 thread, 1 busy second per request until t0 (1
	// request/s, 50 %). drain: 10 requests/s from t0 to t0+2m, 1 from then
	// on, the workers 100 % busy throughout. stale: 1 request/s all along,
	// each taking 2 busy seconds from t0 on.
	keys := f.addVersions(t, time.Now(),
		load{id: "drain", instances: 2, threads: 1, steps: []time.Time{start, t0, t0.Add(2 * time.Minute)}, busy: []float64{0.5, 1, 1}, requests: []float64{1, 10, 1}},
		load{id: "stale", instances: 2, threads: 1, steps: []time.Time{start, t0}, busy: []float64{0.5, 1}, requests: []float64{1, 1}},
	)
	ctx := context.Background()
	backlogOf := func(id string) store.Backlog {
		st, err := f.store.ReadState(ctx, keys[id])
		require.NoError(t, err)
		return st.Backlog
	}
	// Each cycle's settled window ends a minute before it: the cycle at
	// t0-1m folds [t0-2m, t0-1m], and so on.
	var r BucketResult
	for i, want := range []float64{0, 0, 0, 480, 960, 900} {
		at := t0.Add(-time.Minute + time.Duration(i)*time.Minute)
		r = f.decideAt(t, at)
		b := backlogOf("drain")
		require.InDelta(t, want, b.Requests, 1e-6, "drain backlog after the cycle at t0%+v: %+v", at.Sub(t0), b)
		// An empty queue is written once, not every cycle it stays empty.
		end := at.Add(-time.Minute)
		if want == 0 {
			end = t0.Add(-2 * time.Minute)
		}
		require.True(t, end.Equal(b.WindowEnd), "folded window end %s, want %s", b.WindowEnd, end)
	}
	// The queue of 900 requests explains the busy workers: hold.
	d := outcomeOf(t, r, keys["drain"])
	require.Equal(t, string(policy.ReasonHoldDraining), d.Reason, "%+v", d)
	require.Contains(t, d.Detail, "backlog=900 requests")
	// The stale twin served more than arrived by the learned cost: no
	// queue, so its busy workers prove the cost stale, and it doubles
	// (clamped to the two allowed).
	s := outcomeOf(t, r, keys["stale"])
	require.Equal(t, string(policy.ReasonClampedMax), s.Reason, "%+v", s)
	require.Contains(t, s.Detail, "saturated x2")
	require.Contains(t, s.Detail, "ignored: below the measured busy 2.00 with backlog=0 requests")
	require.Zero(t, backlogOf("stale").Requests)

	// A replayed cycle folds nothing twice.
	f.decideAt(t, t0.Add(4*time.Minute))
	require.InDelta(t, 900, backlogOf("drain").Requests, 1e-6)
}

// The window in which a queue drains is saturated to its end, while the
// estimate at its end already reads empty: that window is still the
// drain, not the proof of a stale cost. Doubling there took a closed
// loop's version sized for its demand (8) to 16 as the climb's queue ran
// out, and it spent more instance-minutes than the slow nvcf mode. A
// replay of the same cycle, which finds the window folded already, reads
// the queue the window began with from the stored state and decides the
// same.
func TestTheWindowThatDrainsTheQueueIsTheDrain(t *testing.T) {
	f := setup(t, 1)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	f.settings.Scale.MaxInstances = 2 // see TestBacklogTellsADrainFromAStaleCost
	t0 := time.Now().Truncate(time.Minute).Add(-8 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	// 2 instances of 1 thread, 1 busy second per request: 1 request/s
	// (50 %) until t0, 4/s for a minute (a queue of 120 builds while the
	// workers serve 2/s), then 1/s again, served at 2/s until the queue is
	// gone at t0+3m; 50 % from then on.
	keys := f.addVersions(t, time.Now(),
		load{id: "drain", instances: 2, threads: 1, steps: []time.Time{start, t0, t0.Add(time.Minute), t0.Add(3 * time.Minute)},
			busy: []float64{0.5, 1, 1, 0.5}, requests: []float64{1, 4, 1, 1}},
	)
	ctx := context.Background()
	var r BucketResult
	for i := range 5 { // the cycle at t0+4m folds (t0+2m, t0+3m]
		r = f.decideAt(t, t0.Add(time.Duration(i)*time.Minute))
	}
	st, err := f.store.ReadState(ctx, keys["drain"])
	require.NoError(t, err)
	require.True(t, t0.Add(3*time.Minute).Equal(st.Backlog.WindowEnd), "%+v", st.Backlog)
	require.Less(t, st.Backlog.Requests, policy.BacklogMinRequests, "the window emptied the queue: %+v", st.Backlog)
	require.GreaterOrEqual(t, st.Backlog.Prior, policy.BacklogMinRequests, "it began with one: %+v", st.Backlog)
	d := outcomeOf(t, r, keys["drain"])
	require.Equal(t, string(policy.ReasonHoldDraining), d.Reason, "%+v", d)
	require.Contains(t, d.Detail, "as its window began")

	replay := f.decideAt(t, t0.Add(4*time.Minute))
	d = outcomeOf(t, replay, keys["drain"])
	require.Equal(t, string(policy.ReasonHoldDraining), d.Reason, "the replay decides the same: %+v", d)
}

// The window that empties a queue can read steady, its requests within
// steadyRequests of its neighbours' and its workers under saturation, and
// ends with no queue left; but its busy seconds served requests from
// before it, so it must teach no cost. The estimate through it says so:
// it began with a queue (policy.Backlog.Serving).
func TestCostIsNotLearnedFromTheWindowThatEmptiesAQueue(t *testing.T) {
	// 3 requests/s for a minute from t0 (a queue of 60 builds), 1.4/s
	// for one more (still saturated: 24 left), then 1/s: the window
	// (t0+2m, t0+3m] serves the 24 and its own 60 at 70 %, requests 60
	// against 84 before and 60 after; 50 % from t0+3m on. The cycle at
	// t0+4m settles the window that empties the queue.
	f, t0, key, state := drainFixture(t, []float64{1, 1, 0.7, 0.5}, []float64{3, 1.4, 1, 1})
	st := state()
	require.True(t, t0.Add(3*time.Minute).Equal(st.Backlog.WindowEnd), "%+v", st.Backlog)
	require.Less(t, st.Backlog.Requests, policy.BacklogMinRequests, "the window emptied the queue: %+v", st.Backlog)
	require.InDelta(t, 24, st.Backlog.Prior, 2, "it began with the climb's last 24: %+v", st.Backlog)
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 0.005, "learned before t0: %+v", st.Cost)

	// The cycle at t0+5m learns from (t0+2m, t0+3m]: 84 busy seconds over
	// 60 requests, were it taught. It is not; the next steady window is.
	f.decideAt(t, t0.Add(5*time.Minute))
	st = state()
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 0.005, "the window that emptied the queue taught the cost: %+v", st.Cost)
	r := f.decideAt(t, t0.Add(6*time.Minute))
	st = state()
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 0.005, "%+v", st.Cost)
	d := outcomeOf(t, r, key)
	require.NotEqual(t, string(policy.ReasonScaleUpSaturated), d.Reason, "%+v", d)
}

// The window after a saturated one reads its end: the requests in flight
// at the saturated window's end, counted before it, finish in it, and a
// window longer than the step averages in part of the saturated one (a
// closed loop read 6.9 busy on 8 instances for a demand of 5 in such a
// window, after the simulator's queue had emptied). It can begin with no
// queue estimated and read steady, so neither the backlog nor Serving
// keeps it from teaching the cost; the saturated window before it does.
func TestCostIsNotLearnedFromTheWindowAfterASaturatedOne(t *testing.T) {
	// 3 requests/s for a minute from t0 (a queue of 60 builds); 1/s for
	// one more, saturated, which the estimate reads as serving the 60 and
	// its own 60 (empty at its end); then 1/s at 60 %: 72 busy seconds
	// over 60 requests, 12 of them the saturated minute's; from t0+3m on the requests
	// got heavier, 1.1 s each (55 %), which steady windows must teach.
	f, t0, _, state := drainFixture(t, []float64{1, 1, 0.6, 0.55}, []float64{3, 1, 1, 1})
	st := state()
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 0.005, "learned before t0: %+v", st.Cost)
	// The cycle at t0+5m learns from (t0+2m, t0+3m], 1.2 s a request
	// were it taught; the cycles after it from the steady windows.
	f.decideAt(t, t0.Add(5*time.Minute))
	st = state()
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 0.005, "the window after the saturated one taught the cost: %+v (backlog %+v)", st.Cost, st.Backlog)
	require.Zero(t, st.Backlog.Prior, "the window after the saturated one began with no queue estimated, so only the saturated window tells: %+v", st.Backlog)
	// The steady windows after it are learned: the drain's stored
	// estimate must not go on saying that they served a queue.
	f.decideAt(t, t0.Add(6*time.Minute))
	f.decideAt(t, t0.Add(7*time.Minute))
	st = state()
	require.Greater(t, st.Cost.SecondsPerRequest, 1.02, "1.1 s requests in the steady windows after the drain were not learned: %+v (backlog %+v)", st.Cost, st.Backlog)
}

// drainFixture is one version of 2 instances of 1 thread, 1 busy second
// per request at 1 request/s (50 %) until t0, and busy and requests per
// minute from t0 on (one value per minute, the last one holding), with
// the minute settings of the tests above: the shape of a queue built and
// drained. It runs the cycles from t0-3m, whose cost windows are the
// steady minutes before t0, to t0+4m, and returns t0, the version and a
// reader of its stored state.
func drainFixture(t *testing.T, busy, requests []float64, settings ...func(*fixture)) (*fixture, time.Time, store.VersionKey, func() store.ScalingState) {
	t.Helper()
	f := setup(t, 1)
	minuteSettings(f)
	for _, set := range settings {
		set(f)
	}
	f.settings.Scale.PolicyMode = "target"
	f.settings.Scale.MaxInstances = 2 // see TestBacklogTellsADrainFromAStaleCost
	t0 := time.Now().Truncate(time.Minute).Add(-9 * time.Minute)
	steps := []time.Time{t0.Add(-15 * time.Minute)}
	for i := range busy {
		steps = append(steps, t0.Add(time.Duration(i)*time.Minute))
	}
	keys := f.addVersions(t, time.Now(),
		load{id: "drain", instances: 2, threads: 1, steps: steps,
			busy: append([]float64{0.5}, busy...), requests: append([]float64{1}, requests...)},
	)
	state := func() store.ScalingState {
		st, err := f.store.ReadState(context.Background(), keys["drain"])
		require.NoError(t, err)
		return st
	}
	for i := -3; i <= 4; i++ {
		f.decideAt(t, t0.Add(time.Duration(i)*time.Minute))
	}
	return f, t0, keys["drain"], state
}

// With windows longer than the step (70 s windows every 60 s in
// production, 8 s every 4 s in the closed loop) a window also spans part
// of the one before it, so the window two steps after a saturated one can
// still reach back to the saturated one's end. Here 2-minute windows every
// minute. The saturated minute (t0+1m, t0+2m] is busy beyond its arrivals
// and the queue before it, so the estimate reads empty through the minute
// after it (t0+2m, t0+3m] at 60 %, which the window ending at t0+4m
// spans. From t0+3m on the requests take 1.1 s (55 %): steady windows
// must teach that.
func TestCostIsNotLearnedFromAWindowThatSpansTheTail(t *testing.T) {
	twoMinuteWindows := func(f *fixture) { f.settings.Scale.Window = 2 * time.Minute }
	f, t0, _, state := drainFixture(t, []float64{1, 1, 0.6, 0.55, 0.55, 0.55}, []float64{3, 0.5, 1, 1, 1, 1}, twoMinuteWindows)
	for i := 5; i <= 6; i++ {
		f.decideAt(t, t0.Add(time.Duration(i)*time.Minute))
		st := state()
		require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 0.005, "cycle at t0+%dm: a window spanning the saturated one's end taught the cost: %+v (backlog %+v)", i, st.Cost, st.Backlog)
		require.Zero(t, st.Backlog.Requests, "the estimate must read empty here, or Serving, not the window's span, keeps the cost: %+v", st.Backlog)
	}
	f.decideAt(t, t0.Add(7*time.Minute))
	f.decideAt(t, t0.Add(8*time.Minute))
	st := state()
	require.Greater(t, st.Cost.SecondsPerRequest, 1.02, "the steady windows after the drain were not learned: %+v", st.Cost)
}
