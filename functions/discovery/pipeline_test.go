package discovery

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/buckets"
	"function/shared/events"
	"function/shared/testenv/cqlproxy"
)

// Each bucket's event leaves only once its rows are in Cassandra, so the
// scale function never reads a bucket discovery has not written, although
// one bucket's rows are written while the buckets before it are sent.
func TestEveryBucketIsSentAfterItsRowsAreWritten(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sk := newSink(t, 0, false)
	var mu sync.Mutex
	lacking := map[int]int{} // bucket -> rows not there when its event arrived
	checked := 0
	sk.onAccept = func(b events.Bucket) {
		rows, err := f.store.ReadBucket(ctx, buckets.For(b.Bucket, b.Buckets))
		mu.Lock()
		defer mu.Unlock()
		checked++
		if err != nil || len(rows) < b.Versions {
			lacking[b.Bucket] = b.Versions - len(rows)
		}
	}
	reply, err := f.handler(t, sk.srv.URL, nil).Handle(ctx, tick("tick-ordered", time.Now()))
	require.NoError(t, err)
	r := result(t, reply)
	require.Equal(t, len(f.want), r.Upserted, "every version is new")
	require.Greater(t, len(r.BucketsSent), 1)
	require.Equal(t, len(r.BucketsSent), checked)
	require.Empty(t, lacking, "buckets sent before their rows were written")
}

// A bucket whose rows cannot be written is not sent, nor is any bucket
// after it: the tick answers 503 and gives the lease back, and Knative's
// retry of the same tick writes every row and sends every bucket.
func TestUnwritableRowsAreNotSentAndTheRetryCompletes(t *testing.T) {
	f, h, p, sk := proxied(t)
	ctx := context.Background()

	p.Proxy.Add(cqlproxy.Rule{Match: "(function_id, function_version_id, nca_id, last_updated_at, source) VALUES", Action: cqlproxy.DropRequest, Times: 1 << 20})
	_, err := h.Handle(ctx, tick("tick-unwritable", time.Now()))
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "%v", err)
	require.ErrorContains(t, err, "upserted 0 of")
	require.Zero(t, sk.calls.Load(), "no bucket is sent before its rows are in")

	p.Proxy.Clear()
	reply, err := h.Handle(ctx, tick("tick-unwritable", time.Now()))
	require.NoError(t, err, "the retry runs the cycle")
	r := result(t, reply)
	require.Equal(t, len(f.want), r.Upserted)
	require.Len(t, sk.got, len(r.BucketsSent))
}
