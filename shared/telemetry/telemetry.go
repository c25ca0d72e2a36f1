// Package telemetry gives the autoscaler its own logs and metrics: slog JSON
// lines carrying the domain keys (function_id, function_version_id, bucket,
// cycle) and a Prometheus registry of self-metrics that operators alert on.
package telemetry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"function/shared/store"
)

// NewLogger returns a JSON logger at level (debug, info, warn, error).
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Metrics are the self-metrics of one process. Each process has its own
// registry (not the global one) so tests can run several side by side.
type Metrics struct {
	Registry *prometheus.Registry

	Ready            prometheus.Gauge
	CurrentInstances *prometheus.GaugeVec
	DesiredInstances *prometheus.GaugeVec
	Utilization      *prometheus.GaugeVec
	Status           *prometheus.GaugeVec
	Decisions        *prometheus.CounterVec
	Writes           *prometheus.CounterVec
	BucketDuration   prometheus.Histogram
	CycleDuration    *prometheus.HistogramVec
	Queries          *prometheus.CounterVec
	TSDBDuration     *prometheus.HistogramVec
	NVCFDuration     *prometheus.HistogramVec
	Locks            *prometheus.CounterVec
	Discovered       *prometheus.GaugeVec
	BucketsSent      *prometheus.CounterVec
	SampleAge        prometheus.Gauge
	DiscoveryCycles  *prometheus.CounterVec
	// DiscoveryRowWrites counts the version rows discovery wrote, by why
	// (new, changed, due, fading); found versions whose rows needed none
	// are not written at all.
	DiscoveryRowWrites *prometheus.CounterVec
	LimiterWaiting     prometheus.Gauge
	LimiterWait        prometheus.Histogram
	CassandraOps       *prometheus.CounterVec
	// LostAnswers counts Cassandra writes whose answer was lost (a
	// timeout: applied or not, nobody said) by how the read-back at
	// SERIAL settled them.
	LostAnswers *prometheus.CounterVec
	// Source is 1 for the metric source each version is decided from
	// (per version, like the gauges above); SourceDecisions counts
	// decisions by source whatever METRICS_PER_VERSION says.
	Source          *prometheus.GaugeVec
	SourceDecisions *prometheus.CounterVec
	// Prewarms counts learned keep-alive's pre-warms by outcome: written,
	// then used (the next burst came while the instance was up), late
	// (it came before the instance reported) or wasted (the version went
	// back to zero without an invocation).
	Prewarms *prometheus.CounterVec

	// PerVersion records the per-version gauges (current and desired
	// instances, utilization, status). Each version costs four series in
	// the process and in every scrape; METRICS_PER_VERSION=false drops them
	// for fleets of tens of thousands of versions, where the aggregate
	// counters and the decision log remain.
	PerVersion bool

	// Profiling adds net/http/pprof under /debug/pprof to the metrics
	// listener (METRICS_PPROF); the benchmark profiles the hot path with it.
	Profiling bool
}

// StatusCode values of nvcf_autoscaler_function_status, compatible in spirit
// with the reference's autoscaling status metric: 0 is ok.
const (
	StatusOK           = 0
	StatusHeld         = 1
	StatusTSDBError    = 2
	StatusNotFound     = 3
	StatusNotActive    = 4
	StatusBeyondLimits = 5
	StatusRateLimited  = 6
	StatusError        = 7
)

