package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/buckets"
	"function/shared/store"
	"function/shared/tsdb"
)

// A version's first decision learns its watch mark and metric source at
// least, and a recommendation history when its recommendation is not
// what runs: they are written as one CQL write per version, besides the
// record of each NVCF write, and all of them land. The bucket's learned
// writes are made together once its decisions are done, so that the
// store can send several to a request. What the next cycle would learn
// again the same way is not written: the history of a version that holds
// (only its seed) and the fold key of a first burst still going on.
func TestFirstDecisionWritesLearnedStateOncePerVersion(t *testing.T) {
	f := setup(t, 30)
	ctx := context.Background()
	var writes, lwts atomic.Int64
	cfg := f.storeCfg
	cfg.SkipSchema = true
	cfg.Observer = func(kind string, _ bool) {
		switch kind {
		case "write":
			writes.Add(1)
		case "lwt":
			lwts.Add(1)
		}
	}
	observed, err := store.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(observed.Close)
	counted := &countedSaves{Store: observed}
	h, err := New(Deps{Settings: f.settings, Store: counted, TSDB: f.tsdb, NVCF: f.nvcf, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)

	reply, err := h.HandleBucket(ctx, bucketEvent(time.Now()))
	require.NoError(t, err)
	r := decode(t, reply)
	require.Equal(t, 30, r.Versions)
	require.Positive(t, r.Written)
	require.Equal(t, int64(r.Written), lwts.Load(), "one write claim per NVCF write")
	require.Equal(t, int64(r.Versions+r.Written), writes.Load(), "one learned-state write per version and one record per NVCF write")
	require.Equal(t, []int{30}, counted.calls, "the bucket's learned writes are flushed together")

	for i, v := range f.versions {
		st, err := f.store.ReadState(ctx, v.VersionKey)
		require.NoError(t, err)
		require.False(t, st.WatchSince.IsZero(), "%s: watch mark", v.VersionKey)
		if f.workers[i].Utilization == 0.5 {
			require.Empty(t, st.Recommendations, "%s holds: its history is only the seed", v.VersionKey)
		} else {
			require.NotEmpty(t, st.Recommendations, "%s: recommendation history", v.VersionKey)
		}
		require.Equal(t, "worker", st.Source, "%s: metric source", v.VersionKey)
		require.Equal(t, store.KeepAlive{}, st.KeepAlive, "%s: its first burst goes on", v.VersionKey)
	}
}

// countedSaves records the size of every SaveStates call.
type countedSaves struct {
	*store.Store
	mu    sync.Mutex
	calls []int
}

func (c *countedSaves) SaveStates(ctx context.Context, writes []store.StateWrite, ttl time.Duration) []store.FailedStateWrite {
	c.mu.Lock()
	c.calls = append(c.calls, len(writes))
	c.mu.Unlock()
	return c.Store.SaveStates(ctx, writes, ttl)
}

// A learned write Cassandra refuses is logged with its own batch's error,
// not every failed batch's: with two batches refused, each line carries
// the one error of the batch its write was in, which names that batch
// and counts exactly the writes logged with it.
func TestRefusedLearnedWritesLogTheirOwnBatchsError(t *testing.T) {
	f := setup(t, 30)
	spoiled := &spoiledSaves{Store: f.store}
	var (
		logs  bytes.Buffer
		logMu sync.Mutex
	)
	h, err := New(Deps{Settings: f.settings, Store: spoiled, TSDB: f.tsdb, NVCF: f.nvcf,
		Log: slog.New(slog.NewJSONHandler(lockedWriter{&logMu, &logs}, nil))})
	require.NoError(t, err)
	reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	require.Equal(t, 30, decode(t, reply).Versions)
	require.Len(t, spoiled.keys, 2, "two writes spoiled")

	byError := map[string][]store.VersionKey{}
	errorOf := map[store.VersionKey]string{}
	dec := json.NewDecoder(&logs)
	for dec.More() {
		var line struct {
			Msg               string `json:"msg"`
			FunctionID        string `json:"function_id"`
			FunctionVersionID string `json:"function_version_id"`
			Error             string `json:"error"`
		}
		require.NoError(t, dec.Decode(&line))
		if line.Msg != "save learned state" {
			continue
		}
		k := store.VersionKey{FunctionID: line.FunctionID, FunctionVersionID: line.FunctionVersionID}
		byError[line.Error] = append(byError[line.Error], k)
		errorOf[k] = line.Error
	}
	require.Len(t, byError, 2, "two refused batches, two errors")
	for e, keys := range byError {
		var first string
		var more int
		_, err := fmt.Sscanf(e, "save states of %s and %d more:", &first, &more)
		require.NoError(t, err, "one batch's error: %s", e)
		require.Equal(t, 1, strings.Count(e, "save states of"), "one batch's error: %s", e)
		require.Contains(t, e, "didn't validate", "Cassandra's reason")
		require.Len(t, keys, more+1, "the writes logged with %q are its batch's", e)
		fid, vid, _ := strings.Cut(first, "/")
		require.Contains(t, keys, store.VersionKey{FunctionID: fid, FunctionVersionID: vid}, "the batch %q names is logged with it", e)
	}
	require.NotEqual(t, errorOf[spoiled.keys[0]], errorOf[spoiled.keys[1]], "each spoiled write with its own batch's error")
	require.NotEmpty(t, errorOf[spoiled.keys[0]])
	require.NotEmpty(t, errorOf[spoiled.keys[1]])
}

// spoiledSaves makes Cassandra refuse the learned writes of the versions
// first and last on the ring, which are in different batches, by giving
// each a source that is not UTF-8.
type spoiledSaves struct {
	*store.Store
	keys []store.VersionKey
}

func (s *spoiledSaves) SaveStates(ctx context.Context, writes []store.StateWrite, ttl time.Duration) []store.FailedStateWrite {
	writes = append([]store.StateWrite(nil), writes...)
	lo, hi := 0, 0
	for i, w := range writes {
		tok := buckets.Token(w.Key.FunctionID, w.Key.FunctionVersionID)
		if tok < buckets.Token(writes[lo].Key.FunctionID, writes[lo].Key.FunctionVersionID) {
			lo = i
		}
		if tok > buckets.Token(writes[hi].Key.FunctionID, writes[hi].Key.FunctionVersionID) {
			hi = i
		}
	}
	for _, i := range []int{lo, hi} {
		var u store.StateUpdate
		u.Source("\xff")
		writes[i].Update = u
		s.keys = append(s.keys, writes[i].Key)
	}
	return s.Store.SaveStates(ctx, writes, ttl)
}

// cancelAfterMetrics is the real TSDB client with the bucket's client
// going away once the metrics are read, while the decisions are made.
type cancelAfterMetrics struct {
	*tsdb.Client
	cancel context.CancelFunc
}

func (m cancelAfterMetrics) BucketMetrics(ctx context.Context, vs []tsdb.FunctionVersion, now time.Time, o tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.VersionMetrics, error) {
	defer m.cancel()
	return m.Client.BucketMetrics(ctx, vs, now, o)
}

// What a bucket's decisions learned is written even when its client left
// before they were done: it is true all the same, and otherwise a bucket
// that always outlives its dispatcher's timeout would never learn.
func TestLearnedStateIsWrittenWhenTheBucketsClientLeaves(t *testing.T) {
	f := setup(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	h, err := New(Deps{Settings: f.settings, Store: f.store, TSDB: cancelAfterMetrics{f.tsdb, cancel}, NVCF: f.nvcf,
		Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, _ = h.HandleBucket(ctx, bucketEvent(time.Now()))
	require.Error(t, ctx.Err(), "the client left during the bucket")
	for _, v := range f.versions {
		st, err := f.store.ReadState(context.Background(), v.VersionKey)
		require.NoError(t, err)
		require.Equal(t, "worker", st.Source, "%s: its metric source, learned", v.VersionKey)
	}
}
