package policy

import (
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// minutes gives one recommendation a minute, the first firstAgo minutes
// before t0, as the bench passes them (the scale function passes only
// the changes; TestFlapReadsChangePoints checks both read alike).
func minutes(firstAgo int, counts ...int) []Recommendation {
	out := make([]Recommendation, len(counts))
	for i, c := range counts {
		out[i] = rec(firstAgo-i, c)
	}
	return out
}

// flapPolicy is nvcf mode (a scale-down of x0.8 at 10 % busy, whatever
// the history) with the shipped windows: 2 minutes plain, 20 flapping.
func flapPolicy(mut ...func(*Policy)) Policy {
	return nvcf(append([]func(*Policy){func(p *Policy) {
		p.ScaleDownStabilization, p.ScaleDownFlapWindow = 2*time.Minute, 20*time.Minute
	}}, mut...)...)
}

func TestFlapWindow(t *testing.T) {
	// Every case runs 12 instances at 10 % busy: a raw recommendation of
	// 9 (x0.8), which the plain window lets through unless it saw more
	// than 9 in the last 2 minutes. The histories end in a low phase of
	// 3 minutes at 4, so the plain window alone never holds.
	low := []int{4, 4, 4}
	hist := func(counts ...int) Input {
		return withRecent(running(12, 10), minutes(len(counts)+len(low), append(counts, low...)...)...)
	}
	checkDecisions(t, []decideCase{
		// High, low for 6 minutes, high again, low now: a flap, held at
		// the high phase.
		{"flapped: held at the peak", flapPolicy(), hist(12, 12, 12, 12, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: the return may pass the peak", flapPolicy(), hist(10, 10, 10, 10, 4, 4, 4, 4, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: the hold never scales up", flapPolicy(), hist(20, 20, 4, 4, 4, 20, 20), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: a low phase as long as the plain window", flapPolicy(), hist(12, 12, 4, 4, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: a fall of exactly a quarter", flapPolicy(), hist(12, 12, 9, 9, 9, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: a return in steps", flapPolicy(), hist(12, 12, 4, 4, 4, 10, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: no plain window, a one-minute dip", flapPolicy(func(p *Policy) { p.ScaleDownStabilization = 0 }), hist(12, 12, 4, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: a return in steps with a dip between", flapPolicy(), hist(12, 12, 4, 4, 4, 10, 4, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped: the peak is measured after a rise", flapPolicy(), hist(4, 4, 12, 12, 4, 4, 4, 12, 12), 12, true, ReasonStabilizedFlapping, 9},
		{"flapped, but the plain window holds as much: a plain hold", flapPolicy(), withRecent(running(12, 10), minutes(8, 12, 12, 4, 4, 4, 12, 12, 12)...), 12, true, ReasonStabilized, 9},
		{"off: the same history", flapPolicy(func(p *Policy) { p.ScaleDownFlapWindow = 0 }), hist(12, 12, 12, 12, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12), 9, true, ReasonScaleDown, 9},
		{"off: a flap window no wider than the plain one", flapPolicy(func(p *Policy) { p.ScaleDownFlapWindow = 2 * time.Minute }), hist(12, 12, 4, 4, 4, 12, 12), 9, true, ReasonScaleDown, 9},
		{"reference defaults have no flap window", nvcf(func(p *Policy) { p.ScaleDownStabilization = 2 * time.Minute }), hist(12, 12, 4, 4, 4, 12, 12), 9, true, ReasonScaleDown, 9},

		// What is not a flap keeps the plain window.
		{"a first fall", flapPolicy(), hist(12, 12, 12, 12, 12), 9, true, ReasonScaleDown, 9},
		{"a dip shorter than the plain window", flapPolicy(), hist(12, 12, 12, 4, 12, 12, 12), 9, true, ReasonScaleDown, 9},
		{"a fall of less than a quarter", flapPolicy(), hist(12, 12, 10, 10, 10, 12, 12), 9, true, ReasonScaleDown, 9},
		{"a fall of a fifth", flapPolicy(), withRecent(running(20, 10), minutes(10, 20, 20, 16, 16, 16, 20, 20, 4, 4, 4)...), 16, true, ReasonScaleDown, 16},
		{"a partial return", flapPolicy(), hist(12, 12, 4, 4, 4, 10, 10), 9, true, ReasonScaleDown, 9},
		{"through zero: keep-alive's release and cold start", flapPolicy(), hist(12, 12, 0, 0, 0, 12, 12), 9, true, ReasonScaleDown, 9},
		{"a fall of one instance at the bottom", flapPolicy(), withRecent(running(2, 10), minutes(10, 2, 2, 1, 1, 1, 2, 2, 1, 1, 1)...), 1, true, ReasonScaleDown, 1},
		{"flapped: a fall of two instances at the bottom", flapPolicy(), withRecent(running(3, 10), minutes(10, 3, 3, 1, 1, 1, 3, 3, 1, 1, 1)...), 3, true, ReasonStabilizedFlapping, 2},
		{"after zero the peak is measured afresh", flapPolicy(), hist(12, 12, 0, 0, 0, 4, 4, 4, 12, 12), 9, true, ReasonScaleDown, 9},
		{"a return short of a peak a dip set", flapPolicy(), hist(8, 8, 4, 12, 4, 4, 4, 10, 10), 9, true, ReasonScaleDown, 9},
		{"zero forgets a fall", flapPolicy(), hist(12, 12, 4, 4, 4, 10, 0, 0, 0, 12, 12), 9, true, ReasonScaleDown, 9},
		{"a steady load that stepped down", flapPolicy(), hist(12, 12, 12, 12, 12, 12, 8, 8, 8, 8), 9, true, ReasonScaleDown, 9},
	})
}

func TestFlapDetailNamesTheWideWindow(t *testing.T) {
	d := Decide(flapPolicy(), withRecent(running(12, 10), minutes(9, 12, 12, 4, 4, 4, 12, 12, 4, 4)...))
	require.Equal(t, ReasonStabilizedFlapping, d.Reason, d.Detail)
	require.True(t, strings.HasSuffix(d.Detail, "stabilized at 12 (highest in 20m0s, flapping; 2m0s alone: 9)"), d.Detail)
}

func TestFlapWindowLapses(t *testing.T) {
	// A flap that began 19 minutes ago, low since its return: held. Once
	// its first peak has left the window, released.
	flap := []int{12, 12, 4, 4, 4, 12}
	in := func(ago int) Input {
		r := minutes(ago, flap...)
		for m := ago - len(flap); m >= 1; m-- {
			r = append(r, rec(m, 4))
		}
		return withRecent(running(12, 10), r...)
	}
	require.Equal(t, 12, Decide(flapPolicy(), in(19)).Desired)
	// At 21 the peak before the fall is out of the window; what is left
	// (a low phase, the return and the low since) is a first fall.
	d := Decide(flapPolicy(), in(21))
	require.Equal(t, 9, d.Desired, d.Detail)
	require.Equal(t, ReasonScaleDown, d.Reason, d.Detail)
}

// TestFlapReadsChangePoints: the scale function stores only the points
// where the recommendation changed, each in force until the next; the
// low phase's length is then measured to the next change, and the
// decision is the one the minute-by-minute history gives.
func TestFlapReadsChangePoints(t *testing.T) {
	every := minutes(14, 12, 12, 12, 4, 4, 4, 4, 12, 12, 12, 4, 4, 4, 4)
	changes := []Recommendation{rec(14, 12), rec(11, 4), rec(7, 12), rec(4, 4)}
	short := []Recommendation{rec(14, 12), rec(11, 4), rec(10, 12), rec(4, 4)} // a 1-minute dip
	require.Equal(t, 12, Decide(flapPolicy(), withRecent(running(12, 10), every...)).Desired)
	require.Equal(t, 12, Decide(flapPolicy(), withRecent(running(12, 10), changes...)).Desired)
	require.Equal(t, 9, Decide(flapPolicy(), withRecent(running(12, 10), short...)).Desired)
}

func TestRecommendationWindowIsTheWider(t *testing.T) {
	require.Equal(t, 20*time.Minute, flapPolicy().RecommendationWindow())
	require.Equal(t, 5*time.Minute, flapPolicy(func(p *Policy) { p.ScaleDownStabilization = 5 * time.Minute; p.ScaleDownFlapWindow = 0 }).RecommendationWindow())
	require.Zero(t, Defaults().RecommendationWindow())
}

// TestPropertyFlapWindowOnlyHolds: whatever the policy and however the
// load flips, the flap window changes a decision only by holding it
// higher, never above what is running or requested, and never changes
// the raw recommendation.
func TestPropertyFlapWindowOnlyHolds(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	held := 0
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		// A history of runs at two levels, a minute apart, oldest first.
		in.Recent = nil
		lo, hi := r.Intn(20), 1+r.Intn(40)
		level := hi
		for m := 1 + r.Intn(30); m >= 1; m-- {
			if r.Intn(4) == 0 {
				level = lo + hi - level
			}
			in.Recent = append(in.Recent, rec(m, level))
		}
		plain := p
		plain.ScaleDownFlapWindow = 0
		p.ScaleDownFlapWindow = time.Duration(1+r.Intn(30)) * time.Minute
		d, d0 := Decide(p, in), Decide(plain, in)
		require.Equal(t, d0.Valid, d.Valid, "case %d", i)
		require.Equal(t, d0.Recommendation, d.Recommendation, "case %d", i)
		require.GreaterOrEqual(t, d.Desired, d0.Desired, "case %d: the flap window lowered a decision: %s", i, d.Detail)
		if d.Desired != d0.Desired {
			held++
			require.LessOrEqual(t, d.Desired, max(in.Current, lastRequested(in)), "case %d: the flap window scaled up: %s", i, d.Detail)
			require.Contains(t, d.Detail, "flapping", "case %d", i)
		}
	}
	require.Greater(t, held, propertyCases/100, "too few cases held to mean anything")
}