// NewMetrics registers every self-metric in a fresh registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	version := []string{"function_id", "function_version_id"}
	m := &Metrics{Registry: r, PerVersion: true}
	m.Ready = prometheus.NewGauge(prometheus.GaugeOpts{Name: "nvcf_autoscaler_ready", Help: "1 when Cassandra and the TSDB answer."})
	m.CurrentInstances = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nvcf_autoscaler_current_instances", Help: "Instances seen in the TSDB at the last settled step."}, version)
	m.DesiredInstances = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nvcf_autoscaler_desired_instances", Help: "Instances the policy decided."}, version)
	m.Utilization = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nvcf_autoscaler_utilization_percent", Help: "Latest utilization the policy used."}, version)
	m.Status = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nvcf_autoscaler_function_status", Help: "0 ok, 1 held, 2 tsdb error, 3 not found, 4 not active, 5 beyond limits, 6 rate limited, 7 error."}, version)
	m.Decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_decisions_total", Help: "Decisions by reason."}, []string{"reason"})
	m.Writes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_nvcf_writes_total", Help: "NVCF instance writes by outcome."}, []string{"outcome"})
	m.BucketDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nvcf_autoscaler_bucket_duration_seconds", Help: "Time to handle one bucket event (failed ones included, expired ones not).", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})
	m.CycleDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nvcf_autoscaler_discovery_duration_seconds", Help: "Discovery phases.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"phase"})
	m.Queries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_tsdb_queries_total", Help: "PromQL queries issued, by caller."}, []string{"caller"})
	m.TSDBDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nvcf_autoscaler_tsdb_request_duration_seconds", Help: "TSDB HTTP requests.", Buckets: prometheus.DefBuckets}, []string{"endpoint", "status"})
	m.NVCFDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nvcf_autoscaler_nvcf_request_duration_seconds", Help: "NVCF API requests.", Buckets: prometheus.DefBuckets}, []string{"endpoint", "status"})
	m.Locks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_lock_attempts_total", Help: "LWT lock attempts by kind (discovery, function) and outcome (acquired, held, unknown, error)."}, []string{"kind", "outcome"})
	m.Discovered = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nvcf_autoscaler_discovered_versions", Help: "Versions found by the last discovery, by kind."}, []string{"kind"})
	m.BucketsSent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_bucket_events_total", Help: "Bucket events sent by outcome."}, []string{"outcome"})
	m.CassandraOps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_cassandra_requests_total", Help: "CQL requests by kind (read, write, lwt) and outcome (ok, error)."}, []string{"kind", "outcome"})
	m.LostAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_cassandra_lost_answers_total",
		Help: "Cassandra writes whose answer was lost, by op (acquire, refresh, release, record), cause (write_timeout, cas_write_unknown, client_timeout, error) and how the read-back at SERIAL resolved them (applied, not_applied, unknown)."},
		[]string{"op", "cause", "resolved"})
	m.Source = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nvcf_autoscaler_version_source", Help: "1 for the metric source (worker, gateway, control_plane) a version is decided from."}, []string{"function_id", "function_version_id", "source"})
	m.SourceDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_source_decisions_total", Help: "Decisions by metric source (worker, gateway, control_plane)."}, []string{"source"})
	m.Prewarms = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_prewarms_total",
		Help: "Pre-warms of learned keep-alive by outcome: written, used (the next burst came while the instance was up), late (it came before the instance reported), wasted (back to zero unused)."},
		[]string{"outcome"})
	m.SampleAge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "nvcf_autoscaler_utilization_sample_age_seconds", Help: "Age of the newest utilization sample used in the last bucket."})
	for _, c := range []prometheus.Collector{m.Ready, m.CurrentInstances, m.DesiredInstances, m.Utilization, m.Status, m.Decisions, m.Writes,
		m.BucketDuration, m.CycleDuration, m.Queries, m.TSDBDuration, m.NVCFDuration, m.Locks, m.Discovered, m.BucketsSent, m.SampleAge, m.CassandraOps, m.LostAnswers} {
		f(c)
	}
	m.DiscoveryCycles = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_discovery_cycles_total", Help: "Discovery ticks by outcome: done (buckets sent), skipped (another replica holds the lock), failed (Knative retries)."}, []string{"outcome"})
	m.DiscoveryRowWrites = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nvcf_autoscaler_discovery_row_writes_total", Help: "Version rows discovery wrote to Cassandra, by reason: new (no live row), changed (nca_id or source), due (TTL refresh), fading (invoked, not in the newest step)."}, []string{"reason"})
	m.LimiterWaiting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "nvcf_autoscaler_nvcf_limiter_waiting", Help: "NVCF calls waiting now for a token of the client-side rate limiter."})
	m.LimiterWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nvcf_autoscaler_nvcf_limiter_wait_seconds", Help: "Time each admitted NVCF attempt waited for the client-side rate limiter (0 when a token was free).",
		Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15}})
	for _, c := range []prometheus.Collector{m.DiscoveryCycles, m.DiscoveryRowWrites, m.LimiterWaiting, m.LimiterWait, m.Source, m.SourceDecisions, m.Prewarms} {
		f(c)
	}
	return m
}

