package function

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"function/e2e/harness"
	"function/e2e/nvcfsim"
	"function/functions/discovery"
	"function/functions/scale"
	"function/shared/events"
	"function/shared/store"
	"function/shared/testenv"
	"function/shared/tsdb/tsdbtest"
)

// scrape is one reading of /metrics, parsed (harness.Metrics: Find,
// Value, Count, Total).
type scrape struct{ harness.Metrics }

func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	m, err := harness.ScrapeMetrics(context.Background(), addr)
	require.NoError(t, err)
	return scrape{m}
}

// gauge reads a gauge that must exist.
func (s scrape) gauge(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.Find(name, labels...)
	require.NotNil(t, m, "no series %s%v", name, labels)
	require.NotNil(t, m.Gauge, "%s is not a gauge", name)
	return m.GetGauge().GetValue()
}

// bucketSink stands in for the Broker: it acknowledges and keeps the
// bucket events discovery sends, for the test to deliver.
type bucketSink struct {
	mu     sync.Mutex
	events []event.Event
}

func (s *bucketSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, *e)
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *bucketSink) received() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.events...)
}

// TestSelfMetricsOfARealCycle runs one real cycle, a tick and its bucket,
// through the function in func-go's runtime against the real Cassandra and
// VictoriaMetrics and the NVCF simulator, then reads /metrics and checks
// each self-metric by value against what the policy decided (the bucket
// reply) and what the simulator recorded. A redelivered bucket then checks
// that the counters move by exactly one bucket's worth and writes do not.
func TestSelfMetricsOfARealCycle(t *testing.T) {
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	bin := funcBinary(t)
	ctx := context.Background()
	run := fmt.Sprintf("selfmetrics%d", time.Now().UnixNano())
	keyspace := testenv.Keyspace(t, "test_metrics")

	type fn struct{ id, version string }
	hot := fn{run + "-hot", run + "-hot-v1"}          // 90 % busy on 2 workers, invoked
	cold := fn{run + "-cold", run + "-cold-v1"}       // 10 % busy on 4 workers, no requests
	silent := fn{run + "-silent", run + "-silent-v1"} // a Cassandra row, no series at all

	sim, err := nvcfsim.Start(nvcfsim.Options{})
	require.NoError(t, err)
	defer func() { _ = sim.Close(context.Background()) }()
	for _, f := range []fn{hot, cold, silent} {
		sim.Register(nvcfsim.FunctionVersion{FunctionID: f.id, VersionID: f.version, NcaID: "nca",
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 50}}})
	}
	env := map[string]string{"test_env": run}
	workers := []tsdbtest.Worker{
		{FunctionID: hot.id, FunctionVersionID: hot.version, NcaID: "nca", Instances: 2, Utilization: 0.9, RequestsPerSecond: 1, Extra: env},
		{FunctionID: cold.id, FunctionVersionID: cold.version, NcaID: "nca", Instances: 4, Utilization: 0.1, Extra: env},
	}
	// Series from a fixed start up to now; a later call extends them with
	// the same samples (the counters are a function of the time since start).
	seriesStart := time.Now().Add(-15 * time.Minute)
	ingest := func() {
		t.Helper()
		require.NoError(t, tsdbtest.ImportVM(ctx, vm, tsdbtest.Generate(workers, seriesStart, time.Now())))
	}
	ingest()

	sink := &bucketSink{}
	sinkSrv := httptest.NewServer(sink)
	defer sinkSrv.Close()
	metricsAddr, err := harness.FreeAddr()
	require.NoError(t, err)
	p, err := harness.StartFunction(ctx, bin, "metrics", t.TempDir(), map[string]string{
		"CASSANDRA_HOSTS": hosts[0], "CASSANDRA_KEYSPACE": keyspace,
		"TSDB_URL": vm, "TSDB_ENV_LABEL": "test_env", "TSDB_ENV_VALUE": run,
		"K_SINK": sinkSrv.URL, "NVCF_API_URL": sim.HTTPURL(), "METRICS_ADDRESS": metricsAddr,
		"NODE_ID": "metrics-test", "BUCKETS": "1",
		// The numbers below are the reference's rules (nvcf mode), and
		// without a stabilization window the 10 % version's first decision
		// is a plain scale-down, not "stabilized at what runs now".
		"POLICY_MODE":              "nvcf",
		"SCALE_DOWN_STABILIZATION": "0s",
	}, 90*time.Second)
	require.NoError(t, err)
	defer p.Stop()

	// The silent version is known to Cassandra only, as a version that
	// discovery saw earlier and whose workers stopped reporting.
	sc := store.DefaultConfig()
	sc.Hosts, sc.Keyspace = hosts, keyspace
	st, err := store.Open(ctx, sc)
	require.NoError(t, err)
	defer st.Close()
	_, err = st.UpsertVersions(ctx, []store.ActiveVersion{{
		VersionKey: store.VersionKey{FunctionID: silent.id, FunctionVersionID: silent.version},
		NcaID:      "nca", LastUpdatedAt: time.Now(), Source: "worker",
	}}, time.Hour)
	require.NoError(t, err)

	before := scrapeMetrics(t, metricsAddr)
	require.Equal(t, 1.0, before.gauge(t, "nvcf_autoscaler_ready"))
	delta := func(after scrape, name string, labels ...string) float64 {
		return after.Value(name, labels...) - before.Value(name, labels...)
	}
	const (
		bucketSeconds = "nvcf_autoscaler_bucket_duration_seconds"
		queries       = "nvcf_autoscaler_tsdb_queries_total"
		decisions     = "nvcf_autoscaler_decisions_total"
		writes        = "nvcf_autoscaler_nvcf_writes_total"
		locks         = "nvcf_autoscaler_lock_attempts_total"
		tsdbSeconds   = "nvcf_autoscaler_tsdb_request_duration_seconds"
		nvcfSeconds   = "nvcf_autoscaler_nvcf_request_duration_seconds"
		limiterWait   = "nvcf_autoscaler_nvcf_limiter_wait_seconds"
	)

	// The bucket below must be decided well inside a minute (its newest
	// utilization step is its start rounded down to UTILIZATION_STEP, 60 s,
	// so the age the gauge must show is known to within the delivery's
	// duration) AND before its deadline (cycle + BUCKET_DEADLINE). Align
	// the tick, not the delivery: waiting for the next minute between the
	// tick and the delivery let the bucket expire whenever the test reached
	// it late in a minute (0 outcomes, a fresh-clone run at 07:23).
	if off := time.Since(time.Now().Truncate(time.Minute)); off < time.Second || off > 30*time.Second {
		time.Sleep(time.Minute - off + 2*time.Second)
		ingest() // the samples must reach the new minute
	}

	// The tick: discovery finds the two versions with series.
	code, reply, err := harness.Send(ctx, p.URL(), harness.Ping(time.Now(), "default", "metrics"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.NotNil(t, reply)
	var disc discovery.Result
	require.NoError(t, json.Unmarshal(reply.Data(), &disc))
	require.Equal(t, 2, disc.Found)
	require.Equal(t, 1, disc.Invoked)
	buckets := sink.received()
	require.Len(t, buckets, 1, "BUCKETS=1: one bucket event")
	require.Equal(t, events.TypeBucket, buckets[0].Type())

	afterTick := scrapeMetrics(t, metricsAddr)
	require.Equal(t, 1.0, delta(afterTick, "nvcf_autoscaler_discovery_cycles_total", "outcome", "done"))
	require.Equal(t, 1.0, afterTick.gauge(t, "nvcf_autoscaler_discovered_versions", "kind", "invoked"))
	require.Equal(t, 1.0, afterTick.gauge(t, "nvcf_autoscaler_discovered_versions", "kind", "running"))
	require.Equal(t, 1.0, delta(afterTick, "nvcf_autoscaler_bucket_events_total", "outcome", "sent"))
	require.Zero(t, afterTick.Value("nvcf_autoscaler_bucket_events_total", "outcome", "failed"))
	for _, phase := range []string{"query", "upsert", "send", "total"} {
		require.Equal(t, uint64(1), afterTick.Count("nvcf_autoscaler_discovery_duration_seconds", "phase", phase)-
			before.Count("nvcf_autoscaler_discovery_duration_seconds", "phase", phase), "phase %s", phase)
	}
	require.Equal(t, 1.0, delta(afterTick, locks, "kind", "discovery", "outcome", "acquired"))
	require.Equal(t, 5.0, delta(afterTick, queries, "caller", "discovery"), "discovery costs five range queries (three metric sources)")
	require.Zero(t, delta(afterTick, queries, "caller", "scale"))

	// A second tick in the same period finds the leader lock held: skipped,
	// with no query and no bucket event.
	code, reply, err = harness.Send(ctx, p.URL(), harness.Ping(time.Now(), "default", "metrics"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	var skipped discovery.Result
	require.NoError(t, json.Unmarshal(reply.Data(), &skipped))
	require.True(t, skipped.Skipped)
	afterSkip := scrapeMetrics(t, metricsAddr)
	require.Equal(t, 1.0, delta(afterSkip, "nvcf_autoscaler_discovery_cycles_total", "outcome", "skipped"))
	require.Equal(t, 1.0, delta(afterSkip, "nvcf_autoscaler_discovery_cycles_total", "outcome", "done"))
	require.Equal(t, 1.0, delta(afterSkip, locks, "kind", "discovery", "outcome", "held"))
	require.Equal(t, 1.0, delta(afterSkip, locks, "kind", "discovery", "outcome", "acquired"))
	require.Zero(t, afterSkip.Value(locks, "kind", "discovery", "outcome", "error"))
	require.Equal(t, 5.0, delta(afterSkip, queries, "caller", "discovery"))
	require.Len(t, sink.received(), 1)

	// The bucket, as the Broker would deliver it.
	deliver := func() scale.BucketResult {
		t.Helper()
		code, reply, err := harness.Send(ctx, p.URL(), buckets[0])
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		require.NotNil(t, reply)
		var res scale.BucketResult
		require.NoError(t, json.Unmarshal(reply.Data(), &res))
		require.False(t, res.Expired, "bucket of cycle %d delivered past its deadline", res.Cycle)
		require.Len(t, res.Outcomes, 3)
		return res
	}
	res := deliver()
	m := scrapeMetrics(t, metricsAddr)
	outcome := map[fn]scale.Outcome{}
	for _, o := range res.Outcomes {
		outcome[fn{o.FunctionID, o.FunctionVersionID}] = o
	}

	// What the policy decided: 90 % on 2 scales up to ceil(2*1.2)=3, 10 %
	// on 4 down to floor(4*0.8)=3, no instance count holds.
	require.Equal(t, "scale_up", outcome[hot].Reason)
	require.Equal(t, 3, outcome[hot].Desired)
	require.Equal(t, "written", outcome[hot].Action)
	require.Equal(t, "scale_down", outcome[cold].Reason)
	require.Equal(t, 3, outcome[cold].Desired)
	require.Equal(t, "written", outcome[cold].Action)
	require.Equal(t, "hold_current_unknown", outcome[silent].Reason)
	require.Equal(t, "held", outcome[silent].Action)

	// All three are worker versions, labelled so per version and counted.
	for _, f := range []fn{hot, cold, silent} {
		require.Equal(t, "worker", outcome[f].Source)
		require.Equal(t, 1.0, m.gauge(t, "nvcf_autoscaler_version_source", "function_id", f.id, "function_version_id", f.version, "source", "worker"))
	}
	require.Equal(t, 3.0, delta(m, "nvcf_autoscaler_source_decisions_total", "source", "worker"))

	// What the simulator recorded: exactly those two writes.
	simWrites := sim.Writes()
	require.Len(t, simWrites, 2)
	for _, w := range simWrites {
		require.Equal(t, nvcfsim.ScalingApplied, w.Outcome)
		require.Equal(t, outcome[fn{w.FunctionID, w.VersionID}].Desired, w.Requested)
	}
	for _, f := range []fn{hot, cold} {
		d, ok := sim.Desired(f.id, f.version)
		require.True(t, ok)
		require.Equal(t, float64(d), m.gauge(t, "nvcf_autoscaler_desired_instances", "function_id", f.id, "function_version_id", f.version),
			"desired instances of %s are what the simulator holds", f.id)
	}

	// Per-version gauges equal the decisions.
	for f, want := range map[fn]struct {
		current, desired, status float64
		util                     float64
	}{
		hot:    {2, 3, 0, 90},
		cold:   {4, 3, 0, 10},
		silent: {0, 0, 1, 0}, // held: status 1, nothing known
	} {
		l := []string{"function_id", f.id, "function_version_id", f.version}
		o := outcome[f]
		require.Equal(t, want.current, m.gauge(t, "nvcf_autoscaler_current_instances", l...), f.id)
		require.Equal(t, float64(o.Current), m.gauge(t, "nvcf_autoscaler_current_instances", l...), f.id)
		require.Equal(t, want.desired, m.gauge(t, "nvcf_autoscaler_desired_instances", l...), f.id)
		require.Equal(t, float64(o.Desired), m.gauge(t, "nvcf_autoscaler_desired_instances", l...), f.id)
		require.Equal(t, want.status, m.gauge(t, "nvcf_autoscaler_function_status", l...), f.id)
		if want.util == 0 {
			require.Zero(t, m.gauge(t, "nvcf_autoscaler_utilization_percent", l...), f.id)
		} else {
			// A steady worker reads true at any phase of the window
			// among the 15 s scrapes (rate; the reference's increase / W
			// read 77 % or 96 % here on VictoriaMetrics, which does not
			// extrapolate). The exact value is checked just below
			// against the one the policy used.
			require.InEpsilon(t, want.util, m.gauge(t, "nvcf_autoscaler_utilization_percent", l...), 0.01, f.id)
		}
		require.Equal(t, o.Utilization, m.gauge(t, "nvcf_autoscaler_utilization_percent", l...), f.id)
	}

	// Counters moved by exactly this bucket's worth.
	require.Equal(t, 1.0, delta(m, decisions, "reason", "scale_up"))
	require.Equal(t, 1.0, delta(m, decisions, "reason", "scale_down"))
	require.Equal(t, 1.0, delta(m, decisions, "reason", "hold_current_unknown"))
	require.Equal(t, 3.0, m.Total(decisions)-before.Total(decisions), "one decision per version")
	require.Equal(t, float64(len(simWrites)), delta(m, writes, "outcome", "ok"))
	require.Equal(t, float64(len(simWrites)), m.Total(writes)-before.Total(writes), "no write failed")
	require.Equal(t, float64(len(simWrites)), delta(m, locks, "kind", "function", "outcome", "acquired"), "one lock per write")
	require.Zero(t, m.Total(locks, "kind", "function", "outcome", "held")+m.Total(locks, "kind", "function", "outcome", "error"))
	// The worker source: three range queries for the whole bucket, whose
	// newest point is the fresh window.
	require.Equal(t, 3.0, delta(m, queries, "caller", "scale"), "three queries for the bucket, not per version")
	require.Equal(t, 5.0, delta(m, queries, "caller", "discovery"))
	require.Equal(t, uint64(1), m.Count(bucketSeconds)-before.Count(bucketSeconds), "one bucket handled")
	require.Equal(t, uint64(8), m.Count(tsdbSeconds, "endpoint", "query_range", "status", "200")-
		before.Count(tsdbSeconds, "endpoint", "query_range", "status", "200"), "every range query answered 200")
	require.Equal(t, uint64(len(simWrites)), m.Count(nvcfSeconds, "endpoint", "http_predictions", "status", "200"))
	require.Equal(t, uint64(len(simWrites)), m.Count(limiterWait), "each admitted NVCF attempt records its limiter wait")
	require.Zero(t, m.gauge(t, "nvcf_autoscaler_nvcf_limiter_waiting"))
	age := m.gauge(t, "nvcf_autoscaler_utilization_sample_age_seconds")
	// The newest sample a decision may scale down on is the settled one,
	// a step (a minute) before the decision time; the fresh one is not a
	// sample of the series.
	require.InDelta(t, time.Minute.Seconds(), age, 0.05, "the newest sample is the settled step's")

	// A redelivery of the same bucket: decided again, written never.
	again := deliver()
	m2 := scrapeMetrics(t, metricsAddr)
	reasons := map[string]float64{}
	for _, o := range again.Outcomes {
		reasons[o.Reason]++
		require.NotEqual(t, "written", o.Action, "%s written twice", o.FunctionID)
		l := []string{"function_id", o.FunctionID, "function_version_id", o.FunctionVersionID}
		require.Equal(t, float64(o.Desired), m2.gauge(t, "nvcf_autoscaler_desired_instances", l...))
		require.Equal(t, float64(o.Current), m2.gauge(t, "nvcf_autoscaler_current_instances", l...))
	}
	names := make([]string, 0, len(reasons))
	for r := range reasons {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		require.Equal(t, reasons[r], m2.Value(decisions, "reason", r)-m.Value(decisions, "reason", r), "reason %s", r)
	}
	require.Equal(t, 3.0, m2.Total(decisions)-m.Total(decisions))
	require.Len(t, sim.Writes(), 2)
	require.Equal(t, m.Total(writes), m2.Total(writes))
	require.Equal(t, m.Total(locks), m2.Total(locks))
	require.Equal(t, 3.0, m2.Value(queries, "caller", "scale")-m.Value(queries, "caller", "scale"))
	require.Equal(t, uint64(1), m2.Count(bucketSeconds)-m.Count(bucketSeconds))
	require.Equal(t, 1.0, m2.gauge(t, "nvcf_autoscaler_function_status", "function_id", silent.id, "function_version_id", silent.version))

	// Nothing in /metrics names a version outside this bucket's three.
	for _, name := range []string{"nvcf_autoscaler_current_instances", "nvcf_autoscaler_desired_instances"} {
		for _, s := range m2.Metrics[name].GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "function_id" {
					require.True(t, strings.HasPrefix(l.GetValue(), run), l.GetValue())
				}
			}
		}
	}
}
