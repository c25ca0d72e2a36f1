package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every comparison of the policy at its boundary value, so that a rule
// written with < where the design says <= (or the reverse) fails a test.
// Mutation testing (gremlins unleash ./shared/policy) found these
// boundaries untested.
//
// Mutants no test can kill, because the program means the same:
//   - finish: MaxScaleDownRate > 0 as >= 0. With rate 0 the limit is
//     floor(base/0) = int(+Inf), which on amd64 is the smallest int, so
//     max(limit, 1) = 1 and no running decision is below 1.
//   - Cost.Learn: c.Weight > 0 as >= 0. A zero weight adds 0 evidence and
//     0 busy seconds either way.
//
// gremlins also reports five mutants as not covered: the four case
// expressions of target's switch and costDecay's initializer (its coverage
// map has no statement for a case expression or a package-level var).
// Each of the five fails these tests when applied by hand.
func TestDecideBoundaries(t *testing.T) {
	idle := Defaults().IdleTimeout
	since := func(ago time.Duration) Input {
		in := idleFor(3, 0, 5)
		in.InvocationsSince = t0.Add(-ago)
		return in
	}
	checkDecisions(t, []decideCase{
		// The idle timeout is reached AT IdleTimeout: a version last
		// invoked exactly that long ago is idle, not recently invoked.
		{"at zero, invoked exactly the idle timeout ago stays", nvcf(), idleFor(0, idle), 0, true, ReasonHoldAtZero, 0},
		{"at zero, invoked just inside the idle timeout comes up", nvcf(), idleFor(0, idle-time.Nanosecond), 1, true, ReasonScaleFromZero, 1},
		{"invoked exactly the idle timeout ago goes to zero", nvcf(), idleFor(3, idle, 5), 0, true, ReasonScaleToZero, 0},
		{"invoked just inside the idle timeout does not", nvcf(), idleFor(3, idle-time.Nanosecond, 5), 2, true, ReasonScaleDown, 2},
		{"evidence spanning exactly the idle timeout goes to zero", nvcf(), since(idle), 0, true, ReasonScaleToZero, 0},
		{"evidence just short of the idle timeout does not", nvcf(), since(idle - time.Nanosecond), 2, true, ReasonScaleDown, 2},

		// Scale to zero needs average and latest strictly below the down
		// threshold.
		{"average at the down threshold keeps the version", nvcf(), idleFor(3, 31*time.Minute, 40, 20), 2, true, ReasonScaleDown, 2},
		{"latest at the down threshold keeps the version", nvcf(), idleFor(3, 31*time.Minute, 0, 0, 30), 3, true, ReasonHoldInBand, 3},

		// Saturation starts AT SaturatedUtilization.
		{"exactly saturated doubles", target(), running(3, SaturatedUtilization), 6, true, ReasonScaleUpSaturated, 6},
		{"just below saturation is proportional", target(), running(3, SaturatedUtilization-0.01), 5, true, ReasonScaleUp, 5},

		// Max clamps only above it: reaching it is not a clamp.
		{"scale up to exactly max is not clamped", nvcf(func(p *Policy) { p.MaxInstances = 6 }), running(5, 80), 6, true, ReasonScaleUp, 6},
		// With the window off, a recommendation stamped after Now (another
		// replica's clock running ahead) does not stabilize either.
		{"stabilization off ignores a recommendation from a clock ahead", nvcf(), withRecent(running(10, 20), rec(-1, 10)), 8, true, ReasonScaleDown, 8},

		// The tolerance band includes its edges (exact in binary: 75/50).
		{"ratio at the tolerance edge holds", target(func(p *Policy) { p.TargetUtilization, p.Tolerance = 50, 0.5 }), running(2, 75), 2, true, ReasonHoldInBand, 2},
	})
}

// A fresh sample that recommends exactly what the settled one does
// changes nothing, not even the detail.
func TestFreshEqualToSettledIsNotARaise(t *testing.T) {
	d := Decide(target(), withFresh(running(4, 60), 60))
	require.Equal(t, ReasonHoldInBand, d.Reason)
	require.NotContains(t, d.Detail, "fresh")
}

// The newest point weighs exactly 1 whatever the decay, so a decay large
// enough to underflow every older weight still averages to the newest
// point instead of 0/0.
func TestWeightedAverageLargeDecay(t *testing.T) {
	require.Equal(t, 0.0, weightedAverage(series(100, 0), 1000))
	require.Equal(t, 7.0, weightedAverage(series(100, 100, 7), 1000))
}
