package scale

// Gathering for the gateway and control-plane metric sources: which source
// each version is decided from, their batched queries, and how their
// answers become the policy's input. The LLM gateway knows only
// function_id, so a gateway function is decided once, as a whole, and
// written to one target version.

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"function/shared/buckets"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// sourceUnknown is the source of a version that no series of any source
// shows, now or before: discovery saw only its request counters (or its
// row predates the source column). Nothing then tells how many instances
// it runs or how busy they are, nor which queries would, so it is held,
// never decided: reading it as worker threads (the reference's default)
// took a version at zero that NVCF had last been asked 0 for as known to
// run none, and remembered the guess as if it were evidence, so a
// version whose control-plane series appeared later stayed "worker".
const sourceUnknown tsdb.Source = "unknown"

// sourceOf is the metric source a version is decided from this cycle:
// evidence is what discovery's series showed when it wrote the row,
// remembered what this function decided the version from last time.
//
// Worker series win whenever they are there: a version that starts
// exporting them moves to worker threads. A worker version at zero has no
// series at all, which is no evidence it changed kind, so a remembered
// worker stays one. Gateway series beat a remembered control plane (the
// function was put behind the gateway); otherwise the remembered source
// stands, then the control plane's instance counts. A version with no
// series of any source and none remembered is sourceUnknown.
func sourceOf(evidence, remembered string) tsdb.Source {
	switch {
	case evidence == string(tsdb.SourceWorker), remembered == string(tsdb.SourceWorker):
		return tsdb.SourceWorker
	case evidence == string(tsdb.SourceGateway):
		return tsdb.SourceGateway
	case remembered == string(tsdb.SourceGateway), remembered == string(tsdb.SourceControlPlane):
		return tsdb.Source(remembered)
	case evidence == string(tsdb.SourceControlPlane):
		return tsdb.SourceControlPlane
	}
	return sourceUnknown
}

// sourceNames are the sources as metric label values, unknown included.
var sourceNames = func() []string {
	out := make([]string, 0, len(tsdb.Sources)+1)
	for _, s := range tsdb.Sources {
		out = append(out, string(s))
	}
	return append(out, string(sourceUnknown))
}()

// reasonHoldUnknownSource is the decision reason of a version of unknown
// source.
const reasonHoldUnknownSource = "hold_unknown_source"

// holdUnknownSource holds a version of unknown source at what NVCF was
// last asked: nothing is written, and the source is not remembered, so
// the first series that shows the version decides which source it is.
// The decision line and the metrics say why.
func (h *Handler) holdUnknownSource(log *slog.Logger, now time.Time, v store.ActiveVersion, st store.ScalingState) Outcome {
	key := v.VersionKey
	o := Outcome{FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, Source: string(sourceUnknown),
		LastRequested: st.LastRequested, Desired: max(st.LastRequested, 0), Reason: reasonHoldUnknownSource, Action: "held",
		Detail: "no worker-thread, LLM gateway or control-plane series, now or before: instances and load unknown"}
	h.d.Metrics.VersionSource(key.FunctionID, key.FunctionVersionID, string(sourceUnknown), sourceNames)
	h.d.Metrics.Decisions.WithLabelValues(o.Reason).Inc()
	h.d.Metrics.VersionDecision(key.FunctionID, key.FunctionVersionID, o.Current, o.Desired, o.Utilization)
	h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusHeld)
	d := policy.Decision{Desired: o.Desired, Recommendation: o.Desired, Reason: policy.Reason(o.Reason), Detail: o.Detail}
	logDecision(log.With("function_id", key.FunctionID, "function_version_id", key.FunctionVersionID), o, policy.Input{Now: now}, d,
		slog.String("source", string(sourceUnknown)))
	return o
}

// rememberSource records the source a version is decided from when it
// differs from the remembered one: one Cassandra write per change, none per
// cycle. A failed write only means the choice is made again next cycle.
func (h *Handler) rememberSource(ctx context.Context, log *slog.Logger, key store.VersionKey, st store.ScalingState, src tsdb.Source) {
	h.d.Metrics.VersionSource(key.FunctionID, key.FunctionVersionID, string(src), sourceNames)
	if st.Source == string(src) {
		return
	}
	if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.Source(string(src)) }); err != nil {
		log.Warn("remember metric source", "function_id", key.FunctionID, "function_version_id", key.FunctionVersionID,
			"source", src, "error", err.Error())
	}
}

