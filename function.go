// Package function is the NVCF autoscaler as a Knative function: kn func
// wraps New() in func-go's HTTP runtime (func.yaml: invoke: http), which
// calls Start once, probes Ready and Alive, and passes every request to
// Handle. Handle reads the CloudEvent with the CloudEvents SDK's HTTP
// binding, in the request's own goroutine (shared/receiver says why not
// the SDK's receiver), and routes it by type: PingSource ticks go to
// discovery, bucket and activation events to the scale function.
package function

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"function/functions/discovery"
	"function/functions/scale"
	"function/shared/config"
	"function/shared/events"
	"function/shared/nvcf"
	"function/shared/receiver"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// Function is the instanced function func-go serves.
type Function struct {
	settings config.Settings
	log      *slog.Logger
	metrics  *telemetry.Metrics

	// receiver serves events once Start has loaded the settings; until
	// then a request is a 503 (Knative does not route to a pod before it
	// is ready, so only a hand-made request can see it).
	receiver atomic.Pointer[receiver.Receiver]
	// ready holds the wired handlers once every dependency answered at
	// least once; until then Handle answers 503 so Knative redelivers.
	ready atomic.Pointer[handlers]

	mu         sync.Mutex
	lastHealth health
	stop       context.CancelFunc
	closers    []func()
	// stopTracing flushes and stops the span exporter (a no-op when
	// OTEL_TRACES_EXPORTER=none).
	stopTracing func(context.Context) error
}

type handlers struct {
	store     *store.Store
	tsdb      *tsdb.Client
	discovery *discovery.Handler
	scale     *scale.Handler
}

type health struct {
	at     time.Time
	ready  bool
	reason string
}

// New returns an unstarted function; func-go calls Start.
func New() *Function { return &Function{log: slog.New(slog.NewJSONHandler(os.Stderr, nil))} }

