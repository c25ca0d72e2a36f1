package discovery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/buckets"
	"function/shared/testenv"
	"function/shared/tsdb/tsdbtest"
)

// A mixed fleet in two environments: discovery upserts exactly the
// versions of the configured environment, through all three sources, each
// row carrying the source its series point to; ignoring the environment
// adds the other one's.
func TestDiscoveryFindsAMixedFleetPerEnvironment(t *testing.T) {
	f := setup(t)
	vm := testenv.RequireVM(t)
	now := time.Now()
	start := now.Add(-5 * time.Minute)
	tag := func(env string) map[string]string {
		m := map[string]string{"test_env": f.run}
		if env != "" {
			m["environment"] = env
		}
		return m
	}
	extra := map[string]string{"test_env": f.run}
	series := tsdbtest.Generate([]tsdbtest.Worker{
		{FunctionID: "mw", FunctionVersionID: "mw-prod", NcaID: "nca", Instances: 1, Utilization: 0.5, RequestsPerSecond: 1, Extra: tag("prod")},
		{FunctionID: "mw", FunctionVersionID: "mw-stage", NcaID: "nca", Instances: 1, Utilization: 0.5, Extra: tag("stage")},
	}, start, now)
	series = append(series, tsdbtest.GenerateGateway([]tsdbtest.GatewayFunction{
		{FunctionID: "mg", RequestsPerSecond: 2, InFlight: 1, Env: "production", Extra: extra, Versions: []tsdbtest.GatewayVersion{
			{ID: "mg-1", NcaID: "nca-g", Instances: 1, Concurrency: 4}, {ID: "mg-2", NcaID: "nca-g", Concurrency: 4}}},
		{FunctionID: "mgs", RequestsPerSecond: 2, InFlight: 1, Env: "staging", Extra: extra, Versions: []tsdbtest.GatewayVersion{
			{ID: "mgs-1", NcaID: "nca-g", Instances: 1, Concurrency: 4}}},
	}, start, now)...)
	series = append(series, tsdbtest.GenerateControlPlane([]tsdbtest.ControlPlaneVersion{
		{FunctionID: "mb", FunctionVersionID: "mb-prod", NcaID: "nca-b", Instances: []float64{1.5}, Concurrency: 2, InFlight: 1, Env: "production", Extra: extra},
		{FunctionID: "mb", FunctionVersionID: "mb-stage", NcaID: "nca-b", Instances: []float64{1}, Concurrency: 2, InFlight: 1, Env: "staging", Extra: extra},
	}, start, now)...)
	require.NoError(t, tsdbtest.ImportVM(context.Background(), vm, series))

	// The fixture's 300 worker versions carry no environment label: with a
	// filter they are not this environment's.
	prod := map[string]string{"mw-prod": "worker", "mg-1": "gateway", "mg-2": "gateway", "mb-prod": "control_plane"}
	all := map[string]string{"mw-stage": "worker", "mgs-1": "gateway", "mb-stage": "control_plane"}
	for k, v := range prod {
		all[k] = v
	}
	for k := range f.want {
		all[k] = "worker"
	}

	sk := newSink(t, 0, false)
	for i, tc := range []struct {
		name   string
		ignore bool
		want   map[string]string
	}{{"production only", false, prod}, {"ignore env", true, all}} {
		f.settings.Environment, f.settings.IgnoreEnv = "production", tc.ignore
		h := f.handler(t, sk.srv.URL, nil)
		if i > 0 { // the first cycle keeps its lease until its TTL
			require.NoError(t, f.store.ReleaseLock(context.Background(), LockName, fmt.Sprintf("test-node/tick-mixed-%d", i-1)))
		}
		reply, err := h.Handle(context.Background(), tick(fmt.Sprintf("tick-mixed-%d", i), time.Now()))
		require.NoError(t, err)
		r := result(t, reply)
		require.Equal(t, len(tc.want), r.Found, tc.name)

		// The keyspace is the test's own: every row is from this test, and
		// the second pass adds to the first.
		got := map[string]string{}
		for b := 0; b < f.settings.Buckets; b++ {
			rows, err := f.store.ReadBucket(context.Background(), buckets.For(b, f.settings.Buckets))
			require.NoError(t, err)
			for _, v := range rows {
				got[v.FunctionVersionID] = v.Source
			}
		}
		require.Equal(t, tc.want, got, tc.name)
	}
}
