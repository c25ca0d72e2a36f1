package scale

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/store"
)

// A version's first decision learns its watch mark, recommendation
// history and metric source at least: they are written as one CQL write
// per version, besides the record of each NVCF write, and all of them
// land. The bucket's learned writes are made together once its decisions
// are done, so that the store can send several to a request.
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

	for _, v := range f.versions {
		st, err := f.store.ReadState(ctx, v.VersionKey)
		require.NoError(t, err)
		require.False(t, st.WatchSince.IsZero(), "%s: watch mark", v.VersionKey)
		require.NotEmpty(t, st.Recommendations, "%s: recommendation history", v.VersionKey)
		require.Equal(t, "worker", st.Source, "%s: metric source", v.VersionKey)
	}
}

// countedSaves records the size of every SaveStates call.
type countedSaves struct {
	*store.Store
	mu    sync.Mutex
	calls []int
}

func (c *countedSaves) SaveStates(ctx context.Context, writes []store.StateWrite, ttl time.Duration) ([]store.StateWrite, error) {
	c.mu.Lock()
	c.calls = append(c.calls, len(writes))
	c.mu.Unlock()
	return c.Store.SaveStates(ctx, writes, ttl)
}
