package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

type fixed map[string]int

func (f fixed) Desired(fid, vid string) (int, bool) { d, ok := f[fid+"/"+vid]; return d, ok }

func TestSaturatedFunctionShowsFullUtilizationAndQueues(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	// 2 instances x 1 thread, 0.5 s per request: capacity 4 req/s; offer 10.
	dp := NewDataPlane(t0, nil, Options{}, FunctionSpec{FunctionID: "f", FunctionVersionID: "v", ServiceTime: 500 * time.Millisecond,
		ThreadsPerInstance: 1, InitialInstances: 2, Load: func(time.Duration) float64 { return 10 }})
	for i := 1; i <= 10; i++ {
		dp.Advance(t0.Add(time.Duration(i) * time.Second))
	}
	s := dp.Snapshots()[0]
	require.InDelta(t, 100, s.Utilization, 0.01)
	require.Greater(t, s.Queue, 10.0, "excess demand must queue")
	require.InDelta(t, 5, s.Demand, 1e-9, "10 req/s x 0.5 s on 1 thread keeps 5 instances busy, whatever runs")

	// Light load: 1 req/s x 0.5 s on 2 threads = 25 %.
	dp2 := NewDataPlane(t0, nil, Options{}, FunctionSpec{FunctionID: "f", FunctionVersionID: "v", ServiceTime: 500 * time.Millisecond,
		InitialInstances: 2, Load: func(time.Duration) float64 { return 1 }})
	dp2.Advance(t0.Add(time.Second))
	require.InDelta(t, 25, dp2.Snapshots()[0].Utilization, 0.01)
}

func TestInstancesFollowDesiredWithLifecycle(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	ctrl := fixed{"f/v": 3}
	dp := NewDataPlane(t0, ctrl, Options{ProvisioningDelay: 5 * time.Second, TerminationDelay: 2 * time.Second},
		FunctionSpec{FunctionID: "f", FunctionVersionID: "v", InitialInstances: 1})
	dp.Advance(t0.Add(time.Second))
	s := dp.Snapshots()[0]
	require.Equal(t, 1, s.Active)
	require.Equal(t, 2, s.Pending)
	dp.Advance(t0.Add(7 * time.Second))
	s = dp.Snapshots()[0]
	require.Equal(t, 3, s.Active)

	ctrl["f/v"] = 1
	dp.Advance(t0.Add(8 * time.Second))
	s = dp.Snapshots()[0]
	require.Equal(t, 1, s.Active)
	require.Equal(t, 2, s.Terminating)
	dp.Advance(t0.Add(11 * time.Second))
	s = dp.Snapshots()[0]
	require.Equal(t, 0, s.Terminating)

	// Only active workers export series; the request counter is per version.
	reg := prometheus.NewRegistry()
	reg.MustRegister(dp)
	n, err := testutil.GatherAndCount(reg, MetricThreadCount)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP function_request_total Requests routed to the function version.
# TYPE function_request_total counter
function_request_total{environment="prod",function_id="f",function_version_id="v",nca_id=""} 0
`), MetricRequests))
}

func TestScenarioParsing(t *testing.T) {
	s, err := ParseScenario([]byte(`{"name":"x","duration":"2m","functions":[{"functionId":"f","functionVersionId":"v","maxInstances":10,
		"serviceTime":"200ms","load":{"kind":"phases","phases":[{"kind":"constant","rate":1,"for":"30s"},{"kind":"step","base":1,"to":10,"at":"10s"}]}}],
		"faults":[{"at":"60s","kind":"tsdb_down","for":"20s"}]}`))
	require.NoError(t, err)
	specs, err := s.Specs()
	require.NoError(t, err)
	l := specs[0].Load
	require.Equal(t, 1.0, l(5*time.Second))
	require.Equal(t, 1.0, l(35*time.Second))
	require.Equal(t, 10.0, l(45*time.Second))

	_, err = ParseScenario([]byte(`{"functions":[{"functionId":"f","functionVersionId":"v","maxInstances":1,"load":{"kind":"wave"}}]}`))
	require.ErrorContains(t, err, "wave")
	_, err = ParseScenario([]byte(`{"functions":[],"typo":1}`))
	require.ErrorContains(t, err, "typo")
}
