package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/config"
	"function/shared/events"
	"function/shared/nvcf"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/testenv"
	"function/shared/tsdb"
	"function/shared/tsdb/tsdbtest"
)

type fixture struct {
	settings config.Settings
	store    *store.Store
	storeCfg store.Config // how store was opened
	tsdb     *tsdb.Client
	sim      *nvcfsim.Server
	nvcf     *nvcf.Client
	versions []store.ActiveVersion

	// The seeded workers and the span of their samples, for keepReporting.
	vm                   string
	workers              []tsdbtest.Worker
	seededAt, reportedTo time.Time
}

// keepReporting imports the seeded workers' samples from where they ended
// up to now, as workers that keep running would report them (counters
// carry on from the same start). A test that decides again long after
// setup, as the lossy ones do after a claim's lease, would otherwise read
// windows past the last sample: a lower utilization and another decision.
func (f *fixture) keepReporting(t testing.TB) {
	t.Helper()
	now := time.Now()
	var fresh []tsdbtest.Series
	for _, s := range tsdbtest.Generate(f.workers, f.seededAt, now) {
		var keep []tsdbtest.Point
		for _, p := range s.Samples {
			if p.T.After(f.reportedTo) {
				keep = append(keep, p)
			}
		}
		if len(keep) > 0 {
			s.Samples = keep
			fresh = append(fresh, s)
		}
	}
	if len(fresh) == 0 {
		return
	}
	require.NoError(t, tsdbtest.ImportVM(context.Background(), f.vm, fresh))
	f.reportedTo = now
}

