// Package scale handles one bucket event: it reads the bucket's function
// versions from Cassandra, fetches their metrics with a constant number of
// PromQL queries, asks the pure policy for each version's desired instances,
// and writes changed counts to the NVCF API, each under a write claim on
// the version's state row (one LWT).
// It also handles activation events: an immediate 0 -> min for a version
// invoked while at zero, without waiting for the next cycle.
//
// The handler keeps no state between events. What makes replays, late
// events and concurrent replicas harmless is in Cassandra: a version's
// state row records the last cycle whose decision was applied and its
// last write claim, and a write is made only under a claim that applies
// if nobody claimed the version since the state decided from was read.
package scale

import (
	"context"
	"errors"
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
	ClaimWrite(ctx context.Context, key store.VersionKey, c store.WriteClaim, prev string, lease, ttl time.Duration) error
	SettleClaim(ctx context.Context, key store.VersionKey, owner string, ttl time.Duration) error
	RecordWriteTarget(ctx context.Context, key store.VersionKey, claim string, requested, target int, cycle int64, status string, ttl time.Duration) error
	RecordOutcome(ctx context.Context, key store.VersionKey, claim string, cycle int64, status string, notFoundAt time.Time, ttl time.Duration) error
	// SaveState makes a version's plain state writes (what a decision
	// learned) as one write.
	SaveState(ctx context.Context, key store.VersionKey, u store.StateUpdate, ttl time.Duration) error
	// SaveStates makes a decision's gathered state writes, several
	// versions' to a request; it returns the writes that failed, each
	// with its own request's error.
	SaveStates(ctx context.Context, writes []store.StateWrite, ttl time.Duration) []store.FailedStateWrite
	SettlePrewarm(ctx context.Context, key store.VersionKey, at time.Time) (bool, error)
	TouchVersions(ctx context.Context, versions []store.ActiveVersion, ttl time.Duration) (int, error)
	UpsertVersions(ctx context.Context, versions []store.ActiveVersion, ttl time.Duration) (int, error)
}