// Start validates the configuration (a bad value fails Start naming the
// variable) and connects to Cassandra and the TSDB in the background, with
// back-off, so a dependency that is still starting delays readiness instead
// of crash-looping the pod.
func (f *Function) Start(ctx context.Context, cfg map[string]string) error {
	s, err := config.Load(cfg)
	if err != nil {
		f.log.Error("invalid configuration", "error", err.Error())
		return err
	}
	f.settings = s
	f.log = telemetry.NewLogger(os.Stderr, s.LogLevel).With("node_id", s.NodeID, "role", string(s.Role))
	// Code without a logger of its own (tlsfiles says when a renewed
	// client certificate did or did not load) logs through the default:
	// the same JSON lines, the same node and role.
	slog.SetDefault(f.log)
	f.metrics = telemetry.NewMetrics()
	f.log.Info("starting", "config", s.Common.String())
	f.stopTracing, err = telemetry.SetupTracing(ctx, telemetry.TraceConfig{
		Exporter: s.TracesExporter, ServiceName: s.ServiceName, InstanceID: s.NodeID,
		SampleRatio: s.TracesSamplerArg, Log: f.log,
	})
	if err != nil {
		f.log.Error("tracing", "error", err.Error())
		return err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	f.metrics.PerVersion = s.MetricsPerVersion
	if s.MetricsAddress != "" {
		f.metrics.Profiling = s.MetricsPprof
		addr, err := f.metrics.Serve(runCtx, s.MetricsAddress, f.log)
		if err != nil {
			cancel()
			_ = f.stopTracing(context.WithoutCancel(ctx))
			return fmt.Errorf("METRICS_ADDRESS=%q: %w", s.MetricsAddress, err)
		}
		f.log.Info("serving self-metrics", "address", addr.String())
	}
	go f.connect(runCtx)
	f.receiver.Store(f.newReceiver(f.route))
	return nil
}

// newReceiver is the HTTP side of the function's events, handing each
// parsed event to handle (route, or a test's wrapper of it).
func (f *Function) newReceiver(handle receiver.HandleFunc) *receiver.Receiver {
	s := f.settings
	return &receiver.Receiver{
		MaxBodyBytes: s.MaxEventBytes, LimitSetting: "MAX_EVENT_BYTES",
		// Handlers stop at the bucket deadline; the margin is for the
		// reply after it.
		AnswerWithin: s.Discovery.BucketDeadline + 10*time.Second,
		Log:          f.log, Handle: handle,
	}
}

// connect opens every dependency, retrying with capped back-off until the
// function stops.
func (f *Function) connect(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for {
		h, err := f.wire(ctx)
		if err == nil {
			f.ready.Store(h)
			f.log.Info("dependencies connected; serving")
			return
		}
		f.log.Warn("dependencies not ready; retrying", "error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// lostAnswer logs and counts a Cassandra write whose answer was lost. The
// store has already read it back at SERIAL; only an unsettled one (the
// read-back failed too) is an ERROR, since its caller answered 503.
func (f *Function) lostAnswer(l store.LostAnswer) {
	f.metrics.LostAnswer(l)
	attrs := []any{"op", l.Op, "name", l.Name, "cause", l.Cause, "resolved", l.Resolved, "error", l.Err.Error()}
	if l.ReadErr != nil {
		f.log.Error("cassandra answer lost and read-back failed; outcome unknown, nothing acted on", append(attrs, "read_error", l.ReadErr.Error())...)
		return
	}
	f.log.Warn("cassandra answer lost; settled by a read at SERIAL", attrs...)
}

func (f *Function) wire(ctx context.Context) (*handlers, error) {
	s := f.settings
	sc := store.DefaultConfig()
	sc.Hosts = s.Hosts
	sc.Keyspace = s.Keyspace
	sc.Replication = s.Replication
	sc.Username = s.Username
	sc.Password = s.Password
	sc.LocalDC = s.LocalDC
	sc.Consistency = consistency(s.Consistency)
	sc.SerialConsistency = serialConsistency(s.SerialConsistency)
	sc.Timeout = s.CQLTimeout
	sc.PageSize = s.PageSize
	sc.SkipSchema = !s.EnsureSchema
	sc.TLS = s.Cassandra.TLSFiles()
	sc.Observer = f.metrics.ObserveCassandra
	sc.OnLostAnswer = f.lostAnswer
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := store.Open(openCtx, sc)
	if err != nil {
		return nil, err
	}
	tc, err := tsdb.New(tsdbConfig(s, f.metrics))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("tsdb client: %w", err)
	}
	if err := tc.Ping(openCtx); err != nil {
		st.Close()
		return nil, fmt.Errorf("tsdb %s: %w", s.URL, err)
	}
	h := &handlers{store: st, tsdb: tc}
	if s.Role.Serves(config.RoleDiscovery) {
		h.discovery, err = discovery.New(discovery.Deps{
			Settings: s, Store: st, TSDB: tc, Log: f.log, Metrics: f.metrics,
		})
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("discovery: %w", err)
		}
	}
	if s.Role.Serves(config.RoleScale) {
		nc, err := nvcf.New(nvcfConfig(s.Scale, f.log, f.metrics))
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("nvcf client: %w", err)
		}
		h.scale, err = scale.New(scale.Deps{
			Settings: s, Store: st, TSDB: tc, NVCF: nc, Log: f.log, Metrics: f.metrics,
		})
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("scale: %w", err)
		}
	}
	f.mu.Lock()
	f.closers = append(f.closers, st.Close)
	f.mu.Unlock()
	return h, nil
}