// setup seeds n versions (workers at 90 %, 50 % or 10 %) into the real
// VictoriaMetrics, registers them with the NVCF simulator, and writes their
// rows into a keyspace of the test's own on the real Cassandra, all in one
// bucket.
func setup(t testing.TB, n int) *fixture {
	hosts := testenv.RequireCassandra(t)
	vm := testenv.RequireVM(t)
	ctx := context.Background()
	run := fmt.Sprintf("scale%d", time.Now().UnixNano())
	f := &fixture{}

	var ws []tsdbtest.Worker
	sim, err := nvcfsim.Start(nvcfsim.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close(context.Background()) })
	f.sim = sim
	utils := []float64{0.9, 0.5, 0.1}
	for i := 0; i < n; i++ {
		fid, vid := fmt.Sprintf("%s-f%04d", run, i), fmt.Sprintf("%s-v%04d", run, i)
		ws = append(ws, tsdbtest.Worker{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca", Instances: 2,
			Utilization: utils[i%3], RequestsPerSecond: 1, Extra: map[string]string{"test_env": run}})
		sim.Register(nvcfsim.FunctionVersion{FunctionID: fid, VersionID: vid, NcaID: "nca", Status: nvcfsim.StatusActive,
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 50}}})
		f.versions = append(f.versions, store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: fid, FunctionVersionID: vid},
			NcaID: "nca", Invoked: true, LastUpdatedAt: time.Now(), Source: string(tsdb.SourceWorker)})
	}
	now := time.Now()
	require.NoError(t, tsdbtest.ImportVM(ctx, vm, tsdbtest.Generate(ws, now.Add(-15*time.Minute), now)))
	f.vm, f.workers, f.seededAt, f.reportedTo = vm, ws, now.Add(-15*time.Minute), now

	sc := store.DefaultConfig()
	sc.Hosts = hosts
	sc.Keyspace = testenv.Keyspace(t, "test_scale")
	f.storeCfg = sc
	f.store, err = store.Open(ctx, sc)
	require.NoError(t, err)
	t.Cleanup(func() { f.store.Close() })
	_, err = f.store.UpsertVersions(ctx, f.versions, time.Hour)
	require.NoError(t, err)

	f.tsdb, err = tsdb.New(tsdb.Config{URL: vm})
	require.NoError(t, err)
	f.nvcf, err = nvcf.New(nvcf.Config{Transport: nvcf.TransportHTTP, BaseURL: sim.HTTPURL(), BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	require.NoError(t, err)

	f.settings = defaultSettings(t)
	f.settings.NodeID = "node-a"
	f.settings.Buckets = 1
	f.settings.EnvLabel, f.settings.EnvValue = "test_env", run
	return f
}

// defaultSettings are the documented defaults, read the way Start reads them,
// except for the policy settings these tests' numbers were written against
// (the defaults before the policy benchmark chose new ones): nvcf mode with
// its guards, and a 60 % target for the tests that switch to target mode.
func defaultSettings(t testing.TB) config.Settings {
	s, err := config.Load(map[string]string{"AUTOSCALER_ROLE": "scale", "TSDB_URL": "http://127.0.0.1:1", "NVCF_DRY_RUN": "true",
		"POLICY_MODE": "nvcf", "TARGET_UTILIZATION": "60", "SCALE_DOWN_STABILIZATION": "300s", "MAX_SCALE_UP_RATE": "10", "MAX_SCALE_DOWN_RATE": "2"})
	require.NoError(t, err)
	return s
}

func (f *fixture) handler(t testing.TB, node string, client NVCF) *Handler {
	s := f.settings
	s.NodeID = node
	if client == nil {
		client = f.nvcf
	}
	h, err := New(Deps{Settings: s, Store: f.store, TSDB: f.tsdb, NVCF: client, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return h
}

func bucketEvent(cycle time.Time) event.Event {
	e := event.New()
	e.SetID(events.BucketEventID(cycle.UnixMilli(), 0, 1))
	e.SetType(events.TypeBucket)
	e.SetSource("test")
	_ = e.SetData(event.ApplicationJSON, events.Bucket{Bucket: 0, Buckets: 1, Cycle: cycle.UnixMilli(), Deadline: cycle.Add(time.Minute)})
	return e
}

// activateEvent is an activation of fid/vid, as the invocation plane
// sends one, under its own event id.
func activateEvent(id, fid, vid string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetType(events.TypeActivate)
	e.SetSource("test")
	_ = e.SetData(event.ApplicationJSON, events.Activate{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca"})
	return e
}

func decode(t testing.TB, reply *event.Event) BucketResult {
	require.NotNil(t, reply)
	var r BucketResult
	require.NoError(t, json.Unmarshal(reply.Data(), &r))
	return r
}

func TestBucketOf500DecidedWithConstantQueries(t *testing.T) {
	f := setup(t, 500)
	h := f.handler(t, "node-a", nil)
	// A client's first query that joins groups of ids asks the TSDB
	// whether it has union, once: asked here, so the count is the bucket's.
	var ids []tsdb.FunctionVersion
	for i := 0; i < 25; i++ {
		ids = append(ids, tsdb.FunctionVersion{FunctionID: "warm", FunctionVersionID: fmt.Sprintf("warm-%02d", i)})
	}
	_, err := f.tsdb.BucketMetrics(context.Background(), ids, time.Now(), tsdb.MetricsOptions{Window: 70 * time.Second, Step: time.Minute, Lookback: 10 * time.Minute})
	require.NoError(t, err)
	q0 := f.tsdb.Queries()
	reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	r := decode(t, reply)
	require.Equal(t, int64(3), f.tsdb.Queries()-q0, "three PromQL queries for the whole bucket")
	require.Equal(t, 3, r.Queries, "the reply counts them")
	require.Equal(t, 500, r.Versions)
	require.Equal(t, 500, r.Written, "every version gets its first request")
	byReason := map[string]int{}
	for _, o := range r.Outcomes {
		byReason[o.Reason]++
		require.True(t, o.CurrentKnown)
		require.Equal(t, 2, o.Current)
	}
	// 90 % -> up to 3, 50 % -> hold at 2, 10 % -> down (stabilization has
	// no history yet on a first decision).
	require.Equal(t, 167, byReason["scale_up"], "%v", byReason)
	require.Equal(t, 167, byReason["hold_in_band"], "%v", byReason)
	require.Equal(t, 166, byReason["scale_down"]+byReason["stabilized"]+byReason["rate_limited_down"], "%v", byReason)
	got, _ := f.sim.Desired(f.versions[0].FunctionID, f.versions[0].FunctionVersionID)
	require.Equal(t, 3, got)
}

func TestConcurrentHandlersAndReplaysWriteOnce(t *testing.T) {
	f := setup(t, 120)
	cycle := time.Now()
	var wg sync.WaitGroup
	for _, node := range []string{"node-a", "node-b"} {
		h := f.handler(t, node, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.HandleBucket(context.Background(), bucketEvent(cycle))
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	for _, v := range f.versions {
		require.LessOrEqual(t, f.sim.Calls(v.FunctionID, v.FunctionVersionID), 1, "%s written twice", v.VersionKey)
	}
	written := len(f.sim.Writes())
	require.Equal(t, 120, written)

	// Knative redelivers the same event: nothing new is written.
	reply, err := f.handler(t, "node-c", nil).HandleBucket(context.Background(), bucketEvent(cycle))
	require.NoError(t, err)
	require.Zero(t, decode(t, reply).Written)
	require.Len(t, f.sim.Writes(), written)

	// A late event past its deadline is dropped whole.
	late := bucketEvent(cycle.Add(-2 * time.Minute))
	reply, err = f.handler(t, "node-c", nil).HandleBucket(context.Background(), late)
	require.NoError(t, err)
	require.True(t, decode(t, reply).Expired)
	require.Len(t, f.sim.Writes(), written)
}

// One bucket event with a cycle far in the future must not freeze scaling:
// decided, its cycle would become every version's last applied cycle and
// each real cycle after it would be skipped as already applied.
func TestFutureCycleIsRefusedAndRealCyclesStillWrite(t *testing.T) {
	f := setup(t, 3)
	h := f.handler(t, "node-a", nil)
	_, err := h.HandleBucket(context.Background(), bucketEvent(time.Now().Add(365*24*time.Hour)))
	require.Error(t, err)
	require.Equal(t, http.StatusBadRequest, statusOf(err), "no retry makes a future cycle valid: %v", err)
	require.ErrorContains(t, err, "MAX_CLOCK_SKEW="+f.settings.ClockSkew.String())
	require.Empty(t, f.sim.Writes(), "nothing decided from the future")

	reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	r := decode(t, reply)
	require.Equal(t, 3, r.Written, "the real cycle writes: %+v", r.Outcomes)
}

// A state row poisoned before events were bounded (its last cycle a year
// ahead) must not keep freezing the version until the row's TTL: the
// cycle is read as none applied, real cycles write, and the row gets a
// real cycle back.
func TestStateFromTheFutureIsRepaired(t *testing.T) {
	f := setup(t, 3)
	ctx := context.Background()
	future := time.Now().Add(365 * 24 * time.Hour).UnixMilli()
	for _, v := range f.versions {
		// As a decided far-future event left it: the count asked then
		// (the running 2) and the future cycle.
		require.NoError(t, f.store.RecordWriteTarget(ctx, v.VersionKey, "", 2, 2, future, statusOK, time.Hour))
	}
	h := f.handler(t, "node-a", nil)
	now := time.Now()
	reply, err := h.HandleBucket(ctx, bucketEvent(now))
	require.NoError(t, err)
	r := decode(t, reply)
	// 90 % scales up (nvcf mode); 50 % and 10 % (stabilized) keep the 2
	// asked for, so they are unchanged rather than rewritten.
	require.Equal(t, 1, r.Written, "real cycles write again: %+v", r.Outcomes)
	for _, o := range r.Outcomes {
		require.NotEqual(t, "already_applied", o.Action, "%+v", o)
		st, err := f.store.ReadState(ctx, store.VersionKey{FunctionID: o.FunctionID, FunctionVersionID: o.FunctionVersionID})
		require.NoError(t, err)
		if o.Action == "written" {
			require.Equal(t, now.UnixMilli(), st.LastCycle, "the written row holds the real cycle again: %+v", o)
		}
	}
}

// The event's deadline is a claim; cycle + BUCKET_DEADLINE is the bound. A
// month-old cycle is dropped as late whatever deadline it names.
func TestOldCycleIsDroppedWhateverDeadlineItClaims(t *testing.T) {
	f := setup(t, 3)
	e := bucketEvent(time.Now())
	old := time.Now().Add(-30 * 24 * time.Hour)
	_ = e.SetData(event.ApplicationJSON, events.Bucket{Bucket: 0, Buckets: 1, Cycle: old.UnixMilli(),
		Deadline: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
	reply, err := f.handler(t, "node-a", nil).HandleBucket(context.Background(), e)
	require.NoError(t, err)
	r := decode(t, reply)
	require.True(t, r.Expired, "dropped as late: %+v", r)
	require.Empty(t, f.sim.Writes())
}

func statusOf(err error) int {
	var r *cehttp.Result
	if errors.As(err, &r) {
		return r.StatusCode
	}
	return 0
}

func TestNVCFThrottlingIsRetriedAndNotFoundRemembered(t *testing.T) {
	f := setup(t, 7)
	// A version with metrics and a Cassandra row that the NVCF API no
	// longer knows (deleted).
	ghost := f.versions[6]
	f.sim.Remove(ghost.FunctionID, ghost.FunctionVersionID)

	f.sim.FailNext(2, nvcfsim.Fault{Kind: nvcfsim.FaultRateLimited, RetryAfter: 10 * time.Millisecond})
	h := f.handler(t, "node-a", nil)
	reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err, "429s are retried inside the write")
	r := decode(t, reply)
	require.Equal(t, 6, r.Written)
	var ghostOutcome Outcome
	for _, o := range r.Outcomes {
		if o.FunctionID == ghost.FunctionID {
			ghostOutcome = o
		}
	}
	require.Equal(t, "not_found", ghostOutcome.Action)
	// One NotFound answer, possibly after one injected 429.
	calls := f.sim.Calls(ghost.FunctionID, ghost.FunctionVersionID)
	require.LessOrEqual(t, calls, 2)

	// 503s are retried too.
	f.sim.FailNext(2, nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable})
	_, err = h.HandleBucket(context.Background(), bucketEvent(time.Now().Add(time.Second)))
	require.NoError(t, err)

	// Next cycles do not ask again for the NotFound version.
	for i := 2; i < 4; i++ {
		_, err := h.HandleBucket(context.Background(), bucketEvent(time.Now().Add(time.Duration(i)*time.Second)))
		require.NoError(t, err)
	}
	require.Equal(t, calls, f.sim.Calls(ghost.FunctionID, ghost.FunctionVersionID), "NotFound is remembered, not retried every cycle")
}

func TestPermanentNVCFOutageAnswersRetryable(t *testing.T) {
	f := setup(t, 3)
	f.sim.FailNext(1000, nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable})
	_, err := f.handler(t, "node-a", nil).HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.Error(t, err)
	require.Contains(t, err.Error(), "3 of 3 NVCF writes failed")
	require.Contains(t, err.Error(), fmt.Sprint(http.StatusServiceUnavailable))
	// Bounded: at most MaxAttempts calls per version.
	for _, v := range f.versions {
		require.LessOrEqual(t, f.sim.Calls(v.FunctionID, v.FunctionVersionID), f.settings.Scale.NVCFMaxAttempts)
	}
}

func TestActivationIsImmediateAndSingleFlight(t *testing.T) {
	f := setup(t, 1)
	f.sim.Register(nvcfsim.FunctionVersion{FunctionID: "cold-f", VersionID: "cold-v", NcaID: "nca", Status: nvcfsim.StatusActive,
		Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 4}}})
	h := f.handler(t, "node-a", nil)
	e := activateEvent("act-1", "cold-f", "cold-v")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.HandleActivate(context.Background(), e)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	got, _ := f.sim.Desired("cold-f", "cold-v")
	require.Equal(t, 1, got)
	require.Equal(t, 1, f.sim.Calls("cold-f", "cold-v"), "eight concurrent activations, one write")
	v, err := f.store.ReadVersion(context.Background(), store.VersionKey{FunctionID: "cold-f", FunctionVersionID: "cold-v"})
	require.NoError(t, err)
	require.True(t, v.Invoked, "the activated version is in Cassandra before discovery sees it")
}

// An activation of a version the NVCF API does not know is answered from
// the not-found cache, as the bucket path is: many concurrent activations of
// one unknown version (each its own event) make one NVCF call, and later
// ones make none until NOT_FOUND_RETRY has passed.
func TestActivationOfAnUnknownVersionAsksNVCFOnce(t *testing.T) {
	f := setup(t, 1)
	h := f.handler(t, "node-a", nil)
	activate := func(i int) (ActivateResult, error) {
		reply, err := h.HandleActivate(context.Background(), activateEvent(fmt.Sprintf("act-ghost-%d", i), "ghost-f", "ghost-v"))
		if err != nil {
			return ActivateResult{}, err
		}
		var r ActivateResult
		require.NoError(t, json.Unmarshal(reply.Data(), &r))
		return r, nil
	}
	var wg sync.WaitGroup
	actions := make([]string, 200)
	for i := range actions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := activate(i)
			require.NoError(t, err, "an unknown version is no reason to retry")
			actions[i] = r.Action
		}()
	}
	wg.Wait()
	require.Equal(t, 1, f.sim.Calls("ghost-f", "ghost-v"), "200 concurrent activations, one NVCF call: %v", actions)
	for i, a := range actions {
		require.Contains(t, []string{"not_found", "locked"}, a, "activation %d", i)
	}

	r, err := activate(200)
	require.NoError(t, err)
	require.Equal(t, "not_found", r.Action)
	require.Equal(t, "not_found_cached", r.Reason)
	require.Equal(t, 1, f.sim.Calls("ghost-f", "ghost-v"), "a later activation is answered from the cache")
}

// cancelMidQuery is the real TSDB client with the request's client going
// away just as the metrics are asked for, as a dispatcher that times out.
type cancelMidQuery struct {
	*tsdb.Client
	cancel context.CancelFunc
}

func (m cancelMidQuery) BucketMetrics(ctx context.Context, vs []tsdb.FunctionVersion, now time.Time, o tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.VersionMetrics, error) {
	m.cancel()
	return m.Client.BucketMetrics(ctx, vs, now, o)
}

// A bucket request its client cancelled is not a TSDB failure: no ERROR
// line, no hold_metrics_error, no tsdb_error status, nothing written.
func TestCancelledBucketIsNotATSDBFailure(t *testing.T) {
	f := setup(t, 3)
	var logs bytes.Buffer
	m := telemetry.NewMetrics()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := New(Deps{Settings: f.settings, Store: f.store, TSDB: cancelMidQuery{f.tsdb, cancel}, NVCF: f.nvcf,
		Log: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: m})
	require.NoError(t, err)
	_, err = h.HandleBucket(ctx, bucketEvent(time.Now()))
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err))
	require.ErrorContains(t, err, "cancelled")
	require.NotContains(t, logs.String(), `"level":"ERROR"`)
	require.Contains(t, logs.String(), "cancelled")
	require.Zero(t, testutil.ToFloat64(m.Decisions.WithLabelValues("hold_metrics_error")))
	for _, v := range f.versions {
		require.Zero(t, testutil.ToFloat64(m.Status.WithLabelValues(v.FunctionID, v.FunctionVersionID)), "%s", v.VersionKey)
	}
	require.Empty(t, f.sim.Writes())
}

