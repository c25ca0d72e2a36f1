// Package discovery handles the PingSource tick: one leader per cycle (an
// LWT lock whose TTL is shorter than the cron period) finds the active
// function versions in the TSDB, upserts them into Cassandra with a TTL, and
// fans out one bucket event per non-empty bucket to K_SINK, each as soon as
// its bucket's rows are written.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"function/shared/buckets"
	"function/shared/config"
	"function/shared/events"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// LockName is the discovery leader lock in the locks table.
const LockName = "discovery"

// Store is what discovery needs from Cassandra.
type Store interface {
	AcquireLock(ctx context.Context, name, owner string, ttl time.Duration) (store.Lock, error)
	ReleaseLock(ctx context.Context, name, owner string) error
	ReadStoredRows(ctx context.Context) (store.StoredRows, error)
	UpsertVersions(ctx context.Context, versions []store.ActiveVersion, ttl time.Duration) (int, error)
}

// TSDB is what discovery needs from the metrics store.
type TSDB interface {
	ActiveVersions(ctx context.Context, now time.Time, lookback time.Duration, f tsdb.Filters) ([]tsdb.ActiveVersion, tsdb.Skipped, error)
}

// Sender delivers one event to the sink; a nil error means acknowledged.
type Sender interface {
	Send(ctx context.Context, e event.Event) error
}

// Deps are the handler's collaborators.
type Deps struct {
	Settings config.Settings
	Store    Store
	TSDB     TSDB
	Sender   Sender // nil: CloudEvents over HTTP to K_SINK
	Log      *slog.Logger
	Metrics  *telemetry.Metrics
	Now      func() time.Time // nil: time.Now
}

// Handler is the discovery function.
type Handler struct {
	d Deps
}

// New checks the dependencies and builds the handler.
func New(d Deps) (*Handler, error) {
	if d.Store == nil || d.TSDB == nil {
		return nil, errors.New("discovery needs a store and a TSDB client")
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
	if d.Sender == nil {
		s, err := NewHTTPSender(d.Settings.Discovery.Sink)
		if err != nil {
			return nil, err
		}
		d.Sender = s
	}
	return &Handler{d: d}, nil
}

// Result is the payload of the discovery reply event.
type Result struct {
	Cycle      int64  `json:"cycle"`
	Skipped    bool   `json:"skipped,omitempty"`
	SkipReason string `json:"skipReason,omitempty"`
	Found      int    `json:"found"`
	Invoked    int    `json:"invoked"`
	// Upserted counts the rows written this cycle (every one a Cassandra
	// write); Writes says why, by reason (new, changed, due, fading), and
	// Unchanged counts the found versions whose rows were left alone.
	Upserted  int            `json:"upserted"`
	Writes    map[string]int `json:"writes,omitempty"`
	Unchanged int            `json:"unchanged"`
	Invalid   map[string]int `json:"invalid,omitempty"`
	// BySource counts the found versions by the source their series point
	// to ("worker", "gateway", "control_plane"; "none" for versions seen
	// only through their request counters).
	BySource    map[string]int `json:"bySource,omitempty"`
	BucketsSent []int          `json:"bucketsSent,omitempty"`
	BucketsFail []int          `json:"bucketsFailed,omitempty"`
	// QueryMS is the TSDB's answer time and ReadMS the stored rows'; the
	// two run at once, both from the cycle's start.
	QueryMS int64 `json:"queryMs"`
	ReadMS  int64 `json:"readMs"`
	// UpsertMS is the time spent writing rows; SendMS is the whole fan-out,
	// those writes included, since each bucket's rows are written just
	// before its event is sent.
	UpsertMS int64 `json:"upsertMs"`
	SendMS   int64 `json:"sendMs"`
}

// tracerName is the instrumentation scope of discovery's spans.
const tracerName = "function/functions/discovery"

// Handle runs one discovery cycle for a PingSource tick, as one span
// (discovery.cycle) whose context every bucket event carries.
func (h *Handler) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	ctx, span := otel.Tracer(tracerName).Start(telemetry.ExtractEvent(ctx, e), "discovery.cycle",
		trace.WithSpanKind(trace.SpanKindConsumer))
	reply, err := h.handle(ctx, e, span)
	telemetry.EndSpan(span, err)
	return reply, err
}

