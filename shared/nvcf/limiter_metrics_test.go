package nvcf

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// limiterRecorder is what the telemetry hooks see of the rate limiter.
type limiterRecorder struct {
	mu      sync.Mutex
	waiting int
	depths  []int // queue depth seen by each sleeping call
	waits   []time.Duration
}

func (r *limiterRecorder) queue(delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiting += delta
}

func (r *limiterRecorder) waited(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
}

func (r *limiterRecorder) snapshot() (int, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waiting, append([]time.Duration(nil), r.waits...)
}

func TestLimiterHooksReportQueueAndWaits(t *testing.T) {
	sim := startSim(t)
	rec := &limiterRecorder{}
	c, ft := newClient(t, TransportHTTP, sim, func(c *Config) {
		c.Rate = 10
		c.Burst = 1
		c.MaxQueueAge = 150 * time.Millisecond
		c.OnLimiterQueue = rec.queue
		c.OnLimiterWait = rec.waited
	})
	// The fake sleep notes how many calls are queued while it sleeps.
	c.sleep = func(ctx context.Context, d time.Duration) error {
		rec.mu.Lock()
		rec.depths = append(rec.depths, rec.waiting)
		rec.mu.Unlock()
		return ft.Sleep(ctx, d)
	}
	for i := 0; i < 3; i++ {
		_, err := autoscale(c, 3)
		require.NoError(t, err)
	}
	waiting, waits := rec.snapshot()
	require.Equal(t, []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond}, waits,
		"the burst token is free, each later call waits one refill")
	require.Equal(t, []int{1, 1}, rec.depths, "a waiting call is in the queue while it sleeps")
	require.Zero(t, waiting, "nobody is left in the queue")

	// Two calls at a standing clock: the first waits one refill (admitted),
	// the second would wait two (200 ms > 150 ms) and is refused up front:
	// it never queues and records no wait.
	c.sleep = func(context.Context, time.Duration) error { return nil } // the clock does not move
	_, err := autoscale(c, 4)
	require.NoError(t, err)
	_, err = autoscale(c, 5)
	require.ErrorIs(t, err, ErrRateLimited)
	waiting, waits = rec.snapshot()
	require.Len(t, waits, 4)
	require.Equal(t, 100*time.Millisecond, waits[3])
	require.Zero(t, waiting)
}

func TestLimiterQueueDrainsWhenTheCallerGivesUp(t *testing.T) {
	sim := startSim(t)
	rec := &limiterRecorder{}
	c, _ := newClient(t, TransportHTTP, sim, func(c *Config) {
		c.Rate = 0.001
		c.Burst = 1
		c.MaxQueueAge = time.Hour
		c.OnLimiterQueue = rec.queue
		c.OnLimiterWait = rec.waited
	})
	c.sleep = sleepCtx // a real wait, ended by the context
	_, err := autoscale(c, 3)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Autoscale(ctx, Request{FunctionID: fid, FunctionVersionID: vid, Instances: 3})
		done <- err
	}()
	require.Eventually(t, func() bool { w, _ := rec.snapshot(); return w == 1 }, 5*time.Second, 5*time.Millisecond,
		"the second call waits in the limiter's queue")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	waiting, waits := rec.snapshot()
	require.Zero(t, waiting, "a call that gave up left the queue")
	require.Equal(t, []time.Duration{0}, waits, "only the admitted call recorded a wait")
}
