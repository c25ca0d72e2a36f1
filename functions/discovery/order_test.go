package discovery

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// Under overload the buckets sent last miss the deadline; the order must
// rotate between cycles so no bucket is last every time, and every cycle
// must still send each bucket exactly once.
func TestSendOrderRotatesAndCoversEveryBucket(t *testing.T) {
	perBucket := map[int]int{}
	for b := 0; b < 100; b++ {
		perBucket[b] = 1
	}
	firsts := map[int]bool{}
	lastHalf := map[int]int{}
	const cycles = 60
	for i := 0; i < cycles; i++ {
		cycle := int64(1795627545000 + i*60000)
		order := sendOrder(cycle, perBucket)
		sorted := slices.Clone(order)
		slices.Sort(sorted)
		for b := range sorted {
			require.Equal(t, b, sorted[b], "cycle %d: bucket %d missing or repeated", cycle, b)
		}
		firsts[order[0]] = true
		for _, b := range order[50:] {
			lastHalf[b]++
		}
		require.Equal(t, order, sendOrder(cycle, perBucket), "a redelivered tick sends in the same order")
	}
	require.Greater(t, len(firsts), 20, "the first bucket hardly changes between cycles")
	for b := 0; b < 100; b++ {
		require.Less(t, lastHalf[b], cycles, "bucket %d is in the second half of every cycle", b)
	}
	require.Equal(t, []int{7}, sendOrder(1, map[int]int{7: 3}))
}