// Stop releases connections and flushes pending spans.
func (f *Function) Stop(ctx context.Context) error {
	if f.stop != nil {
		f.stop()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.closers {
		c()
	}
	f.closers = nil
	if f.stopTracing != nil {
		// Flush the spans still batched; an unreachable collector must not
		// hold the shutdown.
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := f.stopTracing(tctx); err != nil {
			f.log.Warn("stop tracing", "error", err.Error())
		}
		f.stopTracing = nil
	}
	return nil
}

// healthCacheTTL keeps frequent probes from turning into a query storm.
const healthCacheTTL = 2 * time.Second

// Ready is false until Cassandra and the TSDB have answered, and again
// whenever either stops answering, with the reason logged on each change.
func (f *Function) Ready(ctx context.Context) (bool, error) {
	h := f.ready.Load()
	f.mu.Lock()
	last := f.lastHealth
	f.mu.Unlock()
	if h != nil && time.Since(last.at) < healthCacheTTL {
		return last.ready, nil
	}
	now := health{at: time.Now(), ready: true}
	if h == nil {
		now = health{at: now.at, reason: "connecting to Cassandra and the TSDB"}
	} else {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var problems []string
		if err := h.store.Ping(pctx); err != nil {
			problems = append(problems, err.Error())
		}
		if err := h.tsdb.Ping(pctx); err != nil {
			problems = append(problems, "tsdb: "+err.Error())
		}
		if len(problems) > 0 {
			now = health{at: now.at, reason: strings.Join(problems, "; ")}
		}
	}
	f.mu.Lock()
	changed := now.ready != f.lastHealth.ready || (h != nil && f.lastHealth.at.IsZero())
	f.lastHealth = now
	f.mu.Unlock()
	if f.metrics != nil {
		f.metrics.SetReady(now.ready)
	}
	if changed {
		if now.ready {
			f.log.Info("ready")
		} else {
			f.log.Warn("not ready", "reason", now.reason)
		}
	}
	return now.ready, nil
}

// Alive is true while the process can serve; dependencies are Ready's
// concern, so an outage never gets healthy pods restarted.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }

// Handle serves one HTTP request carrying a CloudEvent (func-go's HTTP
// form): parsed, routed and answered in this request's goroutine alone.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	rc := f.receiver.Load()
	if rc == nil {
		http.Error(w, "starting: the configuration is not loaded yet", http.StatusServiceUnavailable)
		return
	}
	rc.ServeHTTP(w, r)
}

// route handles one CloudEvent. Unknown types, events for a role this
// process does not serve and malformed payloads are 400s, decided before the
// readiness gate: while the process is still connecting, a 503 would have
// Knative redeliver an event no retry can fix.
func (f *Function) route(ctx context.Context, e event.Event) (*event.Event, error) {
	if err := f.validate(e); err != nil {
		return nil, err
	}
	h := f.ready.Load()
	if h == nil {
		return nil, events.Unavailable("not ready: still connecting to Cassandra and the TSDB")
	}
	switch e.Type() {
	case events.TypePing:
		return h.discovery.Handle(ctx, e)
	case events.TypeBucket:
		return h.scale.HandleBucket(ctx, e)
	default: // events.TypeActivate
		return h.scale.HandleActivate(ctx, e)
	}
}

// validate checks what needs no dependency: the type, the role and the
// payload (the handlers parse it again; it is a few hundred bytes).
func (f *Function) validate(e event.Event) error {
	switch e.Type() {
	case events.TypePing:
		// A tick's payload is the PingSource's own; only its time is used.
		return f.serves(e, config.RoleDiscovery)
	case events.TypeBucket:
		if err := f.serves(e, config.RoleScale); err != nil {
			return err
		}
		b, err := events.ParseBucket(e)
		if err != nil {
			return err
		}
		_, err = b.Bound(e.ID(), events.Bounds{Now: time.Now(), Skew: f.settings.ClockSkew, Deadline: f.settings.Discovery.BucketDeadline})
		return err
	case events.TypeActivate:
		if err := f.serves(e, config.RoleScale); err != nil {
			return err
		}
		_, err := events.ParseActivate(e)
		return err
	}
	return events.BadRequest("unknown event type %q: this function handles %s, %s and %s",
		events.Clip(e.Type(), events.MaxQuoted), events.TypePing, events.TypeBucket, events.TypeActivate)
}

// serves is a 400 for an event of a role this process does not serve: no
// retry makes it routable.
func (f *Function) serves(e event.Event, role config.Role) error {
	if f.settings.Role.Serves(role) {
		return nil
	}
	return events.BadRequest("event type %q is not served by role %q: check the Trigger filters", e.Type(), f.settings.Role)
}
