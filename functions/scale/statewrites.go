package scale

// Applying, the learned part: what a decision learns about a version
// (its metric source, cost, backlog, idle gaps, recommendation history,
// watch mark) is written to its state row once, when the decisions of its
// bucket are done.

import (
	"context"
	"log/slog"
	"sync"

	"function/shared/store"
)

// stateWrites gathers the plain state writes of one bucket's decisions,
// by version, so each version's are made as one UPDATE (store.StateUpdate)
// and the bucket's UPDATEs go several to a request (store.SaveStates):
// the first cycle after 100,000 versions appeared made about six writes
// per version, then one, and the request per version, not the TSDB, was
// most of the cycle's Cassandra and much of the scale function's CPU.
// None of them is read back within the bucket (its decisions read the
// states read at its start, or re-read a claim's record), none is under
// the write claim, and each was already allowed to fail alone (the next
// cycle learns it again), so writing them together at the end changes no
// outcome; the claim, the record and the pre-warm settlement stay
// immediate.
type stateWrites struct {
	mu    sync.Mutex
	rows  map[store.VersionKey]*store.StateUpdate
	order []store.VersionKey
}

type stateWritesKey struct{}

// gatherStateWrites returns ctx carrying a fresh gathering of state writes,
// for one bucket's decisions. It travels in the context because the
// writes are made deep in gathering, deciding and applying, which would
// otherwise all take it as a parameter for a concern none of them has.
func gatherStateWrites(ctx context.Context) (context.Context, *stateWrites) {
	w := &stateWrites{rows: map[store.VersionKey]*store.StateUpdate{}}
	return context.WithValue(ctx, stateWritesKey{}, w), w
}

func (w *stateWrites) add(key store.VersionKey, set func(*store.StateUpdate)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	u, ok := w.rows[key]
	if !ok {
		u = &store.StateUpdate{}
		w.rows[key] = u
		w.order = append(w.order, key)
	}
	set(u)
}

// saveState writes to key's state row what set sets: into the bucket's
// gathering when ctx carries one, at once otherwise (an activation). The
// error is the immediate write's; a gathered write reports at flush.
func (h *Handler) saveState(ctx context.Context, key store.VersionKey, set func(*store.StateUpdate)) error {
	if w, ok := ctx.Value(stateWritesKey{}).(*stateWrites); ok {
		w.add(key, set)
		return nil
	}
	var u store.StateUpdate
	set(&u)
	return h.d.Store.SaveState(ctx, key, u, h.d.Settings.Scale.StateTTL)
}

// flushStateWrites makes the gathered writes, one UPDATE per version,
// several to a request (store.SaveStates). They are made even when the
// bucket's deadline passed or its client left: what was learned is true
// all the same, and the store bounds each write. A failed one loses
// what it carried until the next cycle learns it again, as each of its
// writes alone would have.
func (h *Handler) flushStateWrites(ctx context.Context, log *slog.Logger, w *stateWrites) {
	if len(w.order) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	writes := make([]store.StateWrite, 0, len(w.order))
	for _, key := range w.order {
		writes = append(writes, store.StateWrite{Key: key, Update: *w.rows[key]})
	}
	for _, f := range h.d.Store.SaveStates(ctx, writes, h.d.Settings.Scale.StateTTL) {
		log.Warn("save learned state", "function_id", f.Key.FunctionID, "function_version_id", f.Key.FunctionVersionID,
			"columns", f.Update.Columns(), "error", f.Err.Error())
	}
}
