package closedloop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/e2e/sim"
	"function/e2e/world"
)

// TestFlapWindowHoldsAnOscillatingFunction runs two functions under the
// same load flipping between a high and a low rate, each phase long enough
// for the plain stabilization window to let the count down: one with the
// world's flap window, a twin with it off. After the first return to the
// peak (the first flap) the held one must stay at its high-phase count
// through the next low phase, held by the wide window and saying so,
// while the twin is scaled down in every low phase and back up at every
// rise. Once the load stops flipping the wide window lapses and the held
// one comes down too.
//
// What each kept and what each left queued is measured on the real
// servers and reported; what is asserted is the decisions' causes: the
// writes each was given, the recommendations the plain window held at
// each decision, and the simulator's instances when the load rose.
func TestFlapWindowHoldsAnOscillatingFunction(t *testing.T) {
	// 1 s requests on 1 thread at the 75 % target: 2.6 requests/s sizes 4
	// (at 4 instances anything from 2.25 to 3.3 reads 4, so neither a
	// partial window nor the drain of a rise makes a higher peak), 1
	// request/s sizes 2, half the peak and two instances under it: a low
	// phase. A rise read in steps (2, 3, then 4, as a fresh reading sees
	// part of it) is still the return.
	const (
		high, low = 2.6, 1.0
		highCount = 4
		// The first high phase also covers the processes' start-up; then
		// lows of the 20 s window, a sample's lag and a few cycles down,
		// and highs of a few cycles up.
		first   = 40 * time.Second
		lowFor  = 40 * time.Second
		highFor = 24 * time.Second
	)
	run := time.Now().Unix() % 1_000_000
	held, twin := fmt.Sprintf("flap-held-%d", run), fmt.Sprintf("flap-twin-%d", run)
	hv, tv := held+"-v1", twin+"-v1"
	// High, then low and high twice, then low for good: five flips, the
	// first fall no flap yet, the second low phase after one.
	load := sim.LoadSpec{Kind: "phases", Phases: []sim.LoadSpec{
		{Kind: "constant", Rate: high, For: d(first)},
		{Kind: "constant", Rate: low, For: d(lowFor)},
		{Kind: "constant", Rate: high, For: d(highFor)},
		{Kind: "constant", Rate: low, For: d(lowFor)},
		{Kind: "constant", Rate: high, For: d(highFor)},
		{Kind: "constant", Rate: low},
	}}
	overrides := filepath.Join(t.TempDir(), "overrides.json")
	require.NoError(t, os.WriteFile(overrides, []byte(fmt.Sprintf(`{"functions": {%q: {"scaleDownFlapWindow": "0s"}}}`, twin)), 0o644))
	w := newWorld(t, "flap", map[string]string{"POLICY_OVERRIDES_FILE": overrides},
		fn(held, 1, 8, highCount, load), fn(twin, 1, 8, highCount, load))
	plain := setting(t, w, "SCALE_DOWN_STABILIZATION")
	flap := setting(t, w, "SCALE_DOWN_FLAP_WINDOW")
	// A low phase is held only while the flap before it is inside the
	// window: from the previous fall to the next rise, plus the lag of a
	// sample and a cycle.
	require.GreaterOrEqual(t, flap, 2*lowFor+highFor+2*period, "the world's flap window cannot hold this test's low phases")

	l1 := w.LoadStart.Add(first)
	h1 := l1.Add(lowFor)
	l2 := h1.Add(highFor)
	h2 := l2.Add(lowFor)
	l3 := h2.Add(highFor)
	lows, rises := []time.Time{l1, l2, l3}, []time.Time{h1, h2}

	// The end: the held one written below its high count in the last low
	// phase, once the wide window lapsed (a flap window after its last
	// flap's low phase began, some 75 s into this one).
	require.NoError(t, world.WaitFor(time.Until(l3.Add(flap+30*time.Second)), func() bool {
		n, _ := w.NVCF.Desired(held, hv)
		return time.Now().After(l3) && n < highCount
	}), "%s was not scaled down once the load stopped flipping: %s", held, describeDecisions(w.AllDecisions(), hv))

	writes, ds := settledView(t, w, hv, tv)
	hcs, tcs := attribute(t, writes, ds, hv), attribute(t, writes, ds, tv)
	sampled := func(d world.Decision, from, to time.Time) bool {
		return !d.SampleAt.Before(from) && d.SampleAt.Before(to)
	}
	down := func(d world.Decision) bool { return d.Desired < max(d.Current, d.LastRequested) }
	up := func(d world.Decision) bool { return d.Desired > max(d.Current, d.LastRequested) }
	find := func(cs []cause, from, to time.Time, ok func(cause) bool) *cause {
		for i, c := range cs {
			if sampled(c.Decision, from, to) && ok(c) {
				return &cs[i]
			}
		}
		return nil
	}
	lowered := func(c cause) bool { return down(c.Decision) && c.Write.Requested < highCount }
	raised := func(c cause) bool { return up(c.Decision) && c.Write.Requested >= highCount }
	// heldBack is a decision kept at the high count by the wide window
	// alone: every recommendation the plain window covered was below it.
	heldBack := func(d world.Decision) bool {
		if !d.Valid || d.Desired < highCount || d.Reason != "stabilized_flapping" || !strings.Contains(d.Detail, "flapping") {
			return false
		}
		for _, r := range inForce(ds, d.FunctionVersionID, d.DecidedAt, plain) {
			if r.Recommendation >= highCount {
				return false
			}
		}
		return true
	}
	firstHeldBack := func(from, to time.Time) *world.Decision {
		for i, d := range ds {
			if d.FunctionVersionID == hv && sampled(d, from, to) && heldBack(d) {
				return &ds[i]
			}
		}
		return nil
	}

	// The twin, with the flap window off: down in every low phase by the
	// plain window, back up at every rise.
	for k, from := range lows {
		to := l3.Add(flap + time.Minute)
		if k < len(rises) {
			to = rises[k]
		}
		require.NotNil(t, find(tcs, from, to, lowered), "%s (flap window off) was not scaled down in low phase %d: %s", twin, k+1, describeDecisions(ds, tv))
	}
	for k, from := range rises {
		require.NotNil(t, find(tcs, from, lows[k+1], raised), "%s was not scaled back up at rise %d: %s", twin, k+1, describeDecisions(ds, tv))
	}
	for _, d := range ds {
		if d.FunctionVersionID == tv {
			require.NotContains(t, d.Detail, "flapping", "%s runs with the flap window off: %+v", twin, d)
		}
	}

	// The held one. The first fall is no flap yet: the plain window let it
	// down as it did the twin, and the rise brought it back to the peak.
	require.NotNil(t, find(hcs, l1, h1, lowered), "%s was not scaled down in the first low phase, before any flap: %s", held, describeDecisions(ds, hv))
	require.NotNil(t, find(hcs, h1, l2, raised), "%s did not return to its peak at the first rise: %s", held, describeDecisions(ds, hv))
	// After that return, the next low phase is held: no write below the
	// high count until the load stopped flipping, and decisions whose plain
	// window held only low recommendations kept it up as flapping.
	for _, c := range hcs {
		require.False(t, sampled(c.Decision, l2, l3) && c.Write.Requested < highCount,
			"%s was scaled down to %d in the low phase after its first flap (%s): %s", held, c.Write.Requested, c.Decision.Detail, describeDecisions(ds, hv))
	}
	hold2 := firstHeldBack(l2, l3)
	require.NotNil(t, hold2, "no decision of %s in the second low phase was held up by the flap window alone: %s", held, describeDecisions(ds, hv))

	// The load stopped flipping: the wide window held past the plain one
	// once more, then lapsed a flap window after the last flap's low phase
	// began (its first low recommendation: until then the peak before it
	// was still in force inside the window), and the held one came down.
	hold3 := firstHeldBack(l3, l3.Add(flap+time.Minute))
	require.NotNil(t, hold3, "%s was not held past the plain window in the last low phase: %s", held, describeDecisions(ds, hv))
	release := find(hcs, l3, l3.Add(flap+time.Minute), lowered)
	require.NotNil(t, release, "%s: no scale-down in the last low phase: %s", held, describeDecisions(ds, hv))
	require.NotContains(t, release.Decision.Detail, "flapping", "%s came down while the wide window held: %+v", held, release.Decision)
	var lastFall *world.Decision
	for i, d := range ds {
		if d.FunctionVersionID == hv && d.Valid && !d.SampleAt.Before(l2) && d.Recommendation < highCount {
			lastFall = &ds[i]
			break
		}
	}
	require.NotNil(t, lastFall)
	require.GreaterOrEqual(t, release.Decision.DecidedAt.Sub(lastFall.DecidedAt), flap-time.Millisecond,
		"%s came down before its last flap left the %s window: %s", held, flap, describeDecisions(ds, hv))
	twinDown := find(tcs, l3, l3.Add(flap+time.Minute), lowered)

	// What the hold bought at the second rise: the held one met it with
	// its high-phase instances active and queued nothing; the twin met it
	// with its low-phase count and queued until its new instances came up.
	riseH, riseT := firstLoaded(w.History(), hv, h2, high), firstLoaded(w.History(), tv, h2, high)
	require.NotNil(t, riseH, "the simulator never offered %s the second rise", held)
	require.NotNil(t, riseT, "the simulator never offered %s the second rise", twin)
	require.GreaterOrEqual(t, riseH.Active, highCount, "the second rise found %s below its high count: %+v", held, *riseH)
	require.Less(t, riseT.Active, highCount, "the second rise found %s at its high count: %+v", twin, *riseT)
	heldRise, twinRise := loadFiguresOf(w.History(), writes, hv, h2, l3), loadFiguresOf(w.History(), writes, tv, h2, l3)
	require.Less(t, heldRise.queued, twinRise.queued, "the held function queued as much as its twin at the second rise")

	// Over the oscillation (the first fall to the last), and until the held
	// one came down: fewer scale events for the held one, at the cost of
	// the instances it kept through the low phase.
	heldOsc, twinOsc := loadFiguresOf(w.History(), writes, hv, l1, l3), loadFiguresOf(w.History(), writes, tv, l1, l3)
	require.Less(t, heldOsc.writes, twinOsc.writes, "the flap window did not save scale events: %s", describeDecisions(ds, hv))
	end := release.Write.Time
	heldAll, twinAll := loadFiguresOf(w.History(), writes, hv, l1, end), loadFiguresOf(w.History(), writes, tv, l1, end)
	t.Logf("RESULT held (flap window %s) against twin (off) over the oscillation (%s): %s against %s", flap, l3.Sub(l1), heldOsc, twinOsc)
	t.Logf("RESULT at the second rise: %s against %s; instances active when it came: %d against %d", heldRise, twinRise, riseH.Active, riseT.Active)
	t.Logf("RESULT from the first fall until the held one came down (%s): %s against %s", end.Sub(l1).Round(time.Second), heldAll, twinAll)
	t.Logf("RESULT held back by the flap window alone %.1fs into the second low phase (%s); in the last one held until %.1fs in (twin down at %s), released %.1fs after the last flap's fall: %s",
		hold2.DecidedAt.Sub(l2).Seconds(), hold2.Detail, release.Decision.DecidedAt.Sub(l3).Seconds(), since(twinDown, l3),
		release.Decision.DecidedAt.Sub(lastFall.DecidedAt).Seconds(), release.Decision.Detail)
}

