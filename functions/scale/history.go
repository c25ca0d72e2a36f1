package scale

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"time"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// history is a version's recommendation history for the scale-down
// windows (policy.Policy.RecommendationWindow), stored as change points:
// the recommendation at any time is the last point at or before it.
// Storing only changes means the history costs a Cassandra write only when
// the recommendation moves, not every cycle.
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

// forPolicy returns the recommendations that matter during (now-window,
// now], oldest first, each in force until the next. The policy's plain
// stabilization window counts only recommendations made inside it, as
// HPA does with one per cycle; a change-point history has none there
// when the count has not changed for longer, so the ones in force at
// that window's start are given dated just after it (atStart), as they
// always were. The flap window (window, when wider than stabilization)
// reads the whole history in order: it gets the points at their times,
// the one in force at its own start dated just after it, and the plain
// window's copies in their place in time, where they repeat a count
// already in force.
func (h history) forPolicy(now time.Time, window, stabilization time.Duration) []policy.Recommendation {
	if window <= 0 || len(h) == 0 {
		return nil
	}
	from := now.Add(-window)
	if stabilization >= window {
		return append(h.atStart(from), h.between(from, now)...)
	}
	var out []policy.Recommendation
	if i := h.lastAtOrBefore(from); i >= 0 {
		out = append(out, policy.Recommendation{At: from.Add(time.Millisecond), Count: h[i].Count})
	}
	if stabilization <= 0 {
		return append(out, h.between(from, now)...)
	}
	// The points before the plain window's start at their times, those
	// in force at it (atStart), then the ones after it.
	plain := now.Add(-stabilization)
	out = append(out, h.between(from, plain.Add(-time.Millisecond))...)
	out = append(out, h.atStart(plain)...)
	return append(out, h.between(plain, now)...)
}

// between gives the points made in (from, to] at their times.
func (h history) between(from, to time.Time) []policy.Recommendation {
	var out []policy.Recommendation
	for _, p := range h {
		if at := time.UnixMilli(p.At); at.After(from) && !at.After(to) {
			out = append(out, policy.Recommendation{At: at, Count: p.Count})
		}
	}
	return out
}

// lastAtOrBefore is the index of the last point made at or before t, -1
// if none.
func (h history) lastAtOrBefore(t time.Time) int {
	ms := t.UnixMilli()
	return sort.Search(len(h), func(i int) bool { return h[i].At > ms }) - 1
}

// atStart gives the points in force at a window's start t, dated just
// after it: the last one made before t, and those made at t (a seed and
// the first recommendation share a time). The one a change at t replaced
// counts too, as it always has: with cycles on the minute a change lands
// exactly on a window's start, and the count it replaced then holds the
// window one cycle more.
func (h history) atStart(t time.Time) []policy.Recommendation {
	ms := t.UnixMilli()
	i := sort.Search(len(h), func(i int) bool { return h[i].At >= ms })
	var out []policy.Recommendation
	if i > 0 {
		out = append(out, policy.Recommendation{At: t.Add(time.Millisecond), Count: h[i-1].Count})
	}
	for ; i < len(h) && h[i].At == ms; i++ {
		out = append(out, policy.Recommendation{At: t.Add(time.Millisecond), Count: h[i].Count})
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