// otherSources is what the gateway and control-plane queries returned for
// a bucket.
type otherSources struct {
	controlPlane map[tsdb.FunctionVersion]tsdb.ControlPlaneMetrics
	gateway      map[string]tsdb.GatewayMetrics
}

// gatherOtherSources runs the control-plane queries for the bucket's
// control-plane versions and the gateway queries for its gateway
// functions: a fixed number each, however many there are, and none for a
// source the bucket does not use.
func (h *Handler) gatherOtherSources(ctx context.Context, rows []store.ActiveVersion, sources []tsdb.Source, now time.Time) (otherSources, error) {
	var cp []tsdb.FunctionVersion
	var fns []string
	seen := map[string]bool{}
	for i, v := range rows {
		switch sources[i] {
		case tsdb.SourceControlPlane:
			cp = append(cp, tsdb.FunctionVersion{FunctionID: v.FunctionID, FunctionVersionID: v.FunctionVersionID, NcaID: v.NcaID})
		case tsdb.SourceGateway:
			if !seen[v.FunctionID] {
				seen[v.FunctionID] = true
				fns = append(fns, v.FunctionID)
			}
		}
	}
	opts := h.metricsOptions()
	ctx = tsdb.WithCaller(ctx, "scale")
	var out otherSources
	var err error
	if out.controlPlane, err = h.d.TSDB.ControlPlaneMetrics(ctx, cp, now, opts); err != nil {
		return out, fmt.Errorf("control-plane source: %w", err)
	}
	if out.gateway, err = h.d.TSDB.GatewayMetrics(ctx, fns, now, opts); err != nil {
		return out, fmt.Errorf("gateway source: %w", err)
	}
	return out, nil
}

// metricsOptions shape every source's batched queries alike.
func (h *Handler) metricsOptions() tsdb.MetricsOptions {
	s := h.d.Settings
	return tsdb.MetricsOptions{
		Window: s.Scale.Window, Step: s.Scale.Step, Lookback: s.Scale.Lookback,
		Filter: tsdb.LabelFilter{Name: s.EnvLabel, Value: s.EnvValue},
		Env:    tsdb.Environment(s.EnvFilter()),
	}
}

// observeControlPlane maps a control-plane answer onto what deciding
// reads, learning the version's service time on the way. The average
// instance count may be fractional while instances come and go; it is
// rounded to the nearest whole instance (2.5 reads 3, the count being
// reached). Utilization is capped at 100 % and the load beyond it is the
// demand (see slotUtilization, controlPlaneDemand).
func (h *Handler) observeControlPlane(ctx context.Context, log *slog.Logger, v store.ActiveVersion, st store.ScalingState,
	m tsdb.ControlPlaneMetrics, known bool) observation {
	o := observation{known: known, source: tsdb.SourceControlPlane, cost: storedCost(st.Cost), backlog: storedBacklog(st.Backlog)}
	if !known {
		return o
	}
	o.metrics = controlPlaneEvidence(m)
	o.metrics.Utilization, o.metrics.RequestRate = slotUtilization(m.Utilization), m.RequestRate
	o.note = overLittle(m.Utilization)
	if m.InstancesKnown {
		o.metrics.Instances, o.metrics.InstancesKnown = int(math.Round(m.Instances)), true
	}
	steps := slotSteps(m.Utilization, m.RequestRates, m.InFlights, m.InstanceCounts)
	o.cost, o.backlog = h.observeSlots(ctx, log, v, o.cost, o.backlog, steps, controlPlaneFlow(m.Concurrency), false)
	o.demand = controlPlaneDemand(m, o.cost)
	return o
}

