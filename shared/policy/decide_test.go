package policy

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// series stamps values one minute apart, the newest at the last settled
// minute before t0.
func series(vals ...float64) []Sample {
	out := make([]Sample, len(vals))
	for i, v := range vals {
		out[i] = Sample{At: t0.Add(-time.Duration(len(vals)-i) * time.Minute), Value: v}
	}
	return out
}

// running is a healthy, recently invoked version at cur instances.
func running(cur int, vals ...float64) Input {
	return Input{
		Now:                t0,
		Current:            cur,
		CurrentKnown:       true,
		LastRequested:      cur,
		LastRequestedKnown: true,
		Utilization:        series(vals...),
		MetricsOK:          true,
		LastInvokedAt:      t0.Add(-time.Minute),
	}
}

func nvcf(mut ...func(*Policy)) Policy {
	p := Defaults()
	for _, m := range mut {
		m(&p)
	}
	return p
}

func target(mut ...func(*Policy)) Policy {
	return nvcf(append([]func(*Policy){func(p *Policy) { p.Mode = ModeTarget }}, mut...)...)
}

func TestDecide(t *testing.T) {
	nan := math.NaN()
	sticky3of5 := Stickiness{Size: 5 * time.Minute, Threshold: 3 * time.Minute}
	checkDecisions(t, []decideCase{
		// NVCF mode, the reference's static policy.
		{"nvcf up", nvcf(), running(5, 50, 80), 6, true, ReasonScaleUp, 6},
		{"nvcf up from one", nvcf(), running(1, 71), 2, true, ReasonScaleUp, 2},
		{"nvcf up rounds up", nvcf(), running(8, 90), 10, true, ReasonScaleUp, 10},
		{"nvcf down", nvcf(), running(5, 20), 4, true, ReasonScaleDown, 4},
		{"nvcf down rounds down", nvcf(), running(3, 20), 2, true, ReasonScaleDown, 2},
		{"nvcf down never below one", nvcf(), running(1, 5), 1, true, ReasonScaleDown, 1},
		{"nvcf in band", nvcf(), running(5, 50), 5, true, ReasonHoldInBand, 5},
		{"nvcf at up threshold holds", nvcf(), running(5, 70), 5, true, ReasonHoldInBand, 5},
		{"nvcf at down threshold holds", nvcf(), running(5, 30), 5, true, ReasonHoldInBand, 5},
		{"nvcf uses latest not average", nvcf(), running(5, 10, 10, 10, 75), 6, true, ReasonScaleUp, 6},
		{"nvcf down stickiness not met", nvcf(func(p *Policy) { p.DownStickiness = sticky3of5 }), running(5, 50, 50, 20, 50, 20), 5, true, ReasonHoldNotSticky, 5},
		{"nvcf down stickiness met", nvcf(func(p *Policy) { p.DownStickiness = sticky3of5 }), running(5, 20, 20, 50, 50, 20), 4, true, ReasonScaleDown, 4},
		{"float error does not add an instance", nvcf(func(p *Policy) { p.UpFactor = 1.1 }), running(50, 90), 55, true, ReasonScaleUp, 55},
		{"float error does not drop an instance", nvcf(func(p *Policy) { p.DownFactor = 0.29 }), running(100, 10), 29, true, ReasonScaleDown, 29},
		{"custom factors", nvcf(func(p *Policy) { p.UpFactor, p.DownFactor = 2, 0.5 }), running(5, 90), 10, true, ReasonScaleUp, 10},

		// Unknown inputs hold and never scale down.
		{"metrics error holds", nvcf(), func() Input { in := running(5, 5); in.MetricsOK = false; return in }(), 5, false, ReasonHoldMetricsError, -1},
		{"metrics error keeps last request", nvcf(), func() Input { in := running(5); in.MetricsOK, in.LastRequested = false, 8; return in }(), 8, false, ReasonHoldMetricsError, -1},
		{"metrics error keeps min", nvcf(func(p *Policy) { p.MinInstances = 7 }), func() Input { in := running(5); in.MetricsOK = false; return in }(), 7, false, ReasonHoldMetricsError, -1},
		{"no samples holds", nvcf(), running(5), 5, false, ReasonHoldNoMetrics, -1},
		{"NaN latest holds", nvcf(), running(5, 10, 10, nan), 5, false, ReasonHoldUtilizationUnknown, -1},
		{"Inf latest holds", nvcf(), running(5, 10, math.Inf(-1)), 5, false, ReasonHoldUtilizationUnknown, -1},
		{"unknown current holds", nvcf(), func() Input { in := running(5, 10); in.CurrentKnown = false; return in }(), 5, false, ReasonHoldCurrentUnknown, -1},
		{"negative current holds", nvcf(), func() Input { in := running(-1, 10); in.LastRequested = 4; return in }(), 4, false, ReasonHoldCurrentUnknown, -1},
		{"waiting for workers", nvcf(), func() Input { in := running(0, 90); in.LastRequested = 3; return in }(), 3, false, ReasonHoldWaitingForWorkers, -1},
		{"invalid policy holds", nvcf(func(p *Policy) { p.UpFactor = 0.5 }), running(5, 5), 5, false, ReasonInvalidPolicy, -1},

		// At zero.
		{"from zero when invoked", nvcf(), running(0), 1, true, ReasonScaleFromZero, 1},
		{"from zero to min", nvcf(func(p *Policy) { p.MinInstances = 3 }), running(0), 3, true, ReasonScaleFromZero, -1},
		{"stays at zero when idle", nvcf(), func() Input { in := running(0); in.LastInvokedAt = time.Time{}; return in }(), 0, true, ReasonHoldAtZero, 0},
		{"stays at zero after old invocation", nvcf(), func() Input { in := running(0); in.LastInvokedAt = t0.Add(-31 * time.Minute); return in }(), 0, true, ReasonHoldAtZero, 0},
		{"zero without scale to zero comes up", nvcf(func(p *Policy) { p.ScaleToZero = false }), func() Input { in := running(0); in.LastInvokedAt = time.Time{}; return in }(), 1, true, ReasonScaleFromZero, 1},
		{"zero raised to min", nvcf(func(p *Policy) { p.MinInstances = 2 }), func() Input { in := running(0); in.LastInvokedAt = time.Time{}; return in }(), 2, true, ReasonClampedMin, -1},
		{"unknown requested at zero comes up", nvcf(), func() Input { in := running(0, 50); in.LastRequestedKnown = false; return in }(), 1, true, ReasonScaleFromZero, 1},

		// Scale to zero.
		{"idle to zero", nvcf(), idleFor(3, 31*time.Minute, 5, 5, 5), 0, true, ReasonScaleToZero, 0},
		{"idle needs the whole timeout", nvcf(), idleFor(3, 29*time.Minute, 5, 5, 5), 2, true, ReasonScaleDown, 2},
		{"idle off", nvcf(func(p *Policy) { p.ScaleToZero = false }), idleFor(3, 31*time.Minute, 5, 5, 5), 2, true, ReasonScaleDown, 2},
		{"idle blocked by average", nvcf(), idleFor(3, 31*time.Minute, 90, 90, 90, 90, 5), 2, true, ReasonScaleDown, 2},
		{"idle blocked by latest", nvcf(), idleFor(3, 31*time.Minute, 0, 0, 0, 0, 40), 3, true, ReasonHoldInBand, 3},
		{"idle with decay", nvcf(func(p *Policy) { p.Decay = 1 }), idleFor(3, 31*time.Minute, 90, 90, 90, 0, 0), 0, true, ReasonScaleToZero, 0},
		{"idle without decay is a mean", nvcf(), idleFor(3, 31*time.Minute, 90, 90, 90, 0, 0), 2, true, ReasonScaleDown, 2},
		{"idle clamps to min", nvcf(func(p *Policy) { p.MinInstances = 2 }), idleFor(3, 31*time.Minute, 5), 2, true, ReasonClampedMin, 0},
		{"idle never on NaN latest", nvcf(), idleFor(3, 31*time.Minute, 5, nan), 3, false, ReasonHoldUtilizationUnknown, -1},
		{"idle never without samples", nvcf(), idleFor(3, 31*time.Minute), 3, false, ReasonHoldNoMetrics, -1},
		{"never invoked, short evidence is not idle", nvcf(), idleFor(3, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5), 2, true, ReasonScaleDown, 2},
		{"never invoked, evidence covers the timeout", nvcf(), func() Input {
			in := idleFor(3, 0, 5, 5)
			in.InvocationsSince = t0.Add(-40 * time.Minute)
			return in
		}(), 0, true, ReasonScaleToZero, 0},
		{"never invoked, samples cover the timeout", nvcf(), idleFor(3, 0, make([]float64, 31)...), 0, true, ReasonScaleToZero, 0},
		{"idle in target mode", target(), idleFor(3, 31*time.Minute, 5), 0, true, ReasonScaleToZero, 0},

		// Target mode.
		{"target up", target(), running(4, 90), 6, true, ReasonScaleUp, 6},
		{"target down", target(), running(10, 30), 5, true, ReasonScaleDown, 5},
		{"target within tolerance", target(), running(4, 64), 4, true, ReasonHoldInBand, 4},
		{"target tolerance on ratio not on count", target(), running(1, 65), 1, true, ReasonHoldInBand, 1},
		{"target no load keeps one", target(), running(10, 0), 1, true, ReasonScaleDown, 1},
		{"target down rounds up to capacity", target(), running(3, 40), 2, true, ReasonScaleDown, 2},
		{"target saturated doubles", target(), running(3, 100), 6, true, ReasonScaleUpSaturated, 6},
		{"target saturated doubles under the rate", target(func(p *Policy) { p.MaxScaleUpRate = 10 }), running(3, 97), 6, true, ReasonScaleUpSaturated, 6},
		{"target saturated above 100", target(), running(2, 130), 5, true, ReasonScaleUpSaturated, 5},
		{"target saturated small rate", target(func(p *Policy) { p.MaxScaleUpRate = 1.5 }), running(3, 100), 5, true, ReasonScaleUpSaturated, 5},
		{"target custom", target(func(p *Policy) { p.TargetUtilization, p.Tolerance = 50, 0 }), running(4, 55), 5, true, ReasonScaleUp, 5},

		// Stabilization, rate bounds, clamping.
		{"stabilized at window max", nvcf(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), withRecent(running(10, 20), rec(2, 10), rec(1, 9)), 10, true, ReasonStabilized, 8},
		{"stabilized between", nvcf(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), withRecent(running(10, 20), rec(3, 9), rec(1, 8)), 9, true, ReasonStabilized, 8},
		{"stabilization forgets old", nvcf(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), withRecent(running(10, 20), rec(5, 10), rec(6, 12)), 8, true, ReasonScaleDown, 8},
		{"stabilization never scales up", nvcf(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), withRecent(running(10, 20), rec(1, 20)), 10, true, ReasonStabilized, 8},
		{"stabilization leaves up moves", nvcf(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), withRecent(running(5, 80), rec(1, 3)), 6, true, ReasonScaleUp, 6},
		{"stabilization off", nvcf(), withRecent(running(10, 20), rec(1, 10)), 8, true, ReasonScaleDown, 8},
		{"stabilization does not delay idle", nvcf(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute }), withRecent(idleFor(3, 31*time.Minute, 5), rec(1, 3)), 0, true, ReasonScaleToZero, 0},
		{"rate limit up", target(func(p *Policy) { p.TargetUtilization, p.MaxScaleUpRate = 10, 3 }), running(2, 94), 6, true, ReasonRateLimitedUp, 19},
		{"rate limit down", target(func(p *Policy) { p.MaxScaleDownRate = 2 }), running(10, 6), 5, true, ReasonRateLimitedDown, 1},
		{"rate limit down rounds down", target(func(p *Policy) { p.MaxScaleDownRate = 2 }), running(3, 1), 1, true, ReasonScaleDown, 1},
		{"rate limit down after stabilization", target(func(p *Policy) { p.MaxScaleDownRate = 2; p.ScaleDownStabilization = time.Minute }), withRecent(running(20, 6), rec(0, 18)), 18, true, ReasonStabilized, 2},
		{"rate limit does not hold idle", nvcf(func(p *Policy) { p.MaxScaleDownRate = 2 }), idleFor(8, 31*time.Minute, 5), 0, true, ReasonScaleToZero, 0},
		{"clamp max", nvcf(func(p *Policy) { p.MaxInstances = 5 }), running(5, 80), 5, true, ReasonClampedMax, 6},
		{"clamp max pulls down", nvcf(func(p *Policy) { p.MaxInstances = 5 }), running(8, 50), 5, true, ReasonClampedMax, 8},
		{"clamp min", nvcf(func(p *Policy) { p.MinInstances = 5 }), running(5, 20), 5, true, ReasonClampedMin, 4},
		{"clamp min pulls up", nvcf(func(p *Policy) { p.MinInstances = 5 }), running(2, 50), 5, true, ReasonClampedMin, 2},
		{"clamp beats rate", nvcf(func(p *Policy) { p.MinInstances, p.MaxScaleUpRate = 10, 2 }), running(2, 50), 10, true, ReasonClampedMin, 2},
	})
}