// perFunction is the reference's approach: the same three queries, one
// version at a time.
type perFunction struct{ c *tsdb.Client }

func (p perFunction) ControlPlaneMetrics(ctx context.Context, vs []tsdb.FunctionVersion, now time.Time, o tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.ControlPlaneMetrics, error) {
	return p.c.ControlPlaneMetrics(ctx, vs, now, o)
}

func (p perFunction) GatewayMetrics(ctx context.Context, ids []string, now time.Time, o tsdb.MetricsOptions) (map[string]tsdb.GatewayMetrics, error) {
	return p.c.GatewayMetrics(ctx, ids, now, o)
}

func (p perFunction) BucketMetrics(ctx context.Context, vs []tsdb.FunctionVersion, now time.Time, o tsdb.MetricsOptions) (map[tsdb.FunctionVersion]tsdb.VersionMetrics, error) {
	out := map[tsdb.FunctionVersion]tsdb.VersionMetrics{}
	for _, v := range vs {
		m, err := p.c.BucketMetrics(ctx, []tsdb.FunctionVersion{v}, now, o)
		if err != nil {
			return nil, err
		}
		for k, x := range m {
			out[k] = x
		}
	}
	return out, nil
}

// BenchmarkBucket1000 decides one bucket of 1,000 versions against the
// real servers, batched and one-query-per-function, in the same process,
// and reports the ratios (writes go to a dry-run client so both variants
// do identical work apart from the TSDB).
func BenchmarkBucket1000(b *testing.B) {
	f := setup(b, 1000)
	dry, err := nvcf.New(nvcf.Config{DryRun: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	run := func(m Metrics) (time.Duration, int64) {
		s := f.settings
		h, err := New(Deps{Settings: s, Store: f.store, TSDB: m, NVCF: dry, Log: slog.New(slog.DiscardHandler)})
		require.NoError(b, err)
		q0 := f.tsdb.Queries()
		t0 := time.Now()
		// A fresh cycle each time; dry-run writes are not recorded, so
		// every run decides the same inputs.
		_, err = h.HandleBucket(context.Background(), bucketEvent(time.Now()))
		require.NoError(b, err)
		return time.Since(t0), f.tsdb.Queries() - q0
	}
	var batchedT, perT time.Duration
	var batchedQ, perQ int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t1, q1 := run(f.tsdb)
		t2, q2 := run(perFunction{f.tsdb})
		batchedT, perT, batchedQ, perQ = batchedT+t1, perT+t2, batchedQ+q1, perQ+q2
	}
	n := float64(b.N)
	b.ReportMetric(batchedT.Seconds()/n, "batched-s/bucket")
	b.ReportMetric(perT.Seconds()/n, "perfn-s/bucket")
	b.ReportMetric(float64(batchedQ)/n, "batched-queries/bucket")
	b.ReportMetric(float64(perQ)/n, "perfn-queries/bucket")
	b.ReportMetric(float64(perQ)/float64(batchedQ), "x-fewer-queries")
	b.ReportMetric(perT.Seconds()/batchedT.Seconds(), "x-faster")
}

// The NVCF API clamps a request above the sum of a version's maxInstances.
// The outcome must say so on the write and on every later cycle that
// leaves the request unchanged, instead of a bare "unchanged", and the
// clamp must not make the version be written again: the request recorded
// stays the policy's count.
func TestNVCFClampIsReportedEveryCycleWithoutRewriting(t *testing.T) {
	f := setup(t, 2)
	clamped, free := f.versions[0], f.versions[1]
	// Version 0 runs 2 workers at 90 %: the policy wants 3, NVCF allows 2.
	f.sim.Register(nvcfsim.FunctionVersion{FunctionID: clamped.FunctionID, VersionID: clamped.FunctionVersionID, NcaID: "nca",
		Status: nvcfsim.StatusActive, Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 2}}})
	h := f.handler(t, "node-a", nil)

	byVersion := func(r BucketResult) map[string]Outcome {
		out := map[string]Outcome{}
		for _, o := range r.Outcomes {
			out[o.FunctionVersionID] = o
		}
		return out
	}
	reply, err := h.HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	first := byVersion(decode(t, reply))
	o := first[clamped.FunctionVersionID]
	require.Equal(t, "written", o.Action, "%+v", o)
	require.Equal(t, 3, o.Desired, "the policy's count: %+v", o)
	require.NotNil(t, o.ClampedTo, "%+v", o)
	require.Equal(t, 2, *o.ClampedTo)
	require.Contains(t, o.Detail, "clamped by NVCF to 2 (max)")
	got, _ := f.sim.Desired(clamped.FunctionID, clamped.FunctionVersionID)
	require.Equal(t, 2, got, "the simulator clamped the write")
	st, err := f.store.ReadState(context.Background(), clamped.VersionKey)
	require.NoError(t, err)
	require.Equal(t, 3, st.LastRequested, "the request recorded stays the policy's count")
	require.True(t, st.HasAppliedTarget)
	require.Equal(t, 2, st.AppliedTarget)
	require.Equal(t, "written", first[free.FunctionVersionID].Action)
	require.Nil(t, first[free.FunctionVersionID].ClampedTo, "an unclamped write reports no clamp: %+v", first[free.FunctionVersionID])
	calls := f.sim.Calls(clamped.FunctionID, clamped.FunctionVersionID)
	require.Equal(t, 1, calls)

	// The next cycle decides 3 again: nothing is written, and the outcome
	// still says why 2 run.
	reply, err = h.HandleBucket(context.Background(), bucketEvent(time.Now().Add(time.Millisecond)))
	require.NoError(t, err)
	o = byVersion(decode(t, reply))[clamped.FunctionVersionID]
	require.Equal(t, "unchanged", o.Action, "%+v", o)
	require.Equal(t, 3, o.Desired, "%+v", o)
	require.NotNil(t, o.ClampedTo, "%+v", o)
	require.Equal(t, 2, *o.ClampedTo)
	require.Contains(t, o.Detail, "clamped by NVCF to 2 (max)")
	require.Equal(t, calls, f.sim.Calls(clamped.FunctionID, clamped.FunctionVersionID), "a clamped version is not written again")
}

