package scale

// Deciding: the pure policy over what gathering found, and the
// recommendation history it needs from one cycle to the next.

import (
	"context"
	"log/slog"
	"time"

	"function/shared/policy"
	"function/shared/store"
	"function/shared/telemetry"
)

// decideAndApply decides one version from what was gathered and applies
// the decision: the pure policy in between gathering and writing.
//
// log names the version and its source already: the bucket's loop adds
// them in one With.
func (h *Handler) decideAndApply(ctx context.Context, log *slog.Logger, cycle int64, now time.Time, v store.ActiveVersion, st store.ScalingState, obs observation) Outcome {
	key := v.VersionKey
	o := Outcome{FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, LastRequested: st.LastRequested}
	s := h.d.Settings.Scale

	if st.Status == statusNotFound && now.Sub(st.NotFoundAt) < s.NotFoundRetry {
		o.Action, o.Reason = "not_found", "not_found_cached"
		o.Desired = st.LastRequested
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusNotFound)
		return o
	}
	m, haveMetrics := obs.metrics, obs.known

	p, pnote := h.policies.For(ctx, v)
	recent := decodeHistory(st.Recommendations)
	if len(recent) == 0 && haveMetrics && m.InstancesKnown {
		// First sight of this version (or the autoscaler is new): what is
		// running now stands as the recommendation in force, as HPA seeds
		// its history, so a fresh install cannot scale everything down in
		// its first cycle before the stabilization window saw anything.
		recent = history{{At: now.UnixMilli(), Count: max(m.Instances, lastTarget(st))}}
	}
	in := h.input(now, v, st, obs, recent.forPolicy(now, p.RecommendationWindow(), p.ScaleDownStabilization))
	if st.WatchSince.IsZero() {
		if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.Watched(now) }); err != nil {
			log.Warn("mark version watched", "error", err.Error())
		}
	}
	d := policy.Decide(p, in)
	o.Current, o.CurrentKnown = in.Current, in.CurrentKnown
	if n := len(in.Utilization); n > 0 {
		o.Utilization = finiteOrZero(in.Utilization[n-1].Value)
	}
	o.Desired, o.Valid, o.Reason, o.Detail = d.Desired, d.Valid, string(d.Reason), d.Detail+obs.note
	if pnote != "" {
		o.Detail += "; " + pnote
	}
	h.d.Metrics.Decisions.WithLabelValues(o.Reason).Inc()
	h.d.Metrics.VersionDecision(key.FunctionID, key.FunctionVersionID, o.Current, o.Desired, o.Utilization)

	if d.Valid {
		h.saveHistory(ctx, log, key, recent, now, d.Recommendation, p.RecommendationWindow())
	}

	running := -1
	if in.CurrentKnown {
		running = in.Current
	}
	h.apply(ctx, log, &o, v, st, d, cycle, running)
	h.recordKeepAlive(ctx, log, o, v, st, in, d, obs)
	o.watch = watchAtZero(p, in, d)
	// The source is on log already (the bucket's loop names it for every
	// line of the version): naming it again wrote "source" twice into
	// each decision line, a JSON object some log pipelines refuse.
	if level := decisionLevel(o, s.LogUnchanged); log.Enabled(ctx, level) {
		logDecisionAt(log, level, o, in, d, append(keepAliveFields(p, in), learnedFields(obs)...)...)
	}
	return o
}

