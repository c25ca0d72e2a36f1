package scale

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
)

// TestFlapWindowHoldsThroughTheStoredHistory: the flap window sees as far
// back as the recommendation history the scale function stores, which
// must therefore reach the flap window, not only the plain stabilization
// window. A version whose load flips between 75 % and 25 % of 8 instances
// every 5 minutes is scaled down in its first low phase (no flap yet) and
// held at 8 in its second, from the history stored across cycles in the
// real Cassandra.
func TestFlapWindowHoldsThroughTheStoredHistory(t *testing.T) {
	f := setup(t, 0)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	f.settings.Scale.DownStabilization = 2 * time.Minute
	f.settings.Scale.DownFlapWindow = 20 * time.Minute
	t0 := time.Now().Truncate(time.Minute).Add(-20 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	lows := []time.Time{t0.Add(2 * time.Minute), t0.Add(12 * time.Minute)}
	keys := f.addVersions(t, time.Now(), load{id: "flips", instances: 8, threads: 1,
		steps:    []time.Time{start, lows[0], t0.Add(7 * time.Minute), lows[1]},
		busy:     []float64{0.75, 0.25, 0.75, 0.25},
		requests: []float64{6, 2, 6, 2}})
	key := keys["flips"]
	ctx := context.Background()

	// One cycle a minute. A decision at T reads the settled minute before
	// T-1m, so a phase that starts at P shows from the cycle at P+2m: the
	// low phases from minutes 4 and 14, the second high phase from 9.
	desired := map[int]Outcome{}
	for m := 0; m <= 17; m++ {
		o := outcomeOf(t, f.decideAt(t, t0.Add(time.Duration(m)*time.Minute)), key)
		t.Logf("minute %2d: desired %d, %s: %s", m, o.Desired, o.Reason, o.Detail)
		require.True(t, o.Valid, o.Detail)
		desired[m] = o
	}
	// The fourth cycle of each low phase, past the plain 2-minute window
	// (which holds three: the count replaced on the window's first minute
	// still counts).
	first, second := desired[7], desired[17]
	require.Less(t, first.Desired, desired[3].Desired, "the first low phase is no flap yet: scaled down: %+v", first)
	require.Equal(t, desired[13].Desired, second.Desired, "the second low phase follows a flap: held at the high phase: %+v", second)
	require.Equal(t, string(policy.ReasonStabilizedFlapping), second.Reason, second.Detail)
	require.True(t, strings.Contains(second.Detail, "flapping"), second.Detail)

	st, err := f.store.ReadState(ctx, key)
	require.NoError(t, err)
	h := decodeHistory(st.Recommendations)
	require.NotEmpty(t, h)
	require.True(t, time.UnixMilli(h[0].At).Before(lows[0].Add(3*time.Minute)),
		"the stored history reaches back past the first low phase: %v", h)
}
