package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// Per-version gauges are four series per version; switched off, a decision
// leaves none behind, and the aggregate metrics still count.
func TestPerVersionGaugesCanBeTurnedOff(t *testing.T) {
	on := NewMetrics()
	on.VersionDecision("f", "v", 2, 3, 55)
	on.VersionStatus("f", "v", StatusOK)
	require.Equal(t, 1, testutil.CollectAndCount(on.DesiredInstances))
	require.Equal(t, 3.0, testutil.ToFloat64(on.DesiredInstances.WithLabelValues("f", "v")))

	off := NewMetrics()
	off.PerVersion = false
	off.VersionDecision("f", "v", 2, 3, 55)
	off.VersionStatus("f", "v", StatusOK)
	require.Equal(t, 0, testutil.CollectAndCount(off.DesiredInstances))
	require.Equal(t, 0, testutil.CollectAndCount(off.CurrentInstances))
	require.Equal(t, 0, testutil.CollectAndCount(off.Utilization))
	require.Equal(t, 0, testutil.CollectAndCount(off.Status))
}