func (h *Handler) handle(ctx context.Context, e event.Event, span trace.Span) (*event.Event, error) {
	s := h.d.Settings
	now := h.d.Now()
	cycle, clamped := events.CycleOf(e, now, s.ClockSkew)
	span.SetAttributes(attribute.Int64("autoscaler.cycle", cycle), attribute.String("cloudevents.event_id", e.ID()))
	log := h.d.Log.With("cycle", cycle, "event_id", e.ID())
	if clamped {
		log.Warn("tick time ahead of this replica's clock beyond MAX_CLOCK_SKEW; cycle taken from the receive time",
			"tick_time", e.Time().UTC().Format(time.RFC3339Nano), "max_clock_skew", s.ClockSkew.String())
	}
	res := Result{Cycle: cycle}

	// The owner includes the event id: two different ticks never share a
	// lease, while Knative's redelivery of the same tick to the same pod
	// re-enters it instead of skipping its own retry.
	owner := s.NodeID + "/" + e.ID()
	_, err := h.d.Store.AcquireLock(ctx, LockName, owner, s.Discovery.LockTTL)
	h.d.Metrics.Lock("discovery", err)
	var held *store.HeldError
	span.SetAttributes(attribute.String("autoscaler.lock", lockOutcome(err)))
	if errors.As(err, &held) {
		res.Skipped = true
		res.SkipReason = fmt.Sprintf("held by %s until %s", held.Lock.Owner, held.Lock.ExpiresAt.UTC().Format(time.RFC3339))
		span.SetAttributes(attribute.String("autoscaler.lock.holder", held.Lock.Owner))
		log.Info("discovery skipped", "reason", res.SkipReason)
		h.d.Metrics.DiscoveryCycles.WithLabelValues("skipped").Inc()
		return events.NewReply(e, events.TypeDiscoveryResult, res)
	}
	if err != nil {
		h.d.Metrics.DiscoveryCycles.WithLabelValues("failed").Inc()
		return nil, events.Unavailable("discovery cycle %d: %v", cycle, err)
	}
	// On failure the lease is given back so Knative's retry (possibly on
	// another pod) can run the cycle; on success it is kept until its TTL,
	// so a duplicate tick in the same period does nothing.
	fail := func(err error) (*event.Event, error) {
		h.d.Metrics.DiscoveryCycles.WithLabelValues("failed").Inc()
		if rerr := h.d.Store.ReleaseLock(context.WithoutCancel(ctx), LockName, owner); rerr != nil {
			log.Warn("release discovery lock after failure", "error", rerr.Error())
		}
		return nil, err
	}

	// The stored rows are read while the TSDB answers: the two wait on
	// different servers, and both are on the critical path of every
	// cycle (a 100k warm cycle: 5.1 s of query, then 1.3 s of read).
	t0 := time.Now()
	type storedRows struct {
		rows store.StoredRows
		took time.Duration
		err  error
	}
	readDone := make(chan storedRows, 1)
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	go func() {
		rows, err := h.d.Store.ReadStoredRows(readCtx)
		readDone <- storedRows{rows, time.Since(t0), err}
	}()
	found, skipped, err := h.d.TSDB.ActiveVersions(tsdb.WithCaller(ctx, "discovery"), now, s.Discovery.Lookback, Filters(s))
	res.QueryMS = time.Since(t0).Milliseconds()
	h.d.Metrics.CycleDuration.WithLabelValues("query").Observe(time.Since(t0).Seconds())
	if err != nil {
		stopRead()
		<-readDone
		log.Error("discovery query failed; nothing upserted", "error", err.Error())
		return fail(events.Unavailable("discovery cycle %d: query active versions: %v", cycle, err))
	}
	res.Found = len(found)
	res.Invalid = skipped.Reasons()
	span.SetAttributes(attribute.Int("autoscaler.versions.found", res.Found))

	perBucket := map[int]int{}
	res.BySource = map[string]int{}
	for _, v := range found {
		src := string(v.Evidence)
		if src == "" {
			src = "none"
		}
		res.BySource[src]++
		if v.Invoked {
			res.Invoked++
		}
		perBucket[buckets.OfVersion(v.FunctionID, v.FunctionVersionID, s.Buckets)]++
	}
	h.d.Metrics.Discovered.WithLabelValues("invoked").Set(float64(res.Invoked))
	h.d.Metrics.Discovered.WithLabelValues("running").Set(float64(res.Found - res.Invoked))

	read := <-readDone
	stored := read.rows
	res.ReadMS = read.took.Milliseconds()
	h.d.Metrics.CycleDuration.WithLabelValues("read").Observe(read.took.Seconds())
	if read.err != nil {
		return fail(events.Unavailable("discovery cycle %d: %v", cycle, read.err))
	}
	rows, why := rowWrites(found, stored, now, s.Discovery.RowTTL)
	res.Writes, res.Unchanged = why, len(found)-len(rows)
	byBucket := map[int][]store.ActiveVersion{}
	for _, r := range rows {
		b := buckets.OfVersion(r.FunctionID, r.FunctionVersionID, s.Buckets)
		byBucket[b] = append(byBucket[b], r)
	}

	// Each bucket's rows are written just before its event is sent, so the
	// scale function starts on the first bucket while the rows of the
	// others are still being written: in a cycle that finds 100,000 new
	// versions the upsert took 4.6-6.6 s that every bucket used to wait.
	t2 := time.Now()
	var upsert time.Duration
	var upsertErr error
	write := func(b int) error {
		rs := byBucket[b]
		if len(rs) == 0 {
			return nil
		}
		t := time.Now()
		n, err := h.d.Store.UpsertVersions(ctx, rs, s.Discovery.RowTTL)
		upsert += time.Since(t)
		res.Upserted += n
		if err != nil {
			upsertErr = fmt.Errorf("bucket %d: %w", b, err)
		}
		return upsertErr
	}
	tick := time.UnixMilli(cycle)
	res.BucketsSent, res.BucketsFail = h.fanOut(ctx, log, cycle, tick.Add(s.Discovery.BucketDeadline), perBucket, write)
	for reason, n := range why {
		h.d.Metrics.DiscoveryRowWrites.WithLabelValues(reason).Add(float64(n))
	}
	span.SetAttributes(attribute.Int("autoscaler.versions.invoked", res.Invoked), attribute.Int("autoscaler.versions.upserted", res.Upserted))
	res.UpsertMS, res.SendMS = upsert.Milliseconds(), time.Since(t2).Milliseconds()
	h.d.Metrics.CycleDuration.WithLabelValues("upsert").Observe(upsert.Seconds())
	if upsertErr != nil {
		// The buckets sent before the failure are decided from rows that
		// are in; Knative's retry of the tick writes the rest and sends
		// every bucket again, which the scale function takes as a replay.
		return fail(events.Unavailable("discovery cycle %d: upserted %d of %d, %d buckets sent: %v", cycle, res.Upserted, len(rows), len(res.BucketsSent), upsertErr))
	}
	span.SetAttributes(attribute.Int("autoscaler.buckets.sent", len(res.BucketsSent)), attribute.Int("autoscaler.buckets.failed", len(res.BucketsFail)))
	h.d.Metrics.CycleDuration.WithLabelValues("send").Observe(time.Since(t2).Seconds())
	h.d.Metrics.CycleDuration.WithLabelValues("total").Observe(time.Since(t0).Seconds())

	log.Info("discovery cycle done", "found", res.Found, "invoked", res.Invoked, "by_source", res.BySource, "upserted", res.Upserted,
		"writes", res.Writes, "unchanged", res.Unchanged,
		"invalid", res.Invalid, "buckets_sent", len(res.BucketsSent), "buckets_failed", res.BucketsFail,
		"query_ms", res.QueryMS, "read_ms", res.ReadMS, "upsert_ms", res.UpsertMS, "send_ms", res.SendMS)
	if len(res.BucketsFail) > 0 {
		return fail(events.Unavailable("discovery cycle %d: bucket events not delivered after %d attempts: buckets %v",
			cycle, s.Discovery.SendAttempts, res.BucketsFail))
	}
	h.d.Metrics.DiscoveryCycles.WithLabelValues("done").Inc()
	return events.NewReply(e, events.TypeDiscoveryResult, res)
}

