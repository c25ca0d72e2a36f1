package scale

import (
	"context"
	"time"

	"function/shared/store"
)

// Reading scaling state, with one repair: a last applied cycle from the
// future. Before bucket events were bounded against the clock, one event
// with a far-future cycle was stored as a version's last cycle, and every
// real cycle after it was skipped as already applied until the state
// row's TTL (a day) expired. Such rows may still exist after an upgrade,
// and a replica whose clock ran ahead may leave one. A cycle further ahead
// than MAX_CLOCK_SKEW cannot be one this deployment ran, so it is read as
// "no cycle applied": the next decision writes (under the version's write claim,
// as always) and stores a real cycle over it. The count last asked of
// NVCF is kept, so nothing is written that is not needed.

// readState reads one version's state (see above).
func (h *Handler) readState(ctx context.Context, key store.VersionKey) (store.ScalingState, error) {
	st, err := h.d.Store.ReadState(ctx, key)
	if err != nil {
		return st, err
	}
	return h.repairCycle(key, st, h.d.Now()), nil
}

// readStates reads a bucket range's states (see above).
func (h *Handler) readStates(ctx context.Context, r bucketsRange) (map[store.VersionKey]store.ScalingState, error) {
	states, err := h.d.Store.ReadStates(ctx, r)
	if err != nil {
		return nil, err
	}
	now := h.d.Now()
	for k, st := range states {
		states[k] = h.repairCycle(k, st, now)
	}
	return states, nil
}

// repairCycle drops a last cycle beyond now + MAX_CLOCK_SKEW.
func (h *Handler) repairCycle(key store.VersionKey, st store.ScalingState, now time.Time) store.ScalingState {
	limit := now.Add(h.d.Settings.ClockSkew).UnixMilli()
	if st.LastCycle <= limit {
		return st
	}
	h.d.Log.Warn("state row holds a cycle from the future; read as no cycle applied",
		"function_id", key.FunctionID, "function_version_id", key.FunctionVersionID,
		"last_cycle", st.LastCycle, "now", now.UnixMilli(), "max_clock_skew", h.d.Settings.ClockSkew.String())
	st.LastCycle = 0
	return st
}
