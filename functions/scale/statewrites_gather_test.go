package scale

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/store"
)

// A bucket's decisions run on a pool of workers, and each adds its state
// writes to the one gathering the bucket carries: the gathering must take
// them from many goroutines at once, merge a version's writes into one
// UPDATE and keep each version once in the order it first came. Without
// its lock, maps written from several goroutines fail the run (the Go
// runtime's "concurrent map writes", or the race detector under make
// test), which no test with servers showed reliably.
func TestStateWritesGatherFromManyWorkers(t *testing.T) {
	_, w := gatherStateWrites(context.Background())
	const workers, versions = 8, 200
	at := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < versions; i++ {
				key := store.VersionKey{FunctionID: "f", FunctionVersionID: fmt.Sprintf("v%03d", i)}
				if g%2 == 0 {
					w.add(key, func(u *store.StateUpdate) { u.Watched(at) })
				} else {
					w.add(key, func(u *store.StateUpdate) { u.Source("worker") })
				}
			}
		}(g)
	}
	wg.Wait()
	require.Len(t, w.order, versions, "each version once")
	require.Len(t, w.rows, versions)
	seen := map[store.VersionKey]bool{}
	for _, k := range w.order {
		require.False(t, seen[k], "%s listed twice", k)
		seen[k] = true
		require.ElementsMatch(t, []string{"watch_since", "source"}, w.rows[k].Columns(), "%s: both workers' writes in one UPDATE", k)
	}
}
