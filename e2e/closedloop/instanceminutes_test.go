package closedloop

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/sim"
)

// The run's instance-minutes and a version's load figures integrate the
// same snapshots the same way: each in force until the version's next
// one, terminating instances included, and a function's versions each on
// their own clock. Before, instanceMinutes weighed a snapshot by the time
// since the one before it of any version, so a second version snapshotted
// at the same instant counted for nothing, and it left terminating
// instances out.
func TestInstanceMinutesAgreeWithLoadFigures(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	snap := func(vid string, sec, active, pending, terminating int) sim.Snapshot {
		return sim.Snapshot{FunctionID: "fn", FunctionVersionID: vid, At: t0.Add(time.Duration(sec) * time.Second),
			Active: active, Pending: pending, Terminating: terminating}
	}
	h := []sim.Snapshot{
		snap("v1", 0, 2, 0, 0), snap("v2", 0, 1, 0, 0),
		snap("v1", 30, 2, 2, 0), snap("v2", 30, 1, 0, 1),
		snap("v1", 60, 4, 0, 0), snap("v2", 60, 0, 0, 0),
		{FunctionID: "other", FunctionVersionID: "o1", At: t0, Active: 9},
		{FunctionID: "other", FunctionVersionID: "o1", At: t0.Add(time.Minute), Active: 9},
	}
	// v1: 2 for 30 s, 4 for 30 s = 180 instance-seconds; v2: 1 for 30 s,
	// then 1 active and 1 terminating for 30 s = 90.
	require.InDelta(t, (180.0+90.0)/60, instanceMinutes(h, "fn"), 1e-9)
	v1 := loadFiguresOf(h, nil, "v1", t0, t0.Add(time.Minute)).instanceSeconds
	v2 := loadFiguresOf(h, nil, "v2", t0, t0.Add(time.Minute)).instanceSeconds
	require.InDelta(t, (v1+v2)/60, instanceMinutes(h, "fn"), 1e-9)
	require.InDelta(t, 9.0, instanceMinutes(h, "other"), 1e-9)
	require.Zero(t, instanceMinutes(h, "none"))
}