// gatewayTarget picks the version a gateway function's decision is
// written to, among the versions nvcf_function_info lists (the only ones
// with a known nca_id). A running version comes first; among running ones
// the version this function wrote last stays chosen ("pinned") while it
// runs, so a new version coming up does not take the writes from the one
// serving; otherwise the lowest version id. With none running, the version
// last asked for instances keeps the writes while those start, else the
// lowest id. ok is false when no version is listed.
func gatewayTarget(m tsdb.GatewayMetrics, states map[string]store.ScalingState) (target tsdb.GatewayVersion, pinned, ok bool) {
	var listed, running []tsdb.GatewayVersion
	for _, v := range m.Versions { // sorted by version id
		if !v.Listed {
			continue
		}
		listed = append(listed, v)
		if v.InstancesKnown && v.Instances > 0 {
			running = append(running, v)
		}
	}
	if len(listed) == 0 {
		return tsdb.GatewayVersion{}, false, false
	}
	pool := running
	if len(pool) == 0 {
		pool = listed
	}
	var newest time.Time
	for _, v := range pool {
		st := states[v.FunctionVersionID]
		written := st.HasLastRequested && st.Source == string(tsdb.SourceGateway) && (len(running) > 0 || st.LastRequested > 0)
		if written && st.LastWrittenAt.After(newest) {
			target, pinned, newest = v, true, st.LastWrittenAt
		}
	}
	if !pinned {
		target = pool[0]
	}
	return target, pinned, true
}

// gatewayStates returns the scaling state of every version of a gateway
// function: from the bucket's states where the version is in this bucket,
// read one by one otherwise (a function's versions hash to different
// buckets; a function has few versions).
func (h *Handler) gatewayStates(ctx context.Context, fid string, m tsdb.GatewayMetrics, bucket map[store.VersionKey]store.ScalingState) (map[string]store.ScalingState, error) {
	out := map[string]store.ScalingState{}
	for _, v := range m.Versions {
		key := store.VersionKey{FunctionID: fid, FunctionVersionID: v.FunctionVersionID}
		if st, ok := bucket[key]; ok {
			out[v.FunctionVersionID] = st
			continue
		}
		st, err := h.readState(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("gateway function %s: %w", fid, err)
		}
		out[v.FunctionVersionID] = st
	}
	return out, nil
}

