package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A keyspace created by an earlier release has a scaling_state table
// without the cost columns; Open must add them and keep the rows, so an
// upgrade needs no manual migration.
func TestOpenUpgradesAnOldScalingStateTable(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := s.cfg.Keyspace + "_old"
	t.Cleanup(func() { _ = s.session.Query(`DROP KEYSPACE IF EXISTS ` + old).Exec() })
	for _, stmt := range []string{
		fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = %s`, old, s.cfg.Replication),
		// The table as the first release created it.
		fmt.Sprintf(`CREATE TABLE %s.scaling_state (function_id text, function_version_id text,
			last_requested int, last_cycle bigint, last_written_at timestamp,
			status text, not_found_at timestamp, recommendations text,
			PRIMARY KEY ((function_id, function_version_id)))`, old),
		fmt.Sprintf(`INSERT INTO %s.scaling_state (function_id, function_version_id, last_requested, last_cycle) VALUES ('f1', 'v1', 3, 42)`, old),
	} {
		require.NoError(t, s.session.Query(stmt).WithContext(ctx).Exec(), stmt)
	}
	cfg := s.cfg
	cfg.Keyspace = old
	upgraded, err := Open(ctx, cfg)
	require.NoError(t, err)
	defer upgraded.Close()

	k := VersionKey{FunctionID: "f1", FunctionVersionID: "v1"}
	st, err := upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, 3, st.LastRequested, "the old row survives the upgrade")
	require.Equal(t, Cost{}, st.Cost, "no cost learned yet reads as the zero value")

	end := time.Now().Truncate(time.Millisecond)
	want := Cost{SecondsPerRequest: 1.25, Weight: 37.5, WindowEnd: end}
	require.NoError(t, upgraded.SaveCost(ctx, k, want, time.Hour))
	st, err = upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, want.SecondsPerRequest, st.Cost.SecondsPerRequest)
	require.Equal(t, want.Weight, st.Cost.Weight)
	require.True(t, end.Equal(st.Cost.WindowEnd))
	require.Equal(t, 3, st.LastRequested, "saving the cost leaves the rest of the state alone")
	require.Equal(t, Backlog{}, st.Backlog, "no backlog estimated yet reads as the zero value")

	wantBacklog := Backlog{Requests: 41.5, WindowEnd: end}
	require.NoError(t, upgraded.SaveBacklog(ctx, k, wantBacklog, time.Hour))
	st, err = upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, wantBacklog.Requests, st.Backlog.Requests)
	require.True(t, end.Equal(st.Backlog.WindowEnd))
	require.Equal(t, want.Weight, st.Cost.Weight, "saving the backlog leaves the cost alone")
}