// Filters are the TSDB selectors' filters the settings ask for: the NVCF
// environment (unless TSDB_IGNORE_ENV) and the extra label.
func Filters(s config.Settings) tsdb.Filters {
	return tsdb.Filters{Env: tsdb.Environment(s.EnvFilter()), Extra: tsdb.LabelFilter{Name: s.EnvLabel, Value: s.EnvValue}}
}

// lockOutcome names the result of the leader lock attempt for the span.
func lockOutcome(err error) string {
	var held *store.HeldError
	var unknown *store.UnknownError
	switch {
	case err == nil:
		return "acquired"
	case errors.As(err, &held):
		return "held"
	case errors.As(err, &unknown):
		return "unknown"
	}
	return "error"
}

// fanOut sends one event per non-empty bucket with bounded parallelism and
// per-event retries, returning the delivered and the failed buckets. Each
// bucket is sent once ready(bucket) returned nil, called in send order;
// when it fails, neither that bucket nor any after it is sent.
func (h *Handler) fanOut(ctx context.Context, log *slog.Logger, cycle int64, deadline time.Time, perBucket map[int]int, ready func(bucket int) error) (sent, failed []int) {
	s := h.d.Settings
	order := sendOrder(cycle, perBucket)

	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.Discovery.SendConcurrency)
	for _, b := range order {
		if ready(b) != nil {
			break
		}
		wg.Add(1)
		// At most one waiting goroutine per bucket: a slow sink must not
		// hold up the next bucket's rows.
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ev := bucketEvent(cycle, b, s.Buckets, perBucket[b], deadline)
			// The scale function's bucket span becomes the cycle span's child.
			telemetry.InjectEvent(ctx, &ev)
			err := h.sendWithRetry(ctx, ev, s.Discovery.SendAttempts, deadline)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				log.Warn("bucket event not delivered", "bucket", b, "error", err.Error())
				h.d.Metrics.BucketsSent.WithLabelValues("failed").Inc()
				failed = append(failed, b)
				return
			}
			h.d.Metrics.BucketsSent.WithLabelValues("sent").Inc()
			sent = append(sent, b)
		}()
	}
	wg.Wait()
	sort.Ints(sent)
	sort.Ints(failed)
	return sent, failed
}