// decideGateway decides one gateway function from this bucket: the
// function's utilization and the sum of its versions' instances go to the
// policy once, and the change in the total is written to the target
// version only (its own count plus the difference, never below 0). The
// bucket that holds the target decides; the function's versions in other
// buckets answer "not_target", so one cycle writes the function at most
// once, and the target's lock and applied cycle make replays and racing
// replicas harmless as for any version. It returns one outcome per row of
// the function in this bucket.
func (h *Handler) decideGateway(ctx context.Context, log *slog.Logger, b bucketRef, now time.Time, fid string, rows []store.ActiveVersion,
	m tsdb.GatewayMetrics, known bool, bucketStates map[store.VersionKey]store.ScalingState) []Outcome {
	log = log.With("function_id", fid, "source", tsdb.SourceGateway)
	byVersion := map[string]tsdb.GatewayVersion{}
	for _, v := range m.Versions {
		byVersion[v.FunctionVersionID] = v
	}
	all := func(fill func(o *Outcome)) []Outcome {
		out := make([]Outcome, len(rows))
		for i, v := range rows {
			st := bucketStates[v.VersionKey]
			gv, ok := byVersion[v.FunctionVersionID]
			// A version's own count and last request, for the record: the
			// decision is the function's.
			out[i] = Outcome{FunctionID: fid, FunctionVersionID: v.FunctionVersionID, LastRequested: st.LastRequested,
				Desired: st.LastRequested, Current: int(math.Round(gv.Instances)), CurrentKnown: ok && gv.InstancesKnown,
				Source: string(tsdb.SourceGateway)}
			fill(&out[i])
			h.rememberSource(ctx, log, v.VersionKey, st, tsdb.SourceGateway)
		}
		return out
	}
	hold := func(reason, detail string) []Outcome {
		log.Info("decision", "valid", false, "reason", reason, "action", "held", "detail", detail)
		return all(func(o *Outcome) {
			o.Reason, o.Detail, o.Action = reason, detail, "held"
			h.d.Metrics.Decisions.WithLabelValues(reason).Inc()
			h.d.Metrics.VersionStatus(o.FunctionID, o.FunctionVersionID, telemetry.StatusHeld)
		})
	}
	if !known {
		return hold(string(policy.ReasonHoldNoMetrics), "gateway function: no gateway or control-plane series for it; holding")
	}
	states, err := h.gatewayStates(ctx, fid, m, bucketStates)
	if err != nil {
		return all(func(o *Outcome) { o.Action, o.Error = "error", err.Error() })
	}
	target, pinned, ok := gatewayTarget(m, states)
	if !ok {
		return hold("hold_no_function_info", fmt.Sprintf("gateway function: nvcf_function_info lists none of its versions (%s), so there is no version to write to; holding", versionIDs(m)))
	}
	if buckets.OfVersion(fid, target.FunctionVersionID, b.count) != b.index {
		detail := fmt.Sprintf("decided per function in the bucket of its target version %s", target.FunctionVersionID)
		return all(func(o *Outcome) {
			o.Action, o.Reason, o.Detail, o.Valid = "not_target", "gateway_function", detail, true
		})
	}

	// The target's row when this bucket has it; a listed version discovery
	// has not seen (yet) is still a valid target.
	tv := store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: fid, FunctionVersionID: target.FunctionVersionID}, NcaID: target.NcaID}
	for _, v := range rows {
		if v.FunctionVersionID == target.FunctionVersionID {
			tv = v
			if tv.NcaID == "" {
				tv.NcaID = target.NcaID
			}
		}
	}
	st := states[target.FunctionVersionID]
	total, totalKnown := m.Current()
	cur := int(math.Round(total))
	own := int(math.Round(target.Instances))
	// What was last asked of the function: the target's own request plus
	// what the other versions run (they are not written by this decision).
	lastTotal := lastTarget(st)
	if !st.HasLastRequested {
		lastTotal = own
	}
	lastTotal += cur - own

	p, pnote := h.policies.For(ctx, tv)
	recent := decodeHistory(st.Recommendations)
	if len(recent) == 0 && totalKnown {
		recent = history{{At: now.UnixMilli(), Count: max(cur, lastTotal)}}
	}
	in := policy.Input{
		Now: now, Current: cur, CurrentKnown: totalKnown,
		LastRequested: lastTotal, LastRequestedKnown: st.HasLastRequested,
		Utilization: toSamples(slotUtilization(m.Utilization)), MetricsOK: true,
		Recent: recent.forPolicy(now, p.RecommendationWindow(), p.ScaleDownStabilization),
		Source: string(tsdb.SourceGateway),
	}
	// The function's service time lives in its target's row.
	steps := slotSteps(m.Utilization, m.RequestRates, m.InFlights, m.InstanceCounts)
	service, backlog := newestSlots(states)
	service, in.Backlog = h.observeSlots(ctx, log, tv, service, backlog, steps, gatewayFlow, true)
	in.Demand = gatewayDemand(m, steps, service, h.d.Settings.Scale.Window)
	in.LastInvokedAt, in.InvocationsSince = invocationEvidence(now, h.d.Settings.Scale, tv, st, tsdb.VersionMetrics{LastInvokedAt: m.LastInvokedAt})
	// Learned keep-alive is the function's, as the decision is: its
	// bursts are the gateway's answered requests, its cold start ends when
	// any version shows an instance serving, and what it learned is kept
	// in the target's row (read from whichever version's row is newest,
	// as the target may change).
	fst := gatewayKeepAliveState(states, st, tv.VersionKey, lastTotal)
	ka := gatewayEvidence(m, h.d.Settings.Scale.Step)
	obs := observation{metrics: ka, known: known, source: tsdb.SourceGateway}
	obs.keepAlive = h.learnKeepAlive(ctx, log, tv.VersionKey, fst.ScalingState, ka, known)
	obs.keepAlive.prewarmIn = fst.prewarmIn
	obs.keepAlive.applyTo(&in)
	if st.WatchSince.IsZero() {
		if err := h.saveState(ctx, tv.VersionKey, func(u *store.StateUpdate) { u.Watched(now) }); err != nil {
			log.Warn("mark version watched", "error", err.Error())
		}
	}
	d := policy.Decide(p, in)
	if d.Valid {
		h.saveHistory(ctx, log, tv.VersionKey, recent, now, d.Recommendation, p.RecommendationWindow())
	}
	// The function's desired total becomes the target's request.
	request := max(0, own+d.Desired-cur)
	how := "first running version"
	switch {
	case pinned:
		how = "pinned: written last and still running"
	case target.Instances <= 0:
		how = "no version running"
	}
	detail := fmt.Sprintf("%s%s; function total %d -> %d over %d versions, written to target %s (%s): %d %+d = %d",
		d.Detail, overLittle(m.Utilization), cur, d.Desired, len(m.Versions), target.FunctionVersionID, how, own, d.Desired-cur, request)
	if pnote != "" {
		detail += "; " + pnote
	}
	d.Desired = request
	running := -1 // the target's own instances, which its clamp is about
	if target.InstancesKnown {
		running = own
	}

	apply := func() Outcome {
		o := h.applyGateway(ctx, log, b.cycle, tv, st, p, in, d, detail, running)
		h.recordKeepAlive(ctx, log, o, tv, fst.ScalingState, in, d, obs)
		o.watch = watchAtZero(p, in, d)
		return o
	}
	var out []Outcome
	targetSeen := false
	for _, o := range all(func(o *Outcome) {}) {
		if o.FunctionVersionID != target.FunctionVersionID {
			o.Action, o.Reason, o.Valid = "not_target", "gateway_function", true
			o.Detail = "decided with its function; written to target version " + target.FunctionVersionID
			out = append(out, o)
			continue
		}
		targetSeen = true
		out = append(out, apply())
	}
	if !targetSeen {
		// The target has no row here yet; its outcome still belongs in
		// this bucket's answer, as its decision was made here.
		h.rememberSource(ctx, log, tv.VersionKey, st, tsdb.SourceGateway)
		out = append(out, apply())
	}
	return out
}

