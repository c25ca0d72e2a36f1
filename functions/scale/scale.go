// Package scale handles one bucket event: it reads the bucket's function
// versions from Cassandra, fetches their metrics with a constant number of
// PromQL queries, asks the pure policy for each version's desired instances,
// and writes changed counts to the NVCF API under a per-version LWT lock.
// It also handles activation events: an immediate 0 -> min for a version
// invoked while at zero, without waiting for the next cycle.
//
// The handler keeps no state between events. What makes replays, late
// events and concurrent replicas harmless is in Cassandra: a version's
// state row records the last cycle whose decision was applied, and it is
// read under the version's lock before every write.
package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"function/shared/config"
	"function/shared/events"
	"function/shared/nvcf"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// Store is what the scale function needs from Cassandra.
type Store interface {
	ReadBucket(ctx context.Context, r bucketsRange) ([]store.ActiveVersion, error)
	ReadStates(ctx context.Context, r bucketsRange) (map[store.VersionKey]store.ScalingState, error)
	ReadState(ctx context.Context, key store.VersionKey) (store.ScalingState, error)
	ReadVersion(ctx context.Context, key store.VersionKey) (store.ActiveVersion, error)
	AcquireLock(ctx context.Context, name, owner string, ttl time.Duration) (store.Lock, error)
	ReleaseLock(ctx context.Context, name, owner string) error
	RecordWrite(ctx context.Context, key store.VersionKey, requested int, cycle int64, status string, ttl time.Duration) error
	RecordOutcome(ctx context.Context, key store.VersionKey, cycle int64, status string, notFoundAt time.Time, ttl time.Duration) error
	SaveRecommendations(ctx context.Context, key store.VersionKey, encoded string, ttl time.Duration) error
	MarkWatched(ctx context.Context, key store.VersionKey, at time.Time, ttl time.Duration) error
	TouchVersions(ctx context.Context, versions []store.ActiveVersion, ttl time.Duration) (int, error)
	UpsertVersions(ctx context.Context, versions []store.ActiveVersion, ttl time.Duration) (int, error)
}

// Metrics is what the scale function needs from the TSDB.
type Metrics interface {
	BucketMetrics(ctx context.Context, versions []tsdb.FunctionVersion, now time.Time, opts tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.VersionMetrics, error)
}

// NVCF is the write side.
type NVCF interface {
	Autoscale(ctx context.Context, req nvcf.Request) (nvcf.Result, error)
}

// Deps are the handler's collaborators.
type Deps struct {
	Settings config.Settings
	Store    Store
	TSDB     Metrics
	NVCF     NVCF
	Log      *slog.Logger
	Metrics  *telemetry.Metrics
	Now      func() time.Time // nil: time.Now
}

// Handler is the scale function.
type Handler struct {
	d        Deps
	policies *policySource
	seq      atomic.Uint64
	// activations joins concurrent activations of one version.
	activations singleflight.Group
}

