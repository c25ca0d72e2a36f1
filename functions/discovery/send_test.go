package discovery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"
)

// deadlineSender records the deadline each attempt was given and fails
// every attempt, as a sink does that is down.
type deadlineSender struct {
	mu        sync.Mutex
	deadlines map[string][]time.Time
	started   map[string][]time.Time
}

func (s *deadlineSender) Send(ctx context.Context, e event.Event) error {
	d, ok := ctx.Deadline()
	if !ok {
		return errors.New("attempt without a deadline")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deadlines == nil {
		s.deadlines, s.started = map[string][]time.Time{}, map[string][]time.Time{}
	}
	s.deadlines[e.ID()] = append(s.deadlines[e.ID()], d)
	s.started[e.ID()] = append(s.started[e.ID()], time.Now())
	return errors.New("sink down")
}

// On a Broker over the in-memory channel an attempt is answered only once
// scale has decided the bucket, so an attempt must be allowed until the
// bucket's deadline (and scale's answer at it), not a fixed few seconds
// that would cancel scale's work and send the bucket again.
func TestBucketAttemptsLastUntilTheBucketDeadline(t *testing.T) {
	sender := &deadlineSender{}
	h := unitHandler(t, sender)
	h.d.Settings.Discovery.SendAttempts = 2
	at := time.Now().Truncate(time.Second) // a cycle is a whole second
	_, err := h.Handle(context.Background(), tick("tick-deadline", at))
	require.Error(t, err, "every bucket failed")
	want := at.Add(h.d.Settings.Discovery.BucketDeadline).Add(answerGrace)
	require.NotEmpty(t, sender.deadlines)
	for id, ds := range sender.deadlines {
		require.Len(t, ds, 2, "%s: the retry is made while the deadline is ahead", id)
		for _, d := range ds {
			require.WithinDuration(t, want, d, time.Millisecond, "%s: attempt deadline = the tick + BUCKET_DEADLINE + the answer grace", id)
		}
	}
}

// A tick delivered after its buckets' deadline (a late retry of it) still
// gets one attempt per bucket, of at least minAttempt, and no resend: the
// scale function drops late buckets.
func TestLateBucketGetsOneAttemptOfItsOwn(t *testing.T) {
	sender := &deadlineSender{}
	h := unitHandler(t, sender)
	h.d.Settings.Discovery.SendAttempts = 4
	at := time.Now().Add(-2 * h.d.Settings.Discovery.BucketDeadline)
	_, err := h.Handle(context.Background(), tick("tick-late", at))
	require.Error(t, err)
	require.Contains(t, err.Error(), "bucket events not delivered")
	require.NotEmpty(t, sender.deadlines)
	for id, ds := range sender.deadlines {
		require.Len(t, ds, 1, "%s: no attempt starts after the bucket's deadline", id)
		require.InDelta(t, minAttempt.Seconds(), ds[0].Sub(sender.started[id][0]).Seconds(), 0.5,
			"%s: the one attempt still gets minAttempt", id)
	}
}
