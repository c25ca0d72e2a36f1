package scale

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// history is a version's recommendation history for the scale-down
// windows (policy.Policy.RecommendationWindow), stored as change points: the recommendation at any
// time is the last point at or before it. Storing only changes means the
// history costs a Cassandra write only when the recommendation moves, not
// every cycle.
type history []histPoint

type histPoint struct {
	At    int64 `json:"t"` // unix milliseconds
	Count int   `json:"c"`
}

func decodeHistory(s string) history {
	var h history
	if s == "" || json.Unmarshal([]byte(s), &h) != nil {
		// A corrupt history only weakens stabilization for one window; it
		// must never block a decision.
		return nil
	}
	return h
}

func (h history) encode() string {
	b, _ := json.Marshal(h)
	return string(b)
}

// forPolicy returns the recommendations in force during (now-window, now],
// the one in force at the window's start dated at the start.
func (h history) forPolicy(now time.Time, window time.Duration) []policy.Recommendation {
	if window <= 0 || len(h) == 0 {
		return nil
	}
	from := now.Add(-window)
	var out []policy.Recommendation
	for i, p := range h {
		at := time.UnixMilli(p.At)
		switch {
		case at.After(from):
			out = append(out, policy.Recommendation{At: at, Count: p.Count})
		case i == len(h)-1 || !time.UnixMilli(h[i+1].At).Before(from):
			// Last point before the window: still in force at its start.
			out = append(out, policy.Recommendation{At: from.Add(time.Millisecond), Count: p.Count})
		}
	}
	return out
}

// add records rec at now and prunes points that no longer matter; changed
// says whether anything needs saving.
func (h history) add(now time.Time, rec int, window time.Duration) (history, bool) {
	if window <= 0 {
		return h, false
	}
	from := now.Add(-window).UnixMilli()
	// Keep points inside the window plus the last one before it.
	keep := 0
	for i := range h {
		if h[i].At <= from && i+1 < len(h) && h[i+1].At <= from {
			keep = i + 1
		}
	}
	pruned := keep > 0
	h = append(history(nil), h[keep:]...)
	if len(h) > 0 && h[len(h)-1].Count == rec {
		return h, pruned
	}
	return append(h, histPoint{At: now.UnixMilli(), Count: rec}), true
}

func toSamples(in []tsdb.Sample) []policy.Sample {
	out := make([]policy.Sample, len(in))
	for i, s := range in {
		out[i] = policy.Sample{At: s.At, Value: s.Value}
	}
	return out
}

// saveHistory adds rec to recent, the history read (or seeded) this
// cycle, and stores the result when it differs from what was read. A
// history that is only this cycle's seed (what is running, the
// recommendation in force on first sight) is not stored while the
// recommendation agrees with it: the next cycle that finds no history
// seeds it again from what is running then, which is what the stored
// seed would say unless the count moved, and then the fresh one is the
// truer "in force". Its time carries nothing either: the only point of
// a history is in force until the next one, wherever it is dated. So a
// version that holds from its first sight writes no history at all,
// the write every version used to make on its first visit (100,000 of
// them in the first cycle after an import), and the first
// recommendation that differs stores the seed with it, from which the
// stabilization window counts as before.
func (h *Handler) saveHistory(ctx context.Context, log *slog.Logger, key store.VersionKey, recent history, now time.Time, rec int, window time.Duration) {
	next, changed := recent.add(now, rec, window)
	if !changed {
		return
	}
	if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.Recommendations(next.encode()) }); err != nil {
		log.Warn("save recommendation history", "error", err.Error())
	}
}
