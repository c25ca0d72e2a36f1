package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
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

// SaveStates makes each version's update as SaveState would, several to
// a request, each request of neighbours on Cassandra's ring whatever
// order the caller passes them in, and a batch that fails is reported
// with exactly its own writes, each with its own batch's error: the
// writes of the other batches land, an empty update writes nothing, and
// each update still leaves the columns it does not set alone.
func TestSaveStatesLandsEveryBatchButTheFailedOnes(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	end := time.Now().Truncate(time.Millisecond)

	n := 3*StateBatch + 3
	requested := map[VersionKey]int{}
	var keys []VersionKey
	for i := 0; i < n; i++ {
		k := VersionKey{FunctionID: fmt.Sprintf("f%d", i), FunctionVersionID: "v"}
		require.NoError(t, s.RecordWrite(ctx, k, i, 42, "ok", time.Hour))
		requested[k] = i
		keys = append(keys, k)
	}
	ring := ringOrder(t, s, s.tState, keys)
	// The caller's order is the ring's reversed: cut in that order, the
	// batches would hold other versions than the ring's.
	var writes []StateWrite
	for i := range ring {
		k := ring[len(ring)-1-i]
		var u StateUpdate
		u.Watched(end)
		u.Source("worker")
		if requested[k]%2 == 0 {
			u.Cost(Cost{SecondsPerRequest: float64(requested[k]), Weight: 30, WindowEnd: end})
		}
		writes = append(writes, StateWrite{Key: k, Update: u})
	}
	writes = append(writes, StateWrite{Key: VersionKey{FunctionID: "empty", FunctionVersionID: "v"}})
	// Cassandra refuses one update of the ring's second batch (text that
	// is not UTF-8) and one of its third (a column the table does not
	// have), each with the whole batch it is in, for a reason of its own.
	notText, noColumn := ring[StateBatch+2], ring[2*StateBatch+5]
	for i := range writes {
		switch writes[i].Key {
		case notText:
			writes[i].Update.Source("\xff")
		case noColumn:
			writes[i].Update.set("no_such_column", 1)
		}
	}
	batchOf := map[VersionKey]int{}
	for i, k := range ring {
		batchOf[k] = i / StateBatch
	}

	failed := s.SaveStates(ctx, writes, time.Hour)
	var failedKeys []VersionKey
	for _, f := range failed {
		failedKeys = append(failedKeys, f.Key)
		switch batchOf[f.Key] {
		case 1:
			require.ErrorContains(t, f.Err, "save states of "+ring[StateBatch].String()+" and 9 more", "%s: its own batch", f.Key)
			require.ErrorContains(t, f.Err, "didn't validate", "%s: its own batch's reason", f.Key)
			require.NotContains(t, f.Err.Error(), "no_such_column", "%s: not the other batch's reason", f.Key)
		case 2:
			require.ErrorContains(t, f.Err, "save states of "+ring[2*StateBatch].String()+" and 9 more", "%s: its own batch", f.Key)
			require.ErrorContains(t, f.Err, "no_such_column", "%s: its own batch's reason", f.Key)
			require.NotContains(t, f.Err.Error(), "didn't validate", "%s: not the other batch's reason", f.Key)
		}
	}
	require.ElementsMatch(t, ring[StateBatch:3*StateBatch], failedKeys, "the failed batches' writes, the refused ones' ring neighbours, and only they")

	for _, k := range ring {
		st, err := s.ReadState(ctx, k)
		require.NoError(t, err)
		require.Equal(t, requested[k], st.LastRequested, "%s: the record is left alone", k)
		if b := batchOf[k]; b == 1 || b == 2 {
			require.True(t, st.WatchSince.IsZero(), "%s: in a failed batch", k)
			continue
		}
		require.True(t, end.Equal(st.WatchSince), "%s: watch mark", k)
		require.Equal(t, "worker", st.Source, "%s", k)
		if requested[k]%2 == 0 {
			require.Equal(t, float64(requested[k]), st.Cost.SecondsPerRequest, "%s: cost", k)
		} else {
			require.Zero(t, st.Cost.Weight, "%s: no cost set, none written", k)
		}
	}
	st, err := s.ReadState(ctx, VersionKey{FunctionID: "empty", FunctionVersionID: "v"})
	require.NoError(t, err)
	require.False(t, st.Exists, "an empty update writes nothing")
}

// A context that has ended sends nothing, and SaveStates still reports
// every write it was given, each saying why: a caller that forgot to
// detach its context loses its writes, never the knowledge of them.
func TestSaveStatesReportsEveryWriteOfAnEndedContext(t *testing.T) {
	s := openTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var writes []StateWrite
	for i := 0; i < 2*StateBatch+3; i++ {
		var u StateUpdate
		u.Source("worker")
		writes = append(writes, StateWrite{Key: VersionKey{FunctionID: fmt.Sprintf("f%d", i), FunctionVersionID: "v"}, Update: u})
	}
	failed := s.SaveStates(ctx, writes, time.Hour)
	require.Len(t, failed, len(writes), "every write is reported")
	for _, f := range failed {
		require.ErrorIs(t, f.Err, context.Canceled, "%s", f.Key)
		st, err := s.ReadState(context.Background(), f.Key)
		require.NoError(t, err)
		require.False(t, st.Exists, "%s: not written", f.Key)
	}
}

// ringOrder is keys in the order of the tokens Cassandra gives their rows
// in table, where each of them must have one: the order its ring holds
// them in, asked of it rather than computed the store's way.
func ringOrder(t *testing.T, s *Store, table string, keys []VersionKey) []VersionKey {
	t.Helper()
	token := map[VersionKey]int64{}
	for _, k := range keys {
		var tok int64
		require.NoError(t, s.session.Query(
			`SELECT token(function_id, function_version_id) FROM `+table+` WHERE function_id = ? AND function_version_id = ?`,
			k.FunctionID, k.FunctionVersionID).Scan(&tok), "token of %s", k)
		token[k] = tok
	}
	ring := append([]VersionKey(nil), keys...)
	sort.Slice(ring, func(a, b int) bool { return token[ring[a]] < token[ring[b]] })
	return ring
}

// A batch holds at most StateBatch updates and, past its first, no more
// than stateBatchBytes of them: Cassandra warns of every batch beyond
// either and refuses one of 50 KiB, which ten versions with full idle
// histograms would come near.
func TestStateBatchesStayUnderCassandrasWarnings(t *testing.T) {
	small := func() StateWrite {
		var u StateUpdate
		u.Watched(time.Now())
		u.Source("worker")
		u.Recommendations(`[{"t":1764500000000,"c":2}]`)
		return StateWrite{Key: VersionKey{FunctionID: strings.Repeat("f", 36), FunctionVersionID: strings.Repeat("v", 36)}, Update: u}
	}
	big := func(n int) StateWrite {
		w := small()
		w.Update.Idle(KeepAlive{Histogram: strings.Repeat("7", n)})
		return w
	}
	many := func(ws ...StateWrite) []StateWrite { return ws }
	var eleven []StateWrite
	for range 11 {
		eleven = append(eleven, small())
	}
	require.Equal(t, StateBatch, stateBatchLen(eleven), "ten small updates to a request")
	require.Equal(t, 3, stateBatchLen(eleven[:3]))
	require.Equal(t, 2, stateBatchLen(many(big(3000), small(), big(3000))), "a large update leaves room for little")
	require.Equal(t, 1, stateBatchLen(many(big(3000), big(3000))))
	require.Equal(t, 1, stateBatchLen(many(big(9000), small())), "an update over the budget goes alone")
}