// firstLoaded is the version's first snapshot at or after from that
// offered at least rate: the moment a rise reached its instances.
func firstLoaded(history []sim.Snapshot, vid string, from time.Time, rate float64) *sim.Snapshot {
	for i, s := range history {
		if s.FunctionVersionID == vid && !s.At.Before(from) && s.Load >= rate {
			return &history[i]
		}
	}
	return nil
}

// loadFigures are what a version cost and served over a span.
type loadFigures struct {
	// instanceSeconds are held instances (active, provisioning or
	// terminating: a GPU is taken from request to release); queued are
	// request-seconds spent waiting; overloaded is how long the offered
	// load was above the active instances' capacity; writes are the
	// accepted NVCF writes.
	instanceSeconds, queued, overloaded float64
	writes                              int
}

func (f loadFigures) String() string {
	return fmt.Sprintf("%.0f instance-seconds, %d writes, %.1f queued request-seconds, %.0fs overloaded", f.instanceSeconds, f.writes, f.queued, f.overloaded)
}

// loadFiguresOf integrates a version's snapshots over [from, to), each
// in force until the next (the simulator's 1 thread, 1 s requests: an
// active instance serves 1 request/s), and counts its writes in it.
func loadFiguresOf(history []sim.Snapshot, writes []nvcfsim.Write, vid string, from, to time.Time) loadFigures {
	var f loadFigures
	var prev *sim.Snapshot
	for i, s := range history {
		if s.FunctionVersionID != vid {
			continue
		}
		if prev != nil && s.At.After(from) && prev.At.Before(to) {
			dt := minTime(s.At, to).Sub(maxTime(prev.At, from)).Seconds()
			f.instanceSeconds += float64(prev.Active+prev.Pending+prev.Terminating) * dt
			f.queued += prev.Queue * dt
			if prev.Load > float64(prev.Active) {
				f.overloaded += dt
			}
		}
		prev = &history[i]
	}
	for _, wr := range writes {
		if wr.VersionID == vid && accepted(wr) && !wr.Time.Before(from) && wr.Time.Before(to) {
			f.writes++
		}
	}
	return f
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// since renders how long after from a decision was made, or "never".
func since(c *cause, from time.Time) string {
	if c == nil {
		return "never"
	}
	return fmt.Sprintf("%.1fs in", c.Decision.DecidedAt.Sub(from).Seconds())
}