// sendOrder starts each cycle's fan-out at a different bucket. When the
// scale functions cannot finish every bucket before the deadline, the ones
// sent last are the ones dropped; a fixed order would drop the same buckets
// every cycle and starve their functions, a rotating one spreads the delay.
func sendOrder(cycle int64, perBucket map[int]int) []int {
	order := make([]int, 0, len(perBucket))
	for b := range perBucket {
		order = append(order, b)
	}
	sort.Ints(order)
	if len(order) < 2 {
		return order
	}
	// The cycle id is the tick in ms, a minute apart in production and
	// seconds apart in tests: mix it before taking the offset.
	x := uint64(cycle) * 0x9E3779B97F4A7C15
	off := int((x >> 32) % uint64(len(order)))
	return append(order[off:], order[:off]...)
}

func bucketEvent(cycle int64, bucket, count, versions int, deadline time.Time) event.Event {
	e := event.New()
	e.SetID(events.BucketEventID(cycle, bucket, count))
	e.SetType(events.TypeBucket)
	e.SetSource(events.Source + "/discovery")
	e.SetSubject(fmt.Sprintf("bucket/%d", bucket))
	e.SetTime(time.UnixMilli(cycle).UTC())
	// SetData cannot fail for this plain struct.
	_ = e.SetData(event.ApplicationJSON, events.Bucket{
		Bucket: bucket, Buckets: count, Cycle: cycle, Deadline: deadline.UTC(), Versions: versions,
	})
	return e
}

