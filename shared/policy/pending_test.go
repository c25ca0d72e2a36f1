package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Seen in the closed loop: a target-mode cycle asked for 10 instances; the
// next cycle still measured the 2 that were running (8 were provisioning)
// at 59 % and recommended 2. Measured from the running count that was "in
// band" and undid the scale-up; measured from the request it is a scale
// down, which stabilization and the down rate must hold.
func TestPendingInstancesAreNotScaledAwayByStaleMeasurements(t *testing.T) {
	now := time.Unix(1700000000, 0)
	p := Defaults()
	p.Mode = ModeTarget
	p.ScaleDownStabilization = 20 * time.Second
	p.MaxScaleDownRate = 2
	in := Input{
		Now: now, Current: 2, CurrentKnown: true, LastRequested: 10, LastRequestedKnown: true, MetricsOK: true,
		Utilization: []Sample{{At: now.Add(-4 * time.Second), Value: 59.4}},
		Recent:      []Recommendation{{At: now.Add(-4 * time.Second), Count: 10}},
	}
	d := Decide(p, in)
	require.True(t, d.Valid)
	require.Equal(t, 10, d.Desired, "%+v", d)

	// Without stabilization the down rate still bounds the move from the
	// request, not from the lagging count.
	p.ScaleDownStabilization = 0
	d = Decide(p, in)
	require.Equal(t, 5, d.Desired, "%+v", d)
}
