package harness

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The work must be the same work on every run and machine, or the
// calibration compares nothing: the same checksum from reused buffers as
// from fresh ones (a map not cleared between runs, or input not
// regenerated, would change it).
func TestCalibrationWorkIsFixed(t *testing.T) {
	xs, m := make([]uint64, 2_000_000), make(map[uint64]uint64)
	first := calibrationWork(xs, m)
	require.Equal(t, first, calibrationWork(xs, m), "a second run over the same buffers")
	require.Equal(t, first, calibrationWork(make([]uint64, 2_000_000), make(map[uint64]uint64)), "a run over fresh buffers")

	c := Calibrate(3)
	require.Equal(t, 3, c.Runs)
	require.Positive(t, c.Median)
	require.GreaterOrEqual(t, c.Spread, 1.0)
}
