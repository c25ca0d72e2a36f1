package scale

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The settled window ends at now - step, so cycles 20 s apart fold windows
// 20 s apart that overlap by 50 s, not one window a minute: the share each
// cycle folds (of requests and busy seconds, into cost and backlog) must
// still count every second of traffic once. Over cycles every 20 s, and
// over cycles on the old grid rounded down to the minute for comparison,
// the folded shares add up to the span the windows cover.
func TestUnfoldedCountsEachSecondOnceOnGridsThatMove(t *testing.T) {
	h := &Handler{}
	h.d.Settings.Scale.Window, h.d.Settings.Scale.Step = 70*time.Second, time.Minute
	window := h.d.Settings.Scale.Window
	t0 := time.Date(2026, 11, 30, 12, 0, 7, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		settled func(now time.Time) time.Time
	}{
		{"grid ending at now", func(now time.Time) time.Time { return now.Add(-time.Minute) }},
		{"grid rounded down to the minute", func(now time.Time) time.Time { return now.Truncate(time.Minute).Add(-time.Minute) }},
	} {
		var last, first time.Time
		folded := 0.0 // seconds of traffic folded
		for now := t0; now.Before(t0.Add(10 * time.Minute)); now = now.Add(20 * time.Second) {
			end := tc.settled(now)
			if !last.IsZero() && !end.After(last) {
				continue // the folds ignore a window not after the last (Cost.Learn, Backlog.Fold)
			}
			share := h.unfolded(end, last)
			require.True(t, share > 0 && share <= 1, "%s at %s: share %g", tc.name, now, share)
			if first.IsZero() {
				first = end
			}
			folded += share * window.Seconds()
			last = end
		}
		require.InDelta(t, (last.Sub(first) + window).Seconds(), folded, 1e-9, tc.name)
	}
}