// New checks the dependencies, loads the policy defaults and overrides, and
// builds the handler. An invalid default policy fails here, at Start.
func New(d Deps) (*Handler, error) {
	if d.Store == nil || d.TSDB == nil || d.NVCF == nil {
		return nil, errors.New("scale needs a store, a TSDB client and an NVCF client")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Metrics == nil {
		d.Metrics = telemetry.NewMetrics()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	// Over gRPC the NVCF API also serves per-version policies.
	configs, _ := d.NVCF.(DeploymentConfigs)
	ps, err := newPolicySource(d.Settings.Scale, configs)
	if err != nil {
		return nil, err
	}
	return &Handler{d: d, policies: ps}, nil
}

// Outcome is one version's line in the bucket reply.
type Outcome struct {
	FunctionID        string  `json:"functionId"`
	FunctionVersionID string  `json:"functionVersionId"`
	Current           int     `json:"current"`
	CurrentKnown      bool    `json:"currentKnown"`
	Utilization       float64 `json:"utilization,omitempty"`
	Desired           int     `json:"desired"`
	LastRequested     int     `json:"lastRequested"`
	Valid             bool    `json:"valid"`
	Reason            string  `json:"reason"`
	Detail            string  `json:"detail,omitempty"`
	// Action is what happened: "written", "unchanged", "held",
	// "already_applied", "locked", "not_found", "beyond_limits", "error".
	Action string `json:"action"`
	Error  string `json:"error,omitempty"`
	// Applied is what the NVCF API reports after clamping, when written.
	Applied *nvcf.Result `json:"applied,omitempty"`
}

// BucketResult is the payload of the bucket reply event.
type BucketResult struct {
	Bucket    int       `json:"bucket"`
	Buckets   int       `json:"buckets"`
	Cycle     int64     `json:"cycle"`
	Expired   bool      `json:"expired,omitempty"`
	Versions  int       `json:"versions"`
	Written   int       `json:"written"`
	Failed    int       `json:"failed"`
	Queries   int       `json:"queries"`
	ElapsedMS int64     `json:"elapsedMs"`
	Outcomes  []Outcome `json:"outcomes"`
}

// HandleBucket decides one bucket, as one span (scale.bucket) that is the
// child of discovery's cycle span when the event carries its context.
func (h *Handler) HandleBucket(ctx context.Context, e event.Event) (*event.Event, error) {
	ctx, span := startSpan(ctx, e, "scale.bucket")
	reply, err := h.handleBucket(ctx, e, span)
	telemetry.EndSpan(span, err)
	return reply, err
}

func (h *Handler) handleBucket(ctx context.Context, e event.Event, span trace.Span) (*event.Event, error) {
	start := h.d.Now()
	b, err := events.ParseBucket(e)
	if err == nil {
		b, err = b.Bound(e.ID(), events.Bounds{Now: start, Skew: h.d.Settings.ClockSkew, Deadline: h.d.Settings.Discovery.BucketDeadline})
	}
	if err != nil {
		return nil, err
	}
	traceBucket(span, b)
	if b.Buckets != h.d.Settings.Buckets {
		// A bucket from a discovery with another BUCKETS setting covers a
		// different token range; acting on it is still correct (ranges are
		// exact for any count), so it is only worth a warning.
		h.d.Log.Warn("bucket count differs from this replica's BUCKETS", "event_buckets", b.Buckets, "buckets", h.d.Settings.Buckets)
	}
	log := h.d.Log.With("bucket", b.Bucket, "cycle", b.Cycle, "event_id", e.ID())
	res := BucketResult{Bucket: b.Bucket, Buckets: b.Buckets, Cycle: b.Cycle, Outcomes: []Outcome{}}
	if start.After(b.Deadline) {
		// A late event acts on stale metrics and overlaps the next cycle;
		// the next cycle decides these versions anyway.
		res.Expired = true
		span.SetAttributes(attribute.Bool("autoscaler.expired", true))
		log.Info("bucket event past its deadline; dropped", "deadline", b.Deadline)
		return events.NewReply(e, events.TypeBucketResult, res)
	}
	ctx, cancel := context.WithDeadline(ctx, b.Deadline)
	defer cancel()
	defer func() { h.d.Metrics.BucketDuration.Observe(time.Since(start).Seconds()) }()

	r := b.Range()
	rows, err := h.d.Store.ReadBucket(ctx, r)
	if err != nil {
		return nil, events.Unavailable("bucket %d cycle %d: %v", b.Bucket, b.Cycle, err)
	}
	res.Versions = len(rows)
	span.SetAttributes(attribute.Int("autoscaler.versions", res.Versions))
	if len(rows) == 0 {
		return events.NewReply(e, events.TypeBucketResult, res)
	}
	states, err := h.d.Store.ReadStates(ctx, r)
	if err != nil {
		return nil, events.Unavailable("bucket %d cycle %d: %v", b.Bucket, b.Cycle, err)
	}

	fvs := make([]tsdb.FunctionVersion, len(rows))
	for i, v := range rows {
		fvs[i] = tsdb.FunctionVersion{FunctionID: v.FunctionID, FunctionVersionID: v.FunctionVersionID, NcaID: v.NcaID}
	}
	s := h.d.Settings.Scale
	metrics, err := h.d.TSDB.BucketMetrics(tsdb.WithCaller(ctx, "scale"), fvs, start, tsdb.MetricsOptions{
		Window: s.Window, Step: s.Step, Lookback: s.Lookback,
		Filter: tsdb.LabelFilter{Name: h.d.Settings.EnvLabel, Value: h.d.Settings.EnvValue},
	})
	if err != nil {
		// Unknown metrics mean hold, never down: nothing is written, and
		// the 503 lets Knative retry while the deadline allows.
		log.Error("bucket metrics unavailable; holding every version", "error", err.Error())
		for _, v := range rows {
			h.d.Metrics.VersionStatus(v.FunctionID, v.FunctionVersionID, telemetry.StatusTSDBError)
		}
		h.d.Metrics.Decisions.WithLabelValues("hold_metrics_error").Add(float64(len(rows)))
		return nil, events.Unavailable("bucket %d cycle %d: metrics unavailable, holding %d versions: %v", b.Bucket, b.Cycle, len(rows), err)
	}

	outcomes := make([]Outcome, len(rows))
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.Concurrency)
	for i, v := range rows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m, ok := metrics[fvs[i]]
			outcomes[i] = h.decideAndApply(ctx, log, b.Cycle, start, v, states[v.VersionKey], m, ok)
		}()
	}
	wg.Wait()

	var touch []store.ActiveVersion
	var newestSample time.Time
	for i, o := range outcomes {
		switch o.Action {
		case "written":
			res.Written++
		case "error":
			res.Failed++
		}
		// Refresh the row TTL of versions still meant to run, so a version
		// that discovery briefly misses does not age out under its workers.
		// Discovery rewrites rows it sees each cycle, so only stale rows
		// need the extra write.
		if o.Desired > 0 && start.Sub(rows[i].LastUpdatedAt) > s.RowTTL/3 {
			touch = append(touch, rows[i])
		}
		if m, ok := metrics[fvs[i]]; ok && len(m.Utilization) > 0 {
			if at := m.Utilization[len(m.Utilization)-1].At; at.After(newestSample) {
				newestSample = at
			}
		}
	}
	if !newestSample.IsZero() {
		h.d.Metrics.SampleAge.Set(start.Sub(newestSample).Seconds())
	}
	if len(touch) > 0 {
		if _, err := h.d.Store.TouchVersions(ctx, touch, s.RowTTL); err != nil {
			log.Warn("refresh row TTLs", "error", err.Error(), "rows", len(touch))
		}
	}
	sort.Slice(outcomes, func(i, j int) bool {
		if outcomes[i].FunctionID != outcomes[j].FunctionID {
			return outcomes[i].FunctionID < outcomes[j].FunctionID
		}
		return outcomes[i].FunctionVersionID < outcomes[j].FunctionVersionID
	})
	res.Outcomes = outcomes
	traceOutcomes(span, outcomes)
	res.ElapsedMS = time.Since(start).Milliseconds()
	log.Info("bucket decided", "versions", res.Versions, "written", res.Written, "failed", res.Failed, "elapsed_ms", res.ElapsedMS)
	if res.Failed > 0 {
		// Versions already written in this cycle are skipped on the retry
		// (their state records the cycle), so only the failures repeat.
		return nil, events.Unavailable("bucket %d cycle %d: %d of %d NVCF writes failed and will be retried", b.Bucket, b.Cycle, res.Failed, res.Versions)
	}
	return events.NewReply(e, events.TypeBucketResult, res)
}