// applyGateway records and applies the target version's request; running
// is the target's own running instances (-1 when unknown).
func (h *Handler) applyGateway(ctx context.Context, log *slog.Logger, cycle int64, tv store.ActiveVersion, st store.ScalingState,
	p policy.Policy, in policy.Input, d policy.Decision, detail string, running int) Outcome {
	key := tv.VersionKey
	o := Outcome{FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, LastRequested: st.LastRequested,
		Current: in.Current, CurrentKnown: in.CurrentKnown, Desired: d.Desired, Valid: d.Valid, Reason: string(d.Reason),
		Detail: detail, Source: string(tsdb.SourceGateway)}
	if n := len(in.Utilization); n > 0 {
		o.Utilization = finiteOrZero(in.Utilization[n-1].Value)
	}
	h.d.Metrics.Decisions.WithLabelValues(o.Reason).Inc()
	h.d.Metrics.VersionDecision(key.FunctionID, key.FunctionVersionID, o.Current, o.Desired, o.Utilization)
	h.apply(ctx, log, &o, tv, st, d, cycle, running)
	// The logger carries function_id and source; the version is the target's.
	logDecision(log, o, in, d, append([]slog.Attr{slog.String("function_version_id", key.FunctionVersionID)}, keepAliveFields(p, in)...)...)
	return o
}

// controlPlaneEvidence is what learned keep-alive reads of a
// control-plane version: the requests in each window (rate times
// window), as for a worker version, and the control plane's average
// count of instances serving (nvcf_function_instances_current), which is
// what shows a cold start ended: above 0 once any reporter counts one.
func controlPlaneEvidence(m tsdb.ControlPlaneMetrics) tsdb.VersionMetrics {
	return tsdb.VersionMetrics{RequestCounts: m.RequestCounts, InstanceCounts: m.InstanceCounts, SettledAt: m.SettledAt,
		LastInvokedAt: m.LastInvokedAt}
}

// gatewayEvidence is what learned keep-alive reads of a gateway function:
// the requests the gateway answered per step, moved back to when they
// arrived (gatewayArrivals), and the sum over its versions of the
// instances the control plane reports serving. The gateway's counter is
// the only one that names the function's traffic.
func gatewayEvidence(m tsdb.GatewayMetrics, step time.Duration) tsdb.VersionMetrics {
	return tsdb.VersionMetrics{RequestCounts: gatewayArrivals(m, step), InstanceCounts: m.InstanceCounts, SettledAt: m.SettledAt,
		LastInvokedAt: m.LastInvokedAt}
}

