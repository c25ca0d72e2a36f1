package scale

import (
	"context"
	"testing"

	"github.com/gocql/gocql"
	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
)

// An activation is decided outside a bucket, so its state write (the cold
// start to measure) is made at once instead of being gathered, through
// its own call. It must carry the state TTL as the gathered writes do:
// the state table has no default TTL, and to Cassandra a TTL of 0 is
// "never expires", so the mark of a version deleted after one call would
// stay for good. Found by mutation testing: no test noticed the TTL gone.
func TestActivationStateWriteCarriesTheStateTTL(t *testing.T) {
	f := setup(t, 0)
	f.sim.Register(nvcfsim.FunctionVersion{FunctionID: "ttl-f", VersionID: "ttl-v", NcaID: "nca", Status: nvcfsim.StatusActive,
		Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 4}}})
	h := f.handler(t, "node-a", nil)
	_, err := h.HandleActivate(context.Background(), activateEvent("act-ttl", "ttl-f", "ttl-v"))
	require.NoError(t, err)
	got, _ := f.sim.Desired("ttl-f", "ttl-v")
	require.Equal(t, 1, got, "the activation must write, or there is no cold start to mark")

	cluster := gocql.NewCluster(f.storeCfg.Hosts...)
	cluster.Keyspace = f.storeCfg.Keyspace
	session, err := cluster.CreateSession()
	require.NoError(t, err)
	defer session.Close()
	var ttl int
	require.NoError(t, session.Query(`SELECT TTL(cold_from) FROM scaling_state WHERE function_id = ? AND function_version_id = ?`,
		"ttl-f", "ttl-v").Scan(&ttl))
	stateTTL := int(f.settings.Scale.StateTTL.Seconds())
	require.Greater(t, ttl, stateTTL-60, "the activation's cold-start mark must expire with STATE_TTL (%ds), not live forever (0)", stateTTL)
	require.LessOrEqual(t, ttl, stateTTL)
}