// decideAndApply runs the policy for one version and writes the result if
// it changed.
func (h *Handler) decideAndApply(ctx context.Context, log *slog.Logger, cycle int64, now time.Time, v store.ActiveVersion, st store.ScalingState, m tsdb.VersionMetrics, haveMetrics bool) Outcome {
	log = log.With("function_id", v.FunctionID, "function_version_id", v.FunctionVersionID)
	key := v.VersionKey
	o := Outcome{FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, LastRequested: st.LastRequested}
	s := h.d.Settings.Scale

	if st.Status == statusNotFound && now.Sub(st.NotFoundAt) < s.NotFoundRetry {
		o.Action, o.Reason = "not_found", "not_found_cached"
		o.Desired = st.LastRequested
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusNotFound)
		return o
	}

	p, pnote := h.policies.For(ctx, v)
	recent := decodeHistory(st.Recommendations)
	if len(recent) == 0 && haveMetrics && m.InstancesKnown {
		// First sight of this version (or the autoscaler is new): what is
		// running now stands as the recommendation in force, as HPA seeds
		// its history, so a fresh install cannot scale everything down in
		// its first cycle before the stabilization window saw anything.
		recent = history{{At: now.UnixMilli(), Count: max(m.Instances, st.LastRequested)}}
	}
	in := policy.Input{
		Now:                now,
		LastRequested:      st.LastRequested,
		LastRequestedKnown: st.HasLastRequested,
		MetricsOK:          true,
		Recent:             recent.forPolicy(now, p.ScaleDownStabilization),
	}
	if haveMetrics {
		in.Current, in.CurrentKnown = m.Instances, m.InstancesKnown
		in.Utilization = toSamples(m.Utilization)
	}
	in.LastInvokedAt, in.InvocationsSince = invocationEvidence(now, s, v, st, m)
	if st.WatchSince.IsZero() {
		if err := h.d.Store.MarkWatched(ctx, key, now, s.StateTTL); err != nil {
			log.Warn("mark version watched", "error", err.Error())
		}
	}
	d := policy.Decide(p, in)
	o.Current, o.CurrentKnown = in.Current, in.CurrentKnown
	if n := len(in.Utilization); n > 0 {
		o.Utilization = finiteOrZero(in.Utilization[n-1].Value)
	}
	o.Desired, o.Valid, o.Reason, o.Detail = d.Desired, d.Valid, string(d.Reason), d.Detail
	if pnote != "" {
		o.Detail += "; " + pnote
	}
	h.d.Metrics.Decisions.WithLabelValues(o.Reason).Inc()
	h.d.Metrics.VersionDecision(key.FunctionID, key.FunctionVersionID, o.Current, o.Desired, o.Utilization)

	if d.Valid {
		if next, changed := recent.add(now, d.Recommendation, p.ScaleDownStabilization); changed || st.Recommendations == "" {
			if err := h.d.Store.SaveRecommendations(ctx, key, next.encode(), s.StateTTL); err != nil {
				log.Warn("save recommendation history", "error", err.Error())
			}
		}
	}

	switch {
	case !d.Valid:
		o.Action = "held"
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusHeld)
	case st.HasLastRequested && d.Desired == st.LastRequested:
		o.Action = "unchanged"
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case st.LastCycle >= cycle:
		// This cycle (or a newer one) already wrote this version: the
		// event is a replay or arrived late.
		o.Action = "already_applied"
	default:
		h.write(ctx, log, &o, v, d.Desired, cycle, func(fresh store.ScalingState) (bool, string) {
			if fresh.LastCycle >= cycle {
				return false, "already_applied"
			}
			if fresh.HasLastRequested && fresh.LastRequested == d.Desired {
				return false, "unchanged"
			}
			return true, ""
		})
	}
	// The recommendation, the decision time the history is stamped with and
	// the newest sample's time let a reader (the closed-loop tests) tie each
	// NVCF write to the inputs that caused it instead of to the wall clock.
	var sampleAt time.Time
	if n := len(in.Utilization); n > 0 {
		sampleAt = in.Utilization[n-1].At
	}
	log.Info("decision", "current", o.Current, "desired", o.Desired, "recommendation", d.Recommendation,
		"last_requested", o.LastRequested, "utilization", o.Utilization, "sample_at", sampleAt, "decided_at", now,
		"valid", o.Valid, "reason", o.Reason, "action", o.Action, "detail", o.Detail, "error", o.Error)
	return o
}