// gatewayArrivals moves each step's answered requests back by their mean
// latency in whole steps (the duration sum's rate over the answer rate:
// the mean duration of the requests answered in the window), to the step
// they arrived in. The gateway counts a request when it answers it, so a
// request that waited for a cold start shows minutes after it came: read
// as it is, the gap before it looks longer and the one after it shorter
// by the cold start, and a gap that short makes a pre-warm look late, so
// learned keep-alive fell back to the fixed timeout on a periodic
// function (the bench's "changing" trace: 2,542 idle instance-minutes
// instead of 1,190). Whole steps, rounded down, never move a request
// before it can have arrived. A step whose latency is unknown stays
// where it was answered; one moved out of the lookback is dropped.
func gatewayArrivals(m tsdb.GatewayMetrics, step time.Duration) []tsdb.Sample {
	latency := map[int64]float64{}
	rates := map[int64]float64{}
	for _, r := range m.RequestRates {
		rates[r.At.UnixMilli()] = r.Value
	}
	for _, f := range m.InFlights {
		if r := rates[f.At.UnixMilli()]; r > 0 && finite(f.Value) && f.Value >= 0 {
			latency[f.At.UnixMilli()] = f.Value / r
		}
	}
	out := make([]tsdb.Sample, len(m.RequestCounts))
	index := map[int64]int{}
	for i, c := range m.RequestCounts {
		out[i] = tsdb.Sample{At: c.At}
		if !finite(c.Value) || c.Value < 0 {
			out[i].Value = c.Value // unknown stays unknown
		}
		index[c.At.UnixMilli()] = i
	}
	for _, c := range m.RequestCounts {
		if !finite(c.Value) || c.Value <= 0 {
			continue
		}
		at := c.At
		if l, ok := latency[c.At.UnixMilli()]; ok && step > 0 {
			at = at.Add(-time.Duration(l/step.Seconds()) * step)
		}
		if j, ok := index[at.UnixMilli()]; ok && finite(out[j].Value) && out[j].Value >= 0 {
			out[j].Value += c.Value
		}
	}
	return out
}

// functionState is a gateway function's scaling state as learned
// keep-alive reads it, and the row its pending pre-warm is stored in.
type functionState struct {
	store.ScalingState
	prewarmIn store.VersionKey
}

// gatewayKeepAliveState is the target's state with the function's
// keep-alive and its last request in place of the version's own. The
// decision is the function's, and the row it is written to may change
// (a new version, a pin that ends at zero), so each group of keep-alive
// columns is taken from the version whose group is newest: the idle
// histogram with its fold keys (so a gap folded in one row is not folded
// again into another), the cold start, a cold start being measured (only
// one begun after the last one learned ended: an older one was ended and
// cleared in another row), the pending pre-warm. The last request is the
// function's total (lastTotal) and the last write the newest of any
// version, which is when the function went to zero if it is there.
func gatewayKeepAliveState(states map[string]store.ScalingState, target store.ScalingState, targetKey store.VersionKey, lastTotal int) functionState {
	f := functionState{ScalingState: target, prewarmIn: targetKey}
	f.LastRequested = lastTotal
	k := &f.KeepAlive
	for vid, st := range states {
		if st.HasLastRequested {
			f.HasLastRequested = true
			if st.LastWrittenAt.After(f.LastWrittenAt) {
				f.LastWrittenAt = st.LastWrittenAt
			}
		}
		o := st.KeepAlive
		if latest(o.BurstEnd, o.FoldedTo).After(latest(k.BurstEnd, k.FoldedTo)) {
			k.Histogram, k.BurstEnd, k.FoldedTo = o.Histogram, o.BurstEnd, o.FoldedTo
		}
		if o.ColdStartAt.After(k.ColdStartAt) {
			k.ColdStartSeconds, k.ColdStartWeight, k.ColdStartAt = o.ColdStartSeconds, o.ColdStartWeight, o.ColdStartAt
		}
		if o.ColdFrom.After(k.ColdFrom) {
			k.ColdFrom = o.ColdFrom
		}
		if o.PrewarmAt.After(k.PrewarmAt) {
			k.PrewarmAt, k.PrewarmFor = o.PrewarmAt, o.PrewarmFor
			f.prewarmIn = store.VersionKey{FunctionID: targetKey.FunctionID, FunctionVersionID: vid}
		}
	}
	if !k.ColdFrom.After(k.ColdStartAt) {
		k.ColdFrom = time.Time{}
	}
	return f
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func versionIDs(m tsdb.GatewayMetrics) string {
	ids := make([]string, len(m.Versions))
	for i, v := range m.Versions {
		ids[i] = v.FunctionVersionID
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return "no version reports instances either"
	}
	return "instances from " + strings.Join(ids, ", ")
}

// bucketRef names the bucket and cycle a decision is made in.
type bucketRef struct {
	index, count int
	cycle        int64
}
