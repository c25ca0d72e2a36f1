package store

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every index is either sent, with its own outcome, or reported not sent
// with the context's cause: a context that ends midway drops none
// unreported, with one request in flight or several.
func TestSendEachReportsEveryIndexAfterTheContextEnds(t *testing.T) {
	gone := errors.New("client left")
	for _, inFlight := range []int{1, 3, 64} {
		ctx, cancel := context.WithCancelCause(context.Background())
		refused := errors.New("refused")
		var (
			mu     sync.Mutex
			called = map[int]bool{}
		)
		const n = 40
		errs := sendEach(ctx, n, inFlight, func(i int) error {
			mu.Lock()
			called[i] = true
			mu.Unlock()
			if i == 2 {
				cancel(gone)
			}
			if i == 1 {
				return refused
			}
			return nil
		})
		require.Len(t, errs, n)
		require.ErrorIs(t, errs[1], refused, "in flight %d: a sent index keeps its own outcome", inFlight)
		for i, err := range errs {
			switch {
			case i == 1:
			case called[i]:
				require.NoError(t, err, "in flight %d: index %d was sent and made", inFlight, i)
			default:
				require.ErrorIs(t, err, gone, "in flight %d: index %d was not sent and says why", inFlight, i)
			}
		}
		if inFlight == 1 {
			require.Len(t, called, 3, "one at a time, nothing after the index that ended the context is sent")
		}
	}
}

// No index, no call and no outcome.
func TestSendEachOfNothing(t *testing.T) {
	require.Empty(t, sendEach(context.Background(), 0, 4, func(int) error { panic("called") }))
}