// decisionLevel is the level of a decision's line: info, except that a
// decision asking the count already asked (action unchanged) goes to
// debug when DECISION_LOG_UNCHANGED is false. At 100,000 versions those
// are nearly all of a cycle's 100,000 lines, which cost the scale process
// about a sixth of its CPU and a log pipeline 100,000 lines a minute;
// holds, writes, errors and clamps stay at info, where operators look.
func decisionLevel(o Outcome, logUnchanged bool) slog.Level {
	if o.Action == "unchanged" && !logUnchanged {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// learnedFields are the decision log's learned-cost and backlog fields, on
// every line: target mode sizes a step from them, so a step sized too
// small or too large is explained by the line before it (a cost learned
// a few percent low sizes 7 where 8 were needed). The cost is given as
// soon as there is one, with the requests behind it (policy.CostMinRequests
// of them make it usable); -1 means none.
func learnedFields(o observation) []slog.Attr {
	cost, weight, backlog := -1.0, -1.0, -1.0
	if c := o.cost; !c.Early && finite(c.SecondsPerRequest) && c.SecondsPerRequest > 0 && finite(c.Weight) {
		cost, weight = c.SecondsPerRequest, c.Weight
	}
	if o.backlog.Known() {
		backlog = o.backlog.Requests
	}
	return []slog.Attr{slog.Float64("cost_s", cost), slog.Float64("cost_requests", weight), slog.Float64("backlog_requests", backlog)}
}

// watchAtZero reports whether a version at zero must stay in its bucket
// although discovery no longer lists it: learned keep-alive may pre-warm
// it, which only a decision can do. That lasts while its histogram is
// representative and the gap so far is inside the histogram's range;
// beyond it no pre-warm can come, and the version drops out of the buckets
// as every idle version does, until an invocation brings it back.
func watchAtZero(p policy.Policy, in policy.Input, d policy.Decision) bool {
	return d.Valid && d.Desired == 0 && p.ScaleToZero && p.KeepAlive == policy.KeepAliveLearned && in.Idle.Representative() &&
		!in.LastInvokedAt.IsZero() && in.Now.Sub(in.LastInvokedAt) < in.Idle.Range()
}

// keepAliveFields are the decision log's keep-alive fields, on every line
// whatever the mode, so that a reader can see what learned keep-alive
// would read before it is switched on: the mode, the decayed gap count,
// the keep-alive and pre-warm percentiles of the idle histogram (-1 when
// it has none), the learned cold start (-1 when unknown), and the last
// invocation the idle rules counted from.
func keepAliveFields(p policy.Policy, in policy.Input) []slog.Attr {
	pct := func(q float64) float64 {
		if d, ok := in.Idle.Percentile(q / 100); ok {
			return d.Seconds()
		}
		return -1
	}
	cold := -1.0
	if in.ColdStart.Known() {
		cold = in.ColdStart.Seconds
	}
	return []slog.Attr{slog.String("keep_alive", string(p.KeepAlive)), slog.Float64("idle_gaps", in.Idle.Gaps()),
		slog.Bool("idle_representative", in.Idle.Representative()),
		slog.Float64("idle_keep_alive_s", pct(p.KeepAlivePercentile)), slog.Float64("idle_prewarm_s", pct(p.PrewarmPercentile)),
		slog.Float64("cold_start_s", cold), slog.Time("last_invoked_at", in.LastInvokedAt), slog.Time("released_at", in.ReleasedAt)}
}

// logDecision writes a decision's line, the same fields for every source
// (extra adds what the logger does not carry yet). The recommendation, the
// decision time the history is stamped with and the newest sample's time
// let a reader (the closed-loop tests) tie each NVCF write to the inputs
// that caused it instead of to the wall clock: decided_at bounds the write
// a decision made, and without it two decisions asking the same count
// could swap writes. The fields are typed attributes, not key-value
// pairs: there is a line per version each cycle, and boxing each value
// into an interface was a sixth of what a line costs.
func logDecision(log *slog.Logger, o Outcome, in policy.Input, d policy.Decision, extra ...slog.Attr) {
	logDecisionAt(log, slog.LevelInfo, o, in, d, extra...)
}

// logDecisionAt is logDecision at level.
func logDecisionAt(log *slog.Logger, level slog.Level, o Outcome, in policy.Input, d policy.Decision, extra ...slog.Attr) {
	var sampleAt time.Time
	if n := len(in.Utilization); n > 0 {
		sampleAt = in.Utilization[n-1].At
	}
	log.LogAttrs(context.Background(), level, "decision", append(extra, slog.Int("current", o.Current), slog.Int("desired", o.Desired),
		slog.Int("recommendation", d.Recommendation), slog.Int("last_requested", o.LastRequested), slog.Float64("utilization", o.Utilization),
		slog.Time("sample_at", sampleAt), slog.Time("decided_at", in.Now), slog.Bool("valid", o.Valid), slog.String("reason", o.Reason),
		slog.String("action", o.Action), slog.String("detail", o.Detail), slog.String("error", o.Error), slog.Int("clamped_to", clampedTo(o)))...)
}

// clampedTo is the decision log's clamped_to: the count NVCF targets
// instead of the request, or -1 when it did not clamp (or said nothing).
func clampedTo(o Outcome) int {
	if o.ClampedTo == nil {
		return -1
	}
	return *o.ClampedTo
}

func finiteOrZero(f float64) float64 {
	if f != f || f > 1e308 || f < -1e308 {
		return 0
	}
	return f
}
