package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// sendEach calls send for every index in 0..n-1, at most inFlight at a
// time, and returns each index's outcome: nil when its request was made,
// its error otherwise. An index whose turn comes after ctx is done is not
// sent and is reported failed with the context's cause, so that a caller
// can always tell each of its writes made from failed, and why, however
// the context ended: none is dropped unreported.
func sendEach(ctx context.Context, n, inFlight int, send func(i int) error) []error {
	errs := make([]error, n)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(inFlight, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if ctx.Err() != nil {
					errs[i] = fmt.Errorf("not sent: %w", context.Cause(ctx))
					continue
				}
				errs[i] = send(i)
			}
		}()
	}
	wg.Wait()
	return errs
}