// minAttempt is the least time one delivery attempt gets, even for a
// bucket whose deadline is past or near (a late tick): the Broker's
// ingress answers in milliseconds when it does not wait for the scale
// function, so a sink that takes longer is hung or waiting on scale.
const minAttempt = 10 * time.Second

// answerGrace is how long after the bucket's deadline an attempt still
// waits: the scale function stops deciding at the deadline and answers
// then, with what it decided.
const answerGrace = 5 * time.Second

// attemptDeadline is when one delivery attempt of a bucket due by deadline
// gives up. Not a fixed few seconds: on a Broker over the in-memory
// channel the ingress answers only once the Trigger's delivery to scale
// has, that is after scale has decided the bucket (its Trigger's timeout
// is longer than the bucket deadline for that reason). An attempt cut
// shorter sent a bucket still being decided again, and again, and failed
// the cycle, which had the tick delivered and the cycle run once more.
func attemptDeadline(now, deadline time.Time) time.Time {
	return later(deadline.Add(answerGrace), now.Add(minAttempt))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendWithRetry retries with exponential back-off and full jitter, so a
// sink that restarts is not hit by every bucket at the same instant. It
// does not start an attempt after the bucket's deadline (beyond the
// first): the scale function drops a bucket that arrives late.
func (h *Handler) sendWithRetry(ctx context.Context, e event.Event, attempts int, deadline time.Time) error {
	backoff := 100 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		now := time.Now()
		if i > 0 && !now.Before(deadline) {
			return fmt.Errorf("bucket deadline %s passed after %d attempt(s): %w", deadline.UTC().Format(time.RFC3339), i, err)
		}
		// A sink that accepts the connection and never answers must not
		// hold the cycle past the bucket's use: each attempt has a deadline.
		actx, cancel := context.WithDeadline(ctx, attemptDeadline(now, deadline))
		err = h.d.Sender.Send(actx, e)
		cancel()
		if err == nil {
			return nil
		}
		if i == attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last send error: %v)", ctx.Err(), err)
		case <-time.After(time.Duration(rand.Int64N(int64(backoff))) + backoff/2):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return err
}

// HTTPSender sends CloudEvents in binary mode to a fixed URL.
type HTTPSender struct {
	client cloudevents.Client
	target string
}

// NewHTTPSender returns a sender to target (K_SINK).
func NewHTTPSender(target string) (*HTTPSender, error) {
	c, err := cloudevents.NewClientHTTP()
	if err != nil {
		return nil, fmt.Errorf("cloudevents client: %w", err)
	}
	return &HTTPSender{client: c, target: target}, nil
}

// Send delivers e and reports anything but an acknowledgement as an error.
func (s *HTTPSender) Send(ctx context.Context, e event.Event) error {
	res := s.client.Send(cloudevents.ContextWithTarget(ctx, s.target), e)
	if cloudevents.IsUndelivered(res) || !cloudevents.IsACK(res) {
		return fmt.Errorf("send %s to %s: %w", e.ID(), s.target, res)
	}
	return nil
}
