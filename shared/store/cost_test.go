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

	// save makes one state write with the columns set sets.
	save := func(set func(u *StateUpdate)) {
		t.Helper()
		var u StateUpdate
		set(&u)
		require.NoError(t, upgraded.SaveState(ctx, k, u, time.Hour))
	}
	end := time.Now().Truncate(time.Millisecond)
	want := Cost{SecondsPerRequest: 1.25, Weight: 37.5, WindowEnd: end}
	save(func(u *StateUpdate) { u.Cost(want) })
	st, err = upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, want.SecondsPerRequest, st.Cost.SecondsPerRequest)
	require.Equal(t, want.Weight, st.Cost.Weight)
	require.True(t, end.Equal(st.Cost.WindowEnd))
	require.Equal(t, 3, st.LastRequested, "saving the cost leaves the rest of the state alone")
	require.Equal(t, Backlog{}, st.Backlog, "no backlog estimated yet reads as the zero value")

	wantBacklog := Backlog{Requests: 1.5, WindowEnd: end, Prior: 41.5}
	save(func(u *StateUpdate) { u.Backlog(wantBacklog) })
	st, err = upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, wantBacklog.Requests, st.Backlog.Requests)
	require.Equal(t, wantBacklog.Prior, st.Backlog.Prior, "the queue the window began with is kept for a replay")
	require.True(t, end.Equal(st.Backlog.WindowEnd))
	require.Equal(t, want.Weight, st.Cost.Weight, "saving the backlog leaves the cost alone")

	require.Equal(t, KeepAlive{}, st.KeepAlive, "nothing learned about keep-alive reads as the zero value")

	// Each keep-alive writer sets its own columns and leaves the others.
	idle := KeepAlive{Histogram: "opaque", BurstEnd: end.Add(-time.Minute), FoldedTo: end}
	save(func(u *StateUpdate) { u.Idle(idle) })
	save(func(u *StateUpdate) { u.ColdFrom(end) })
	save(func(u *StateUpdate) { u.Prewarm(end, end.Add(time.Minute)) })
	st, err = upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, "opaque", st.KeepAlive.Histogram)
	require.True(t, idle.BurstEnd.Equal(st.KeepAlive.BurstEnd))
	require.True(t, end.Equal(st.KeepAlive.FoldedTo))
	require.True(t, end.Equal(st.KeepAlive.ColdFrom))
	require.True(t, end.Equal(st.KeepAlive.PrewarmAt))
	require.True(t, end.Add(time.Minute).Equal(st.KeepAlive.PrewarmFor))

	cold := KeepAlive{ColdStartSeconds: 95, ColdStartWeight: 1, ColdStartAt: end}
	save(func(u *StateUpdate) { u.ColdStart(cold) })
	save(func(u *StateUpdate) { u.Prewarm(time.Time{}, time.Time{}) })
	st, err = upgraded.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, 95.0, st.KeepAlive.ColdStartSeconds)
	require.Equal(t, 1.0, st.KeepAlive.ColdStartWeight)
	require.True(t, end.Equal(st.KeepAlive.ColdStartAt))
	require.True(t, st.KeepAlive.ColdFrom.IsZero(), "saving a cold start ends its measurement")
	require.True(t, st.KeepAlive.PrewarmAt.IsZero() && st.KeepAlive.PrewarmFor.IsZero(), "zero times clear the pre-warm marker")
	require.Equal(t, "opaque", st.KeepAlive.Histogram, "the cold start leaves the histogram alone")
	require.Equal(t, 3, st.LastRequested)
}