// Metrics is what the scale function needs from the TSDB.
type Metrics interface {
	BucketMetrics(ctx context.Context, versions []tsdb.FunctionVersion, now time.Time, opts tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.VersionMetrics, error)
	ControlPlaneMetrics(ctx context.Context, versions []tsdb.FunctionVersion, now time.Time, opts tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.ControlPlaneMetrics, error)
	GatewayMetrics(ctx context.Context, functionIDs []string, now time.Time, opts tsdb.MetricsOptions) (map[string]tsdb.GatewayMetrics, error)
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
	FunctionID        string `json:"functionId"`
	FunctionVersionID string `json:"functionVersionId"`
	// Source is the metric source the decision was made from: worker,
	// gateway or control_plane.
	Source        string  `json:"source,omitempty"`
	Current       int     `json:"current"`
	CurrentKnown  bool    `json:"currentKnown"`
	Utilization   float64 `json:"utilization,omitempty"`
	Desired       int     `json:"desired"`
	LastRequested int     `json:"lastRequested"`
	Valid         bool    `json:"valid"`
	Reason        string  `json:"reason"`
	Detail        string  `json:"detail,omitempty"`
	// Action is what happened: "written", "unchanged", "held",
	// "already_applied", "locked", "not_found", "beyond_limits", "error",
	// "clamped" (not written: NVCF would clamp the count to the max it
	// clamped the last request to), or "not_target" (a gateway function's
	// version that its function's decision does not write).
	Action string `json:"action"`
	Error  string `json:"error,omitempty"`
	// Applied is what the NVCF API reports after clamping, when written.
	Applied *nvcf.Result `json:"applied,omitempty"`
	// ClampedTo is the count the NVCF API targets instead of the last
	// request, when it clamped that request to the version's min or max
	// instances: reported on the write and on every cycle after it that
	// leaves the request unchanged.
	ClampedTo *int `json:"clampedTo,omitempty"`
	// watch keeps the version's row alive at zero (see watchAtZero).
	watch bool
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

	// ReadMS, MetricsMS and ApplyMS split ElapsedMS into reading the
	// bucket's rows and states from Cassandra, its PromQL queries, and
	// deciding and writing (NVCF writes with their claims and records):
	// where a slow bucket waited.
	ReadMS    int64 `json:"readMs"`
	MetricsMS int64 `json:"metricsMs"`
	ApplyMS   int64 `json:"applyMs"`
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
	begun := time.Now() // the phase timings are the real clock's, whatever Now says
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
	// The reply reports this bucket's own PromQL queries; the client's
	// total mixes every bucket the replica decides at once.
	var queries atomic.Int64
	ctx = tsdb.WithQueryCount(ctx, &queries)

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
	states, err := h.readStates(ctx, r)
	if err != nil {
		return nil, events.Unavailable("bucket %d cycle %d: %v", b.Bucket, b.Cycle, err)
	}
	gathering := time.Now()
	res.ReadMS = gathering.Sub(begun).Milliseconds()

	s := h.d.Settings.Scale
	// Each version is read through one metric source; each source costs a
	// fixed number of queries for the whole bucket, none when unused.
	sources := make([]tsdb.Source, len(rows))
	var workerRows []store.ActiveVersion
	for i, v := range rows {
		sources[i] = sourceOf(v.Source, states[v.VersionKey].Source)
		if sources[i] == tsdb.SourceWorker {
			workerRows = append(workerRows, v)
		}
	}
	_, metrics, err := h.gatherMetrics(ctx, workerRows, start)
	var other otherSources
	if err == nil {
		other, err = h.gatherOtherSources(ctx, rows, sources, start)
	}
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The client went away (a dispatcher's timeout, a cancelled curl):
		// the TSDB did nothing wrong, so no ERROR line, no tsdb_error
		// status and no hold_metrics_error that would page someone.
		log.Warn("bucket request cancelled by its client before the metrics arrived; nothing written")
		return nil, events.Unavailable("bucket %d cycle %d: request cancelled by its client; nothing written", b.Bucket, b.Cycle)
	}
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
	applying := time.Now()
	res.MetricsMS = applying.Sub(gathering).Milliseconds()

	outcomes := make([]Outcome, len(rows))
	var mu sync.Mutex
	// s.Concurrency workers take the versions (and gateway functions) in
	// turn. A goroutine per version started on a fresh stack and grew it
	// for every decision (7 % of the scale function's CPU at 100,000
	// versions); a worker grows its stack once.
	jobs := make(chan func())
	var wg sync.WaitGroup
	// What the bucket's decisions learn is written once they are all
	// done, several versions to a request (flushStateWrites).
	dctx, writes := gatherStateWrites(ctx)
	for range s.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				job()
			}
		}()
	}
	gateway := map[string][]int{} // function id -> its rows here
	for i, v := range rows {
		switch sources[i] {
		case tsdb.SourceGateway:
			gateway[v.FunctionID] = append(gateway[v.FunctionID], i)
			continue
		case sourceUnknown:
			outcomes[i] = h.holdUnknownSource(log, start, v, states[v.VersionKey])
			continue
		}
		jobs <- func() {
			ctx := dctx
			fv := tsdb.FunctionVersion{FunctionID: v.FunctionID, FunctionVersionID: v.FunctionVersionID, NcaID: v.NcaID}
			st := states[v.VersionKey]
			var obs observation
			if sources[i] == tsdb.SourceControlPlane {
				m, ok := other.controlPlane[fv]
				obs = h.observeControlPlane(ctx, log, v, st, m, ok)
			} else {
				m, ok := metrics[fv]
				obs = h.observe(ctx, log, start, v, st, m, ok)
			}
			obs.keepAlive = h.learnKeepAlive(ctx, log, v.VersionKey, st, obs.metrics, obs.known)
			h.rememberSource(ctx, log, v.VersionKey, st, sources[i])
			outcomes[i] = h.decideAndApply(ctx, log.With("source", sources[i], "function_id", v.FunctionID, "function_version_id", v.FunctionVersionID),
				b.Cycle, start, v, st, obs)
			outcomes[i].Source = string(sources[i])
		}
	}
	// A gateway function is decided once, from all its versions.
	var extra []Outcome
	ref := bucketRef{index: b.Bucket, count: b.Buckets, cycle: b.Cycle}
	for fid, idx := range gateway {
		jobs <- func() {
			ctx := dctx
			fnRows := make([]store.ActiveVersion, len(idx))
			for j, i := range idx {
				fnRows[j] = rows[i]
			}
			m, ok := other.gateway[fid]
			byVersion := map[string]int{}
			for _, i := range idx {
				byVersion[rows[i].FunctionVersionID] = i
			}
			for _, o := range h.decideGateway(ctx, log, ref, start, fid, fnRows, m, ok, states) {
				if i, here := byVersion[o.FunctionVersionID]; here {
					outcomes[i] = o
					continue
				}
				mu.Lock()
				extra = append(extra, o)
				mu.Unlock()
			}
		}
	}
	close(jobs)
	wg.Wait()
	h.flushStateWrites(ctx, log, writes)

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
		// So do versions at zero that learned keep-alive may pre-warm:
		// discovery no longer sees them, and a version out of every
		// bucket is never decided.
		if (o.Desired > 0 || o.watch) && start.Sub(rows[i].LastUpdatedAt) > s.RowTTL/3 {
			touch = append(touch, rows[i])
		}
		fv := tsdb.FunctionVersion{FunctionID: rows[i].FunctionID, FunctionVersionID: rows[i].FunctionVersionID, NcaID: rows[i].NcaID}
		if m, ok := metrics[fv]; ok && len(m.Utilization) > 0 {
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
	for _, o := range extra {
		switch o.Action {
		case "written":
			res.Written++
		case "error":
			res.Failed++
		}
	}
	outcomes = append(outcomes, extra...)
	sort.Slice(outcomes, func(i, j int) bool {
		if outcomes[i].FunctionID != outcomes[j].FunctionID {
			return outcomes[i].FunctionID < outcomes[j].FunctionID
		}
		return outcomes[i].FunctionVersionID < outcomes[j].FunctionVersionID
	})
	res.Outcomes = outcomes
	traceOutcomes(span, outcomes)
	res.ElapsedMS = time.Since(start).Milliseconds()
	res.ApplyMS = time.Since(applying).Milliseconds()
	res.Queries = int(queries.Load())
	log.Info("bucket decided", "versions", res.Versions, "written", res.Written, "failed", res.Failed, "elapsed_ms", res.ElapsedMS,
		"read_ms", res.ReadMS, "metrics_ms", res.MetricsMS, "apply_ms", res.ApplyMS)
	if res.Failed > 0 {
		// Versions already written in this cycle are skipped on the retry
		// (their state records the cycle), so only the failures repeat.
		return nil, events.Unavailable("bucket %d cycle %d: %d of %d NVCF writes failed and will be retried", b.Bucket, b.Cycle, res.Failed, res.Versions)
	}
	return events.NewReply(e, events.TypeBucketResult, res)
}