// decideCase is one row of a Decide table.
type decideCase struct {
	name   string
	p      Policy
	in     Input
	want   int
	valid  bool
	reason Reason
	rec    int // checked only when non-negative
}

func checkDecisions(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.p, c.in)
			require.Equal(t, c.want, d.Desired, "detail: %s", d.Detail)
			require.Equal(t, c.valid, d.Valid, "detail: %s", d.Detail)
			require.Equal(t, c.reason, d.Reason, "detail: %s", d.Detail)
			if c.rec >= 0 {
				require.Equal(t, c.rec, d.Recommendation, "detail: %s", d.Detail)
			}
			require.NotEmpty(t, d.Detail)
		})
	}
}

// idleFor is a version at cur last invoked ago (0: never seen).
func idleFor(cur int, ago time.Duration, vals ...float64) Input {
	in := running(cur, vals...)
	in.LastInvokedAt = time.Time{}
	if ago > 0 {
		in.LastInvokedAt = t0.Add(-ago)
	}
	return in
}

func rec(minutesAgo, count int) Recommendation {
	return Recommendation{At: t0.Add(-time.Duration(minutesAgo) * time.Minute), Count: count}
}

func withRecent(in Input, r ...Recommendation) Input {
	in.Recent = r
	return in
}

func TestWeightedAverage(t *testing.T) {
	require.InDelta(t, 20, weightedAverage(series(60, 0, 0), 0), 1e-9)
	require.InDelta(t, 10, weightedAverage(series(math.NaN(), 10, math.Inf(1)), 0), 1e-9, "unknown points are skipped, not zero")
	w0, w1 := math.Exp(-1), 1.0
	require.InDelta(t, (w0*100+w1*0)/(w0+w1), weightedAverage(series(100, 0), 1), 1e-9)
	require.True(t, math.IsNaN(weightedAverage(series(math.NaN()), 0)))
	require.True(t, math.IsNaN(weightedAverage(nil, 0)))
}

func TestDetailCarriesNumbers(t *testing.T) {
	d := Decide(Defaults(), running(5, 42.5, 80))
	require.Contains(t, d.Detail, "latest=80.0")
	require.Contains(t, d.Detail, "avg=61.2")
	require.Contains(t, d.Detail, "cur=5")
	d = Decide(nvcf(func(p *Policy) { p.UpFactor = 0 }), running(5, 80))
	require.True(t, strings.Contains(d.Detail, "upFactor"), d.Detail)
}

func BenchmarkDecide(b *testing.B) {
	samples := []float64{40, 45, 50, 55, 60, 65, 70, 75, 80, 85}
	for _, bc := range []struct {
		name string
		p    Policy
	}{
		{"nvcf", nvcf(func(p *Policy) { p.UpStickiness = Stickiness{Size: 5 * time.Minute, Threshold: 3 * time.Minute} })},
		{"target", target(func(p *Policy) { p.ScaleDownStabilization, p.MaxScaleUpRate = 5*time.Minute, 10 })},
	} {
		in := withRecent(running(12, samples...), rec(1, 12), rec(2, 14), rec(4, 10))
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Decide(bc.p, in)
			}
		})
	}
}