// SetReady records readiness.
func (m *Metrics) SetReady(ready bool) {
	if ready {
		m.Ready.Set(1)
	} else {
		m.Ready.Set(0)
	}
}

// ObserveTSDB is the TSDB client's observer hook.
func (m *Metrics) ObserveTSDB(endpoint, status string, d time.Duration) {
	m.TSDBDuration.WithLabelValues(endpoint, status).Observe(d.Seconds())
}

// ObserveNVCF is the NVCF client's observer hook.
func (m *Metrics) ObserveNVCF(endpoint, status string, d time.Duration) {
	m.NVCFDuration.WithLabelValues(endpoint, status).Observe(d.Seconds())
}

// VersionDecision records what the policy saw and decided for one version.
func (m *Metrics) VersionDecision(functionID, versionID string, current, desired int, utilization float64) {
	if !m.PerVersion {
		return
	}
	m.CurrentInstances.WithLabelValues(functionID, versionID).Set(float64(current))
	m.DesiredInstances.WithLabelValues(functionID, versionID).Set(float64(desired))
	m.Utilization.WithLabelValues(functionID, versionID).Set(utilization)
}

// VersionSource records the metric source a version was decided from,
// dropping the series of any source it used before so a switch shows as
// one series moving, not two at 1.
func (m *Metrics) VersionSource(functionID, versionID, source string, sources []string) {
	m.SourceDecisions.WithLabelValues(source).Inc()
	if !m.PerVersion {
		return
	}
	for _, other := range sources {
		if other != source {
			m.Source.DeleteLabelValues(functionID, versionID, other)
		}
	}
	m.Source.WithLabelValues(functionID, versionID, source).Set(1)
}

// VersionStatus records one version's status code (StatusOK ...).
func (m *Metrics) VersionStatus(functionID, versionID string, code float64) {
	if m.PerVersion {
		m.Status.WithLabelValues(functionID, versionID).Set(code)
	}
}

// ObserveCassandra is the store's observer hook.
func (m *Metrics) ObserveCassandra(kind string, failed bool) {
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	m.CassandraOps.WithLabelValues(kind, outcome).Inc()
}

// LostAnswer is the store's hook for a write whose answer was lost.
func (m *Metrics) LostAnswer(l store.LostAnswer) {
	m.LostAnswers.WithLabelValues(l.Op, l.Cause, l.Resolved).Inc()
}

// Lock counts one lock attempt of kind (discovery, or function: a
// version's write claim): acquired, held (another owner has it), unknown (its answer was lost and so was the
// read-back) or error (Cassandra did not answer, or read back it had not
// applied).
func (m *Metrics) Lock(kind string, err error) {
	outcome := "acquired"
	var held *store.HeldError
	var taken *store.ClaimTakenError
	var unknown *store.UnknownError
	switch {
	case errors.As(err, &held), errors.As(err, &taken):
		outcome = "held"
	case errors.As(err, &unknown):
		outcome = "unknown"
	case err != nil:
		outcome = "error"
	}
	m.Locks.WithLabelValues(kind, outcome).Inc()
}

// CountQuery is the TSDB client's per-query hook: one PromQL query issued
// by caller (discovery, scale, readiness), however many attempts it took.
func (m *Metrics) CountQuery(caller string) {
	m.Queries.WithLabelValues(caller).Inc()
}

// LimiterQueue is the NVCF client's limiter hook: delta is +1 when a call
// starts waiting for a token and -1 when it stops.
func (m *Metrics) LimiterQueue(delta int) { m.LimiterWaiting.Add(float64(delta)) }

// LimiterWaited records how long an admitted NVCF attempt waited.
func (m *Metrics) LimiterWaited(d time.Duration) { m.LimiterWait.Observe(d.Seconds()) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Serve exposes /metrics on addr until ctx ends. func-go owns the main port
// and serves only CloudEvents and health there, so metrics need their own.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	if m.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err.Error())
		}
	}()
	return ln.Addr(), nil
}

// StatusLabel renders a status code for logs.
func StatusLabel(code int) string { return strconv.Itoa(code) }
