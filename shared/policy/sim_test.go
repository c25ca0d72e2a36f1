package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// loop is a closed loop of one version: load is the busy work in percent
// of one instance (700 = seven instances fully busy), workers settle within
// a cycle, and each cycle is one minute with one new sample.
type loop struct {
	p       Policy
	now     time.Time
	cur     int
	samples []Sample
	recent  []Recommendation

	// learn has the loop learn a cost and pass the demand it implies, for
	// requests of one busy second each on one thread per instance.
	learn bool
	cost  Cost
}

func (l *loop) step(t *testing.T, load float64) Decision {
	t.Helper()
	l.now = l.now.Add(time.Minute)
	util := min(100, load/float64(l.cur))
	l.samples = append(l.samples, Sample{At: l.now.Add(-time.Minute), Value: util})
	if len(l.samples) > 10 {
		l.samples = l.samples[1:]
	}
	var demand Demand
	if l.learn {
		requestRate := load / 100 // one busy second per request
		l.cost = l.cost.Learn(l.now, util/100*float64(l.cur)*60, requestRate*60, util)
		demand = DemandFromRequests(l.cost, requestRate, 1)
	}
	d := Decide(l.p, Input{
		Now: l.now, Current: l.cur, CurrentKnown: true, LastRequested: l.cur, LastRequestedKnown: true,
		Utilization: l.samples, MetricsOK: true, LastInvokedAt: l.now, Recent: l.recent, Demand: demand,
	})
	require.True(t, d.Valid, "%+v", d)
	l.recent = append(l.recent, Recommendation{At: l.now, Count: d.Recommendation})
	l.cur = d.Desired
	return d
}

// climb runs until the count stops changing and returns every count seen.
func (l *loop) climb(t *testing.T, load float64, limit int) []int {
	t.Helper()
	seq := []int{l.cur}
	for range limit {
		before := l.cur
		l.step(t, load)
		if l.cur == before {
			return seq
		}
		seq = append(seq, l.cur)
	}
	t.Fatalf("no steady state after %d cycles: %v", limit, seq)
	return nil
}

// cyclesToAdequate counts changes until utilization is at or below the up
// threshold: the reference's own notion of enough capacity.
func cyclesToAdequate(seq []int, load, up float64) int {
	for i, n := range seq {
		if load/float64(n) <= up {
			return i
		}
	}
	return -1
}

func TestLoadStepNVCFClimbsLikeTheReference(t *testing.T) {
	l := &loop{p: Defaults(), now: t0, cur: 1}
	seq := l.climb(t, 700, 50)
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 8, 10}, seq)
}

func TestLoadStepTargetReachesCapacityFast(t *testing.T) {
	nvcfSeq := (&loop{p: Defaults(), now: t0, cur: 1}).climb(t, 700, 50)
	nvcfCycles := cyclesToAdequate(nvcfSeq, 700, 70)
	for _, c := range []struct {
		name      string
		p         Policy
		maxCycles int
	}{
		{"rate 10 still doubles", target(func(p *Policy) { p.MaxScaleUpRate, p.ScaleDownStabilization = 10, 5*time.Minute }), 4},
		{"unlimited rate doubles", target(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &loop{p: c.p, now: t0, cur: 1}
			seq := l.climb(t, 700, 50)
			cycles := cyclesToAdequate(seq, 700, 70)
			t.Logf("target mode %v: adequate after %d changes, nvcf after %d (%v)", seq, cycles, nvcfCycles, nvcfSeq)
			require.GreaterOrEqual(t, cycles, 0)
			require.LessOrEqual(t, cycles, c.maxCycles)
			require.Less(t, cycles, nvcfCycles)
			// Steady: it settles near the target and stays there.
			final := l.cur
			for range 30 {
				l.step(t, 700)
				require.Equal(t, final, l.cur, "flapped")
			}
			util := 700 / float64(final)
			require.InDelta(t, 60, util, 60*0.1+1)
		})
	}
}

// With the cost learned at low load, a 10x step is sized from demand in
// one decision instead of doubling for several.
func TestLoadStepWithLearnedCostIsOneStep(t *testing.T) {
	p := target(func(p *Policy) { p.MaxScaleUpRate, p.ScaleDownStabilization = 10, 5*time.Minute })
	l := &loop{p: p, now: t0, cur: 1, learn: true}
	for range 30 {
		l.step(t, 60) // 0.6 req/s: one instance at the target
	}
	require.Equal(t, 1, l.cur)
	require.True(t, l.cost.Known(), "%+v", l.cost)
	require.InDelta(t, 1.0, l.cost.SecondsPerRequest, 1e-9)

	d := l.step(t, 600)
	require.Equal(t, ReasonScaleUpDemand, d.Reason, d.Detail)
	require.Equal(t, 10, d.Desired, "6 busy instances at 60 %%: %s", d.Detail)
	require.Contains(t, d.Detail, "requests x learned cost: 6.0 req/s x 1.00 s / 1 threads")
	seq := append([]int{1}, l.climb(t, 600, 50)...)
	cycles := cyclesToAdequate(seq, 600, 70)
	t.Logf("with a learned cost: %v, adequate after %d change", seq, cycles)
	require.Equal(t, []int{1, 10}, seq)
	require.Equal(t, 1, cycles)

	// Without the cost it doubles: 1, 2, 4, 8, then proportional.
	doubling := (&loop{p: p, now: t0, cur: 1}).climb(t, 600, 50)
	t.Logf("without: %v", doubling)
	require.Equal(t, 4, cyclesToAdequate(doubling, 600, 70), "%v", doubling)
}

func TestLoadDropScalesDownSlowly(t *testing.T) {
	p := target(func(p *Policy) {
		p.MaxScaleUpRate, p.MaxScaleDownRate, p.ScaleDownStabilization = 10, 2, 5*time.Minute
	})
	l := &loop{p: p, now: t0, cur: 1}
	l.climb(t, 700, 50)
	high := l.cur
	// Load falls to one instance's worth: nothing moves for the window.
	var seq []int
	for range 15 {
		l.step(t, 60)
		seq = append(seq, l.cur)
	}
	t.Logf("after the drop from %d: %v", high, seq)
	for i := range 4 {
		require.Equal(t, high, seq[i], "scaled down inside the stabilization window: %v", seq)
	}
	for i := 1; i < len(seq); i++ {
		require.LessOrEqual(t, seq[i], seq[i-1], "went up on falling load: %v", seq)
		require.GreaterOrEqual(t, seq[i], seq[i-1]/2, "stepped down faster than the rate bound: %v", seq)
	}
	require.Equal(t, 1, seq[len(seq)-1])
}

func TestNVCFLoadDropStepsDown(t *testing.T) {
	l := &loop{p: Defaults(), now: t0, cur: 10}
	seq := l.climb(t, 100, 50)
	// 10% -> down by 0.8 until the band holds it.
	require.Equal(t, []int{10, 8, 6, 4, 3}, seq)
}