// A version NVCF clamped to its max is not written again while the policy
// wants more than that max, however its count moves, and a count below
// the max is written at once.
func TestClampedVersionIsNotRewrittenUntilARealChange(t *testing.T) {
	f := setup(t, 1)
	v := f.versions[0] // 2 workers at 90 %
	f.sim.Register(nvcfsim.FunctionVersion{FunctionID: v.FunctionID, VersionID: v.FunctionVersionID, NcaID: "nca",
		Status: nvcfsim.StatusActive, Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 2}}})
	ctx := context.Background()
	decide := func(at time.Time, tune func(s *config.Scale)) Outcome {
		t.Helper()
		s := f.settings
		tune(&s.Scale)
		h, err := New(Deps{Settings: s, Store: f.store, TSDB: f.tsdb, NVCF: f.nvcf, Log: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		reply, err := h.HandleBucket(ctx, bucketEvent(at))
		require.NoError(t, err)
		return decode(t, reply).Outcomes[0]
	}
	calls := func() int { return f.sim.Calls(v.FunctionID, v.FunctionVersionID) }

	// nvcf mode wants 3; NVCF clamps to 2.
	o := decide(time.Now(), func(*config.Scale) {})
	require.Equal(t, "written", o.Action, "%+v", o)
	require.Equal(t, 3, o.Desired)
	require.Equal(t, 1, calls())

	// Target mode at 30 % wants about three times the 2 NVCF runs (more
	// than the 3 asked for): more than the max again, so nothing is
	// written, and the outcome says why.
	o = decide(time.Now().Add(time.Millisecond), func(s *config.Scale) { s.PolicyMode, s.TargetUtilization = "target", 30 })
	require.Equal(t, "clamped", o.Action, "%+v", o)
	require.Greater(t, o.Desired, 3, "%+v", o)
	require.NotNil(t, o.ClampedTo)
	require.Equal(t, 2, *o.ClampedTo)
	require.Contains(t, o.Detail, fmt.Sprintf("not written: NVCF would clamp %d to the same max", o.Desired))
	require.Equal(t, 1, calls(), "a write NVCF would clamp to the same max is not made")

	// A max of 1 of our own: below NVCF's, a real change, written at once.
	o = decide(time.Now().Add(2*time.Millisecond), func(s *config.Scale) { s.MaxInstances = 1 })
	require.Equal(t, "written", o.Action, "%+v", o)
	require.Equal(t, 1, o.Desired)
	require.Equal(t, 2, calls())
	got, _ := f.sim.Desired(v.FunctionID, v.FunctionVersionID)
	require.Equal(t, 1, got)
}
