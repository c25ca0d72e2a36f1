package scale

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
)

// The histories below are dated in minutes from histStart.
var histStart = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func histAt(m int) time.Time { return histStart.Add(time.Duration(m) * time.Minute) }
func histMs(m int) int64     { return histAt(m).UnixMilli() }

// pt is a recommendation as [unix ms, count], so times compare as instants.
type pt [2]int64

func points(rs []policy.Recommendation) []pt {
	out := []pt{}
	for _, r := range rs {
		out = append(out, pt{r.At.UnixMilli(), int64(r.Count)})
	}
	return out
}

func TestHistoryForPolicy(t *testing.T) {
	at, ms := histAt, histMs
	h := history{{At: ms(0), Count: 10}, {At: ms(4), Count: 4}}
	now := at(6)
	after := func(m int, c int) pt { return pt{ms(m) + 1, int64(c)} }

	// One window: what the scale function always gave, the count
	// replaced on the window's first minute included.
	require.Equal(t, []pt{after(4, 10), after(4, 4)}, points(h.forPolicy(now, 2*time.Minute, 2*time.Minute)))

	// A wider flap window: the points at their times, the change at the
	// stabilization window's start moved just after it behind the count
	// it replaced, as the plain window has always read it.
	got := h.forPolicy(now, 20*time.Minute, 2*time.Minute)
	require.Equal(t, []pt{{ms(0), 10}, after(4, 10), after(4, 4)}, points(got))

	// What the policy makes of it: the plain window holds at 10, and the
	// flap window reads 10 until minute 4, then 4: no return.
	p := policy.Defaults()
	p.ScaleDownStabilization, p.ScaleDownFlapWindow = 2*time.Minute, 20*time.Minute
	in := policy.Input{Now: now, Current: 10, CurrentKnown: true, LastRequested: 10, LastRequestedKnown: true, MetricsOK: true,
		LastInvokedAt: now, Utilization: []policy.Sample{{At: now.Add(-time.Minute), Value: 10}}, Recent: got}
	d := policy.Decide(p, in)
	require.Equal(t, 10, d.Desired, d.Detail)
	require.NotContains(t, d.Detail, "flapping")

	// At the flap window's start: 10 replaced by 4 exactly there. Only
	// the 4 was in force inside the window, so the return to 10 at minute
	// 5 is a rise, not the end of a flap; with the 10 read as in force
	// there (as the plain window reads its start), the fall at minute 10
	// was held at 10 for the whole window.
	h = history{{At: ms(0), Count: 10}, {At: ms(1), Count: 4}, {At: ms(5), Count: 10}, {At: ms(10), Count: 4}}
	in.Now, in.Recent = at(21), h.forPolicy(at(21), 20*time.Minute, 2*time.Minute)
	in.LastInvokedAt, in.Utilization = at(21), []policy.Sample{{At: at(20), Value: 10}}
	d = policy.Decide(p, in)
	require.Equal(t, 8, d.Desired, "%s from %v", d.Detail, points(in.Recent))

	// A seed shares its time with the first recommendation that differs
	// from it; it was in force before, and is the flap's first peak.
	sec := func(s int) int64 { return at(5).Add(time.Duration(s) * time.Second).UnixMilli() }
	seed := history{{At: sec(-100), Count: 4}, {At: sec(-100), Count: 2}, {At: sec(-60), Count: 4}, {At: sec(-30), Count: 2}}
	p.ScaleDownStabilization, p.ScaleDownFlapWindow = 20*time.Second, 2*time.Minute
	in.Now, in.Recent = at(5), seed.forPolicy(at(5), 2*time.Minute, 20*time.Second)
	in.Current, in.LastRequested, in.LastInvokedAt = 4, 4, at(5)
	in.Utilization = []policy.Sample{{At: at(5).Add(-4 * time.Second), Value: 25}}
	d = policy.Decide(p, in)
	require.Contains(t, d.Detail, "flapping", "from %v", points(in.Recent))

	// A flap window with no plain window: only what was in force at the
	// flap window's start, at its start, then the points.
	h = history{{At: ms(0), Count: 10}, {At: ms(1), Count: 4}, {At: ms(5), Count: 10}}
	require.Equal(t, []pt{after(1, 4), {ms(5), 10}}, points(h.forPolicy(at(21), 20*time.Minute, 0)))

	require.Nil(t, h.forPolicy(now, 0, 0), "no window, no history")
	require.Nil(t, history(nil).forPolicy(now, 20*time.Minute, 2*time.Minute))
}

