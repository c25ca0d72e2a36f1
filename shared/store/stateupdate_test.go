package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A version's learned state, gathered into one StateUpdate, is one CQL
// write that sets every group it carries and leaves the others alone; a
// column set twice keeps the later value, as two writes in that order
// would; an empty update writes nothing.
func TestSaveStateIsOneWriteOfEveryGroupSet(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := s.cfg
	var writes atomic.Int64
	cfg.Observer = func(kind string, _ bool) {
		if kind == "write" {
			writes.Add(1)
		}
	}
	cfg.SkipSchema = true
	observed, err := Open(ctx, cfg)
	require.NoError(t, err)
	defer observed.Close()

	k := VersionKey{FunctionID: "f1", FunctionVersionID: "v1"}
	require.NoError(t, s.RecordWrite(ctx, k, 3, 42, "ok", time.Hour))
	end := time.Now().Truncate(time.Millisecond)

	var u StateUpdate
	u.Watched(end.Add(-time.Hour))
	u.Recommendations("opaque-history")
	u.Source("worker")
	u.Cost(Cost{SecondsPerRequest: 1.25, Weight: 37.5, WindowEnd: end})
	u.Backlog(Backlog{Requests: 41.5, WindowEnd: end})
	u.Idle(KeepAlive{Histogram: "opaque", BurstEnd: end.Add(-time.Minute), FoldedTo: end})
	u.ColdStart(KeepAlive{ColdStartSeconds: 95, ColdStartWeight: 1, ColdStartAt: end})
	// Later in the same decision a write from zero starts a new cold
	// start: the cold start saved above ended the old one (null), this
	// one begins at end.
	u.ColdFrom(end)
	require.NoError(t, observed.SaveState(ctx, k, u, time.Hour))
	require.Equal(t, int64(1), writes.Load(), "one CQL write for every group")

	st, err := s.ReadState(ctx, k)
	require.NoError(t, err)
	require.True(t, end.Add(-time.Hour).Equal(st.WatchSince))
	require.Equal(t, "opaque-history", st.Recommendations)
	require.Equal(t, "worker", st.Source)
	require.Equal(t, 1.25, st.Cost.SecondsPerRequest)
	require.Equal(t, 37.5, st.Cost.Weight)
	require.True(t, end.Equal(st.Cost.WindowEnd))
	require.Equal(t, 41.5, st.Backlog.Requests)
	require.True(t, end.Equal(st.Backlog.WindowEnd))
	require.Equal(t, "opaque", st.KeepAlive.Histogram)
	require.True(t, end.Add(-time.Minute).Equal(st.KeepAlive.BurstEnd))
	require.True(t, end.Equal(st.KeepAlive.FoldedTo))
	require.Equal(t, 95.0, st.KeepAlive.ColdStartSeconds)
	require.True(t, end.Equal(st.KeepAlive.ColdFrom), "the later set of cold_from wins")
	require.True(t, st.KeepAlive.PrewarmAt.IsZero(), "a group not set is left alone")
	require.Equal(t, 3, st.LastRequested, "the record is left alone")
	require.Equal(t, int64(42), st.LastCycle)

	require.NoError(t, observed.SaveState(ctx, k, StateUpdate{}, time.Hour))
	require.Equal(t, int64(1), writes.Load(), "an empty update writes nothing")

	u.Source("gateway")
	require.Equal(t, []string{"watch_since", "recommendations", "source"}, u.Columns()[:3], "a column set again keeps its place")
	require.NoError(t, observed.SaveState(ctx, k, u, time.Hour))
	st, err = s.ReadState(ctx, k)
	require.NoError(t, err)
	require.Equal(t, "gateway", st.Source, "a column set again is written with its later value")
}
