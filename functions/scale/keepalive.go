package scale

// Gathering for learned keep-alive: a version's idle gaps and cold start,
// learned from the invocation and instance series the bucket's metrics
// already carry (no query of its own), and the outcome of its last
// pre-warm. Everything learned is folded once: each fold is keyed on the
// steps it read, as cost and backlog are keyed on window ends, so a
// replayed or late bucket event, or a second replica deciding the same
// cycle, reads the stored keys and folds nothing twice.

import (
	"context"
	"log/slog"
	"math"
	"time"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// keepAlive is what gathering knows about a version's invocation pattern
// this cycle.
type keepAlive struct {
	idle      policy.IdleHistogram
	coldStart policy.ColdStart
	// burstEnd is the last step of the last burst a quiet step followed:
	// an invocation the TSDB's lookback may no longer show.
	burstEnd time.Time
	// released is when the version was last written to zero (zero: it
	// was not, or not known).
	released time.Time
	// prewarm is the pending pre-warm marker as stored, and the row it is
	// stored in (a gateway function's may be another version's).
	prewarmAt, prewarmFor time.Time
	prewarmIn             store.VersionKey
	// note is what the decision detail says about what was learned.
	note string
}

// Bursts. Invocations are seen per step, as the requests routed in the
// window ending at each step. A burst is a run of steps with requests; it
// ends at a settled step that saw none. That is the finest boundary the
// evidence can draw (two requests less than a window apart are never told
// apart), and every gap it finds is one an instance could have spent
// idle, which is what the histogram is for: gaps inside what a person
// would call one burst are short and sit in the lowest bins, where the
// policy reads them as "keep it up". Only settled steps count: the newest
// one may still be waiting for scrapes, and a quiet step that is only
// late would end a burst that goes on. A step the TSDB has no sample for
// is unknown, neither quiet nor invoked, so a scrape gap never splits a
// burst in two.

// learnKeepAlive folds this cycle's settled steps into the version's idle
// histogram and cold start, stores what changed in v's row, and returns
// what the policy reads. A version whose stored histogram cannot be read
// decides with the fixed timeout (the zero histogram), and the bad row is
// replaced by the next fold rather than trusted.
//
// Every source gives the same per-step evidence (see controlPlaneEvidence
// and gatewayEvidence for the two that are not worker series):
// m.RequestCounts, the requests seen in the window ending at each step,
// for bursts and gaps; m.InstanceCounts, what shows an instance serving,
// for the cold start; m.SettledAt, the newest step whose scrapes are in.
func (h *Handler) learnKeepAlive(ctx context.Context, log *slog.Logger, v store.VersionKey, st store.ScalingState, m tsdb.VersionMetrics, known bool) keepAlive {
	stored := st.KeepAlive
	k := keepAlive{burstEnd: stored.BurstEnd, prewarmAt: stored.PrewarmAt, prewarmFor: stored.PrewarmFor, prewarmIn: v,
		coldStart: policy.ColdStart{Seconds: stored.ColdStartSeconds, Weight: stored.ColdStartWeight, UpdatedAt: stored.ColdStartAt}}
	if st.HasLastRequested && st.LastRequested == 0 {
		k.released = st.LastWrittenAt
	}
	idle, err := policy.DecodeIdleHistogram(stored.Histogram)
	if err != nil {
		log.Warn("stored idle histogram unreadable; fixed keep-alive until it is relearned", "function_id", v.FunctionID,
			"function_version_id", v.FunctionVersionID, "error", err.Error())
		idle = policy.IdleHistogram{}
	}
	s := h.d.Settings.Scale
	if idle.UpdatedAt().IsZero() {
		// Gaps are measured at the step, so that is the histogram's bin.
		idle = policy.NewIdleHistogram(s.Step)
	}
	k.idle = idle
	if !known || m.SettledAt.IsZero() {
		return k
	}
	next, folded := foldBursts(stored, idle, settledSteps(m.RequestCounts, m.SettledAt), s.Step)
	if idleWorthSaving(stored, next, folded) {
		if err := h.saveState(ctx, v, func(u *store.StateUpdate) { u.Idle(next) }); err != nil {
			// The fold is still used this cycle; the next one repeats it
			// from the older row (the gaps are still in its lookback).
			log.Warn("save idle histogram", "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID, "error", err.Error())
		}
		if folded > 0 {
			k.idle, _ = policy.DecodeIdleHistogram(next.Histogram)
		}
	}
	k.burstEnd = next.BurstEnd
	if cs, done := measureColdStart(st, m.InstanceCounts, s.Step); done {
		stored.ColdStartSeconds, stored.ColdStartWeight, stored.ColdStartAt, stored.ColdFrom = cs.Seconds, cs.Weight, cs.UpdatedAt, time.Time{}
		if err := h.saveState(ctx, v, func(u *store.StateUpdate) { u.ColdStart(stored) }); err != nil {
			log.Warn("save cold start", "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID, "error", err.Error())
		}
		if cs.Known() {
			k.coldStart = cs
		}
	}
	return k
}

// idleWorthSaving reports whether a fold changed what a later cycle needs:
// a gap folded, or a burst end found or dropped, or any fold key moved
// once something has been learned. Before anything has (no histogram, no
// burst end, stored or found), the fold key alone carries nothing: no gap
// can be folded until an end is known, so the start of the first burst
// keys no fold, and the next cycle finds that burst in its own view, as
// at least its end step, which is all foldBursts then keeps of it. A
// version invoked without pause from its first sight (most of a busy
// fleet) then writes no idle columns until its first burst ends; they
// were three of the cells of every version's first visit, one of them a
// null written over a null, a tombstone.
func idleWorthSaving(stored, next store.KeepAlive, folded int) bool {
	if folded > 0 || !next.BurstEnd.Equal(stored.BurstEnd) {
		return true
	}
	learned := stored.Histogram != "" || next.Histogram != "" || !stored.BurstEnd.IsZero()
	return learned && !next.FoldedTo.Equal(stored.FoldedTo)
}

// applyTo gives the policy what keep-alive learned. The end of the last
// burst outlives the TSDB's lookback: at zero through a long gap, it is
// the only invocation left to count from. It is a real invocation, so it
// only ever makes a version less idle.
func (k keepAlive) applyTo(in *policy.Input) {
	if k.burstEnd.After(in.LastInvokedAt) {
		in.LastInvokedAt = k.burstEnd
	}
	in.Idle, in.ColdStart, in.ReleasedAt = k.idle, k.coldStart, k.released
}

// settledSteps are the known request counts up to the settled step,
// oldest first.
func settledSteps(counts []tsdb.Sample, settled time.Time) []tsdb.Sample {
	var out []tsdb.Sample
	for _, c := range counts {
		if c.At.After(settled) || math.IsNaN(c.Value) || math.IsInf(c.Value, 0) || c.Value < 0 {
			continue
		}
		out = append(out, c)
	}
	return out
}

// foldBursts walks the settled steps after the stored burst end and folds
// each gap between bursts into the histogram once. A gap runs from the
// last step a burst showed in to the last quiet step before the next one
// (one step before the next burst's first when that quiet step is out of
// view): the next burst's first request came after that quiet step and
// no later than the step that saw it, so the gap is measured to the
// earliest it can have come. Learned keep-alive counts its pre-warm from
// the last invocation by the same measure, so it aims at the earliest
// arrival, not at a step that may close after the burst began. A burst's
// gap is folded
// when it starts after the last confirmed end and no start was recorded
// since that end (FoldedTo, the key that makes a replay fold nothing). It
// returns the keep-alive columns to store and how many gaps it folded.
//
// The first burst ever seen folds no gap (where the one before it ended is
// unknown), and neither does the first one after a burst whose end the
// lookback no longer shows (the autoscaler was away longer than it): a gap
// is left out rather than guessed.
func foldBursts(stored store.KeepAlive, idle policy.IdleHistogram, steps []tsdb.Sample, step time.Duration) (store.KeepAlive, int) {
	next := stored
	end, start := stored.BurstEnd, stored.FoldedTo
	inBurst := start.After(end)
	var last time.Time  // the newest invoked step of the current burst in view
	var quiet time.Time // the newest quiet step in view
	folded := 0
	for _, s := range steps {
		// Steps less than a step past the burst's end see nothing new: the
		// quiet step one step after the end confirmed that no request
		// came in the window before it, so a step before it sees only
		// the burst's own requests, or (a window shorter than the step)
		// requests between two windows of the end's grid, which no
		// cycle on that grid saw either. A cycle whose grid is not the
		// one the end was found on (the scale function's grid moves
		// with now) sees the burst's last requests at such steps, and
		// they are no new burst.
		if s.At.Before(end.Add(step)) {
			continue
		}
		if s.Value == 0 {
			quiet = s.At
		}
		switch {
		case s.Value > 0 && !inBurst:
			if !end.IsZero() {
				from := s.At.Add(-step)
				if quiet.After(end) {
					from = quiet
				}
				idle = idle.Observe(s.At, from.Sub(end))
				folded++
			}
			start, inBurst, last = s.At, true, s.At
		case s.Value > 0:
			last = s.At
		case inBurst && !last.IsZero():
			// The burst's first step, stored by a cycle on another grid,
			// may be newer than the last invoked step of this grid that
			// saw the same requests: it ended no earlier than that first
			// step, which also keeps the stored end after its start.
			end, inBurst = latest(last, start), false
		case inBurst && s.At.After(start):
			// The burst ended before the lookback shows: its end is
			// unknown, so the next gap cannot be measured.
			end, start, inBurst = time.Time{}, time.Time{}, false
		}
	}
	next.BurstEnd, next.FoldedTo = end, start
	if folded > 0 {
		next.Histogram = idle.Encode()
	}
	return next, folded
}

// measureColdStart completes a cold start being measured: from the write
// that took the version above zero (ColdFrom) to the first step whose
// instance count is above zero. The step is the resolution, so the figure
// is high by up to one step, which makes a pre-warm early rather than
// late. done is true when the measurement ends, learned or not: a
// version that was written back to zero before any worker reported, or
// that already had a worker reporting at the write (no cold start), ends
// it without learning, and cs is then the stored estimate unchanged.
func measureColdStart(st store.ScalingState, instances []tsdb.Sample, step time.Duration) (cs policy.ColdStart, done bool) {
	k := st.KeepAlive
	cs = policy.ColdStart{Seconds: k.ColdStartSeconds, Weight: k.ColdStartWeight, UpdatedAt: k.ColdStartAt}
	from := k.ColdFrom
	if from.IsZero() {
		return cs, false
	}
	if st.HasLastRequested && st.LastRequested == 0 && st.LastWrittenAt.After(from) {
		return cs, true // written back to zero before a worker came
	}
	for _, c := range instances {
		if math.IsNaN(c.Value) || c.Value <= 0 {
			continue
		}
		if !c.At.After(from) {
			if c.At.After(from.Add(-step)) {
				return cs, true // a worker was reporting at the write: no cold start
			}
			continue
		}
		return cs.Learn(c.At, c.At.Sub(from)), true
	}
	return cs, false
}

// prewarmOutcome says what became of a pending pre-warm: "used" when the
// next burst came while its instance was up, "late" when the burst came
// before the instance reported (a cold start, if a shorter one), "wasted"
// when the version was written back to zero with no invocation since the
// pre-warm; "" while it is still pending.
func prewarmOutcome(k keepAlive, st store.ScalingState, m tsdb.VersionMetrics) string {
	if k.prewarmAt.IsZero() {
		return ""
	}
	for _, c := range settledSteps(m.RequestCounts, m.SettledAt) {
		if c.Value > 0 && c.At.After(k.prewarmAt) {
			if up := valueAt(m.InstanceCounts, c.At); up > 0 {
				return "used"
			}
			return "late"
		}
	}
	if st.HasLastRequested && st.LastRequested == 0 && st.LastWrittenAt.After(k.prewarmAt) &&
		!m.LastInvokedAt.After(k.prewarmAt) && !k.burstEnd.After(k.prewarmAt) {
		return "wasted"
	}
	return ""
}

// valueAt is the sample at t, 0 when there is none.
func valueAt(samples []tsdb.Sample, t time.Time) float64 {
	for _, s := range samples {
		if s.At.Equal(t) && !math.IsNaN(s.Value) {
			return s.Value
		}
	}
	return 0
}
