package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"function/shared/buckets"
)

// ringBatches cuts items into batches in ring order (by their partition's
// token, buckets.Token), each as long as batchLen says of what is left
// (at least one). A batch's partitions are then neighbours on the ring
// and, on a cluster, on the same replicas, so it is not the fan-out
// through one coordinator that multi-partition batches are warned
// against, whatever order the caller gathered them in.
func ringBatches[T any](items []T, key func(T) VersionKey, batchLen func(rest []T) int) [][]T {
	tokens := make([]int64, len(items))
	order := make([]int, len(items))
	for i, it := range items {
		k := key(it)
		tokens[i], order[i] = buckets.Token(k.FunctionID, k.FunctionVersionID), i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(tokens[a], tokens[b]) })
	sorted := make([]T, len(items))
	for i, j := range order {
		sorted[i] = items[j]
	}
	var out [][]T
	for len(sorted) > 0 {
		n := max(1, batchLen(sorted))
		out = append(out, sorted[:n:n])
		sorted = sorted[n:]
	}
	return out
}

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