// Points made inside the windows are read at their times: in a plain
// window (no flap window) after the count in force at its start, in a
// flap window's plain part after that window's start. A rise inside the
// plain window holds a scale-down however the count was at its start.
func TestHistoryForPolicyReadsPointsInsideTheWindows(t *testing.T) {
	at, ms := histAt, histMs
	h := history{{At: ms(0), Count: 4}, {At: ms(5), Count: 10}}
	now := at(6)

	require.Equal(t, []pt{{ms(4) + 1, 4}, {ms(5), 10}}, points(h.forPolicy(now, 2*time.Minute, 2*time.Minute)),
		"only the count in force at the start is dated there; the rise stays at its time")
	got := h.forPolicy(now, 20*time.Minute, 2*time.Minute)
	require.Equal(t, []pt{{ms(0), 4}, {ms(4) + 1, 4}, {ms(5), 10}}, points(got))

	// Fifteen minutes later the flap window starts after the first point,
	// which is still the count in force at its start.
	require.Equal(t, []pt{{ms(1) + 1, 4}, {ms(5), 10}}, points(h.forPolicy(at(21), 20*time.Minute, 0)))

	p := policy.Defaults()
	p.ScaleDownStabilization, p.ScaleDownFlapWindow = 2*time.Minute, 20*time.Minute
	d := policy.Decide(p, policy.Input{Now: now, Current: 10, CurrentKnown: true, LastRequested: 10, LastRequestedKnown: true,
		MetricsOK: true, LastInvokedAt: now, Utilization: []policy.Sample{{At: now.Add(-time.Minute), Value: 10}}, Recent: got})
	require.Equal(t, 10, d.Desired, "the rise at minute 5 holds the plain window: %s", d.Detail)
}

// add keeps the points inside the window and the last one at or before
// its start (the count in force there), drops the rest, and says when
// the result differs from what it was given: a pruned history is worth
// storing even when the recommendation did not move. With no window
// there is nothing to keep.
func TestHistoryAddKeepsWhatTheWindowReads(t *testing.T) {
	ms := func(m float64) int64 { return histStart.Add(time.Duration(m * float64(time.Minute))).UnixMilli() }
	now, window := histAt(20), 10*time.Minute // the window starts at minute 10
	for _, c := range []struct {
		name    string
		h, want history
		rec     int
		changed bool
	}{
		{"the count in force at the start is kept, the one before it dropped",
			history{{ms(0), 8}, {ms(5), 6}, {ms(10.5), 4}}, history{{ms(5), 6}, {ms(10.5), 4}}, 4, true},
		{"a change exactly at the start is the count in force there",
			history{{ms(0), 8}, {ms(10), 6}, {ms(15), 4}}, history{{ms(10), 6}, {ms(15), 4}}, 4, true},
		{"a seed sharing that time with the change is dropped with what it replaced",
			history{{ms(10), 8}, {ms(10), 6}, {ms(15), 4}}, history{{ms(10), 6}, {ms(15), 4}}, 4, true},
		{"nothing to drop, nothing moved",
			history{{ms(5), 6}, {ms(15), 4}}, history{{ms(5), 6}, {ms(15), 4}}, 4, false},
		{"a new count is added at now",
			history{{ms(5), 6}}, history{{ms(5), 6}, {ms(20), 3}}, 3, true},
	} {
		got, changed := c.h.add(now, c.rec, window)
		require.Equal(t, c.want, got, c.name)
		require.Equal(t, c.changed, changed, c.name)
	}
	h := history{{ms(0), 8}, {ms(5), 6}}
	got, changed := h.add(now, 3, 0)
	require.False(t, changed, "no window: nothing to store")
	require.Equal(t, h, got)
}