const (
	statusOK           = "ok"
	statusNotFound     = "not_found"
	statusBeyondLimits = "beyond_limits"
)

// lockName is the per-version write lock.
func lockName(key store.VersionKey) string {
	return "fn:" + key.FunctionID + ":" + key.FunctionVersionID
}

// write takes the version's lock, re-reads its state (another replica may
// have written it since the bucket was read), lets stillNeeded veto, writes
// to the NVCF API, and records the outcome. cycle is stored as the applied
// cycle; activations pass the state's own cycle so they never block the
// next bucket decision.
func (h *Handler) write(ctx context.Context, log *slog.Logger, o *Outcome, v store.ActiveVersion, desired int, cycle int64,
	stillNeeded func(store.ScalingState) (bool, string)) {
	s := h.d.Settings.Scale
	key := v.VersionKey
	// Unique per write attempt: two events for the same version in one
	// process (a redelivery racing the original, concurrent activations)
	// must not share a lease, or both would pass the lock.
	owner := fmt.Sprintf("%s/%d/%d", h.d.Settings.NodeID, cycle, h.seq.Add(1))
	_, err := h.d.Store.AcquireLock(ctx, lockName(key), owner, s.FunctionLockTTL)
	h.d.Metrics.Lock("function", err)
	var held *store.HeldError
	if errors.As(err, &held) {
		// Another replica is writing this version right now; it decides
		// from the same inputs, so there is nothing left to do here.
		o.Action = "locked"
		return
	}
	if err != nil {
		o.Action, o.Error = "error", err.Error()
		return
	}
	defer func() {
		if err := h.d.Store.ReleaseLock(context.WithoutCancel(ctx), lockName(key), owner); err != nil {
			log.Warn("release function lock", "error", err.Error())
		}
	}()
	fresh, err := h.d.Store.ReadState(ctx, key)
	if err != nil {
		o.Action, o.Error = "error", err.Error()
		return
	}
	if ok, why := stillNeeded(fresh); !ok {
		o.Action = why
		return
	}
	if fresh.HasLastRequested && fresh.LastCycle > cycle {
		cycle = fresh.LastCycle
	}
	// The write must end while the lock is held, or a second writer could
	// start before this one's record lands.
	wctx, cancel := context.WithTimeout(ctx, s.FunctionLockTTL-time.Second)
	defer cancel()
	result, err := h.d.NVCF.Autoscale(wctx, nvcf.Request{
		FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, NcaID: v.NcaID, Instances: desired,
	})
	rctx := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		if rerr := h.d.Store.RecordWrite(rctx, key, desired, cycle, statusOK, s.StateTTL); rerr != nil {
			// The NVCF write happened; failing to record it means the next
			// cycle may write the same count again, which NVCF treats as a
			// no-op. Report it so the bucket is retried promptly.
			o.Action, o.Error = "error", "written but not recorded: "+rerr.Error()
			return
		}
		o.Action, o.Applied = "written", &result
		h.d.Metrics.Writes.WithLabelValues("ok").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case errors.Is(err, nvcf.ErrNotFound):
		o.Action, o.Error = "not_found", err.Error()
		h.d.Metrics.Writes.WithLabelValues("not_found").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusNotFound)
		if rerr := h.d.Store.RecordOutcome(rctx, key, fresh.LastCycle, statusNotFound, h.d.Now(), s.StateTTL); rerr != nil {
			log.Warn("record not-found outcome", "error", rerr.Error())
		}
	case errors.Is(err, nvcf.ErrBeyondLimits):
		o.Action, o.Error = "beyond_limits", err.Error()
		h.d.Metrics.Writes.WithLabelValues("beyond_limits").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusBeyondLimits)
		if rerr := h.d.Store.RecordOutcome(rctx, key, cycle, statusBeyondLimits, time.Time{}, s.StateTTL); rerr != nil {
			log.Warn("record beyond-limits outcome", "error", rerr.Error())
		}
	default:
		o.Action, o.Error = "error", err.Error()
		h.d.Metrics.Writes.WithLabelValues("error").Inc()
		code := telemetry.StatusError
		if errors.Is(err, nvcf.ErrRateLimited) {
			code = telemetry.StatusRateLimited
		}
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, float64(code))
	}
}

// invocationEvidence combines what the TSDB saw inside its lookback with
// what discovery recorded in Cassandra, returning the newest invocation and
// since when the absence of invocations is known.
//
// An invoked row says discovery saw invocations within its lookback when it
// wrote the row, so the row time minus the lookback is a safe lower bound
// for the last invocation. A missing invoked row says no invocation for the
// row TTL, but only over the span this function has watched the version: a
// fresh install or a wiped keyspace is no evidence of idleness.
func invocationEvidence(now time.Time, s config.Scale, v store.ActiveVersion, st store.ScalingState, m tsdb.VersionMetrics) (last, since time.Time) {
	last = m.LastInvokedAt
	if !v.InvokedAt.IsZero() {
		if fromRow := v.InvokedAt.Add(-s.Lookback); fromRow.After(last) {
			last = fromRow
		}
	}
	since = now.Add(-s.Lookback)
	if v.InvokedAt.IsZero() {
		watched := st.WatchSince
		if watched.IsZero() {
			watched = now
		}
		evidence := now.Add(-s.RowTTL)
		if watched.After(evidence) {
			evidence = watched
		}
		if evidence.Before(since) {
			since = evidence
		}
	}
	return last, since
}

func finiteOrZero(f float64) float64 {
	if f != f || f > 1e308 || f < -1e308 {
		return 0
	}
	return f
}
