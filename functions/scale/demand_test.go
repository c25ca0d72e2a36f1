package scale

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/events"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/testenv"
	"function/shared/tsdb"
	"function/shared/tsdb/tsdbtest"
)

// load is one version's known worker and request counters: its workers
// report from the first step until workersUntil (zero: to the end), each
// instance's threads busy at busy[i] thread-seconds per second from
// steps[i], and requests routed to it at requests[i] per second (nil:
// no request counter).
type load struct {
	id                        string
	instances, threads        int
	steps                     []time.Time
	busy, requests            []float64
	workersFrom, workersUntil time.Time
}

// addVersions ingests the versions' series (scraped every 15 s, on minute
// boundaries, so every window's numbers are exact), registers them with
// the NVCF simulator and puts their rows into the fixture's bucket.
func (f *fixture) addVersions(t *testing.T, end time.Time, loads ...load) map[string]store.VersionKey {
	t.Helper()
	env := f.settings.EnvValue
	keys := map[string]store.VersionKey{}
	var series []tsdbtest.Series
	var rows []store.ActiveVersion
	for _, l := range loads {
		fid, vid := env+"-f-"+l.id, env+"-v-"+l.id
		keys[l.id] = store.VersionKey{FunctionID: fid, FunctionVersionID: vid}
		labels := func(name, inst string) map[string]string {
			m := map[string]string{"__name__": name, "function_id": fid, "function_version_id": vid, "nca_id": "nca", "test_env": env}
			if inst != "" {
				m["instance_id"] = inst
			}
			return m
		}
		from, until := l.steps[0], end
		if !l.workersFrom.IsZero() {
			from = l.workersFrom
		}
		if !l.workersUntil.IsZero() {
			until = l.workersUntil
		}
		for i := 0; i < l.instances; i++ {
			inst := fmt.Sprintf("%s-w%d", vid, i)
			series = append(series,
				tsdbtest.Scrape(labels(tsdb.MetricBusySeconds, inst), from, until, 15*time.Second, tsdbtest.Counter(l.steps, l.busy)),
				tsdbtest.Scrape(labels(tsdb.MetricThreadCount, inst), from, until, 15*time.Second, func(time.Time) float64 { return float64(l.threads) }))
		}
		if l.requests != nil {
			series = append(series, tsdbtest.Scrape(labels(tsdb.MetricRequestsTotal, ""), l.steps[0], end, 15*time.Second, tsdbtest.Counter(l.steps, l.requests)))
		}
		f.sim.Register(nvcfsim.FunctionVersion{FunctionID: fid, VersionID: vid, NcaID: "nca", Status: nvcfsim.StatusActive,
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 50}}})
		rows = append(rows, store.ActiveVersion{VersionKey: keys[l.id], NcaID: "nca", Invoked: l.requests != nil, LastUpdatedAt: time.Now(),
			Source: string(tsdb.SourceWorker)})
	}
	ctx := context.Background()
	require.NoError(t, tsdbtest.ImportVM(ctx, testenv.RequireVM(t), series))
	_, err := f.store.UpsertVersions(ctx, rows, time.Hour)
	require.NoError(t, err)
	return keys
}

// decideAt runs one bucket cycle whose clock reads now (minutes ago, so
// that every window it reads is ingested), on a new handler: a restarted
// or another replica, with no memory but Cassandra's. The event's deadline
// is a minute of real time, which the handler's context runs against.
func (f *fixture) decideAt(t *testing.T, now time.Time) BucketResult {
	t.Helper()
	return f.decideLogged(t, now, slog.New(slog.DiscardHandler))
}

// decideLogged is decideAt with the handler logging to log.
func (f *fixture) decideLogged(t *testing.T, now time.Time, log *slog.Logger) BucketResult {
	t.Helper()
	s := f.settings
	s.Discovery.BucketDeadline = time.Since(now) + time.Minute
	h, err := New(Deps{Settings: s, Store: f.store, TSDB: f.tsdb, NVCF: f.nvcf, Log: log, Now: func() time.Time { return now }})
	require.NoError(t, err)
	e := bucketEvent(now)
	require.NoError(t, e.SetData(event.ApplicationJSON, events.Bucket{Bucket: 0, Buckets: 1, Cycle: now.UnixMilli(), Deadline: time.Now().Add(time.Minute)}))
	reply, err := h.HandleBucket(context.Background(), e)
	require.NoError(t, err)
	return decode(t, reply)
}

func outcomeOf(t *testing.T, r BucketResult, key store.VersionKey) Outcome {
	t.Helper()
	for _, o := range r.Outcomes {
		if o.FunctionID == key.FunctionID && o.FunctionVersionID == key.FunctionVersionID {
			return o
		}
	}
	t.Fatalf("no outcome for %s in %+v", key, r.Outcomes)
	return Outcome{}
}

// minuteSettings are one-minute windows and steps, so that each cycle's
// settled window is one whole minute of the ingested data.
func minuteSettings(f *fixture) {
	f.settings.Scale.Window, f.settings.Scale.Step, f.settings.Scale.Lookback = time.Minute, time.Minute, 10*time.Minute
}

// The cost is learned from the window before the settled one, stored, and
// never folded twice: a replay, a restart and a late cycle change nothing,
// and a new window is folded into what is stored.
func TestCostIsLearnedPersistedAndNeverFoldedTwice(t *testing.T) {
	f := setup(t, 1)
	minuteSettings(f)
	t0 := time.Now().Truncate(time.Minute).Add(-4 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	// 2 instances of 1 thread; 1 request/s. Until t0 each request takes 1
	// busy second (50 %), from t0 on 1.2 (60 %).
	keys := f.addVersions(t, time.Now(), load{id: "steady", instances: 2, threads: 1,
		steps: []time.Time{start, t0}, busy: []float64{0.5, 0.6}, requests: []float64{1, 1}})
	key := keys["steady"]
	ctx := context.Background()
	costOf := func() store.Cost {
		st, err := f.store.ReadState(ctx, key)
		require.NoError(t, err)
		return st.Cost
	}

	// Cycle A (settled window [t0-2m, t0-1m]; learned from [t0-3m, t0-2m]):
	// 60 busy seconds, 60 requests.
	a := t0
	f.decideAt(t, a)
	first := policy.Cost{}.Learn(t0.Add(-2*time.Minute), 60, 60, 50)
	got := costOf()
	require.InDelta(t, 1.0, got.SecondsPerRequest, 1e-9)
	require.InDelta(t, first.Weight, got.Weight, 1e-9)
	require.True(t, t0.Add(-2*time.Minute).Equal(got.WindowEnd), "the window learned from is recorded: %s", got.WindowEnd)

	// Replayed on a restarted replica: the same window is not folded again.
	f.decideAt(t, a)
	require.Equal(t, got, costOf(), "a replay must not fold its window twice")

	// Cycles B and C learn from [t0-2m, t0-1m] and [t0-1m, t0], which
	// measure the same cost: within the drift a save is not worth a
	// write, so the stored estimate stays. C's settled window already
	// holds the heavier requests; they are not learned before their
	// window's neighbours settled.
	b, c := a.Add(time.Minute), a.Add(2*time.Minute)
	f.decideAt(t, b)
	require.Equal(t, got, costOf())
	f.decideAt(t, c)
	require.Equal(t, got, costOf())

	// Cycle D (learned from [t0, t0+1m]): 72 busy seconds for 60 requests.
	// It is folded into the stored estimate and saved.
	d := c.Add(time.Minute)
	f.decideAt(t, d)
	want := first.Learn(t0.Add(time.Minute), 72, 60, 60)
	got = costOf()
	require.InDelta(t, want.SecondsPerRequest, got.SecondsPerRequest, 1e-9)
	require.InDelta(t, want.Weight, got.Weight, 1e-9)
	require.Greater(t, got.SecondsPerRequest, 1.0)

	// A replay of D and late B and C afterwards change nothing.
	f.decideAt(t, d)
	f.decideAt(t, b)
	f.decideAt(t, c)
	require.Equal(t, got, costOf(), "replayed and late cycles must not fold windows again")
}

// A load step that began in the last seconds of the settled window, whose
// scrapes after it have not arrived yet, makes the fresh window's requests
// look steady while the settled window counts the step's first requests
// and not their busy time. The cost is not learned from that window but
// from the one before it, whose later neighbour has settled. (The
// closed loop's 8 s windows every 4 s met this: a cost learned 7 % low
// sized 7 instances where 8 were needed.)
func TestCostIsNotLearnedFromAStepAtTheSettledWindowsEnd(t *testing.T) {
	f := setup(t, 1)
	// Windows twice the step, as in production (70 s every 60 s) and in
	// the closed loop (8 s every 4 s): the fresh window overlaps the
	// settled one.
	f.settings.Scale.Window, f.settings.Scale.Step, f.settings.Scale.Lookback = 2*time.Minute, time.Minute, 10*time.Minute
	settled := time.Now().Truncate(time.Minute).Add(-3 * time.Minute)
	start := settled.Add(-15 * time.Minute)
	stepAt := settled.Add(-2 * time.Second)
	// 2 instances of 1 thread, 1 request/s at 1 busy second each (50 %);
	// 2 s before the settled window's end the load goes to 10/s and both
	// threads are saturated. Nothing is scraped after the settled end.
	keys := f.addVersions(t, settled, load{id: "edge", instances: 2, threads: 1,
		steps: []time.Time{start, stepAt}, busy: []float64{0.5, 1}, requests: []float64{1, 10}})
	f.decideAt(t, settled.Add(time.Minute))

	st, err := f.store.ReadState(context.Background(), keys["edge"])
	require.NoError(t, err)
	// Learned from [settled-3m, settled-1m]: 120 busy seconds, 120
	// requests. The settled window (118 + 4 busy seconds, 118 + 20
	// requests) would have taught 0.88 s.
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 1e-9, "cost %+v", st.Cost)
	require.True(t, settled.Add(-time.Minute).Equal(st.Cost.WindowEnd), "learned from the window ending a step before the settled one: %s", st.Cost.WindowEnd)
}

// A saturated version whose cost was learned while it was not saturated is
// sized for its demand in one decision; a twin without a learned cost can
// only double.
func TestSaturatedVersionIsSizedToDemandInOneDecision(t *testing.T) {
	f := setup(t, 1)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	t0 := time.Now().Truncate(time.Minute).Add(-3 * time.Minute)
	start := t0.Add(-15 * time.Minute)
	// 2 instances of 1 thread, 1 busy second per request. Until t0: 1
	// request/s (50 %). From t0: 10 requests/s routed, the workers 100 %
	// busy and the rest queued.
	keys := f.addVersions(t, time.Now(),
		load{id: "burst", instances: 2, threads: 1, steps: []time.Time{start, t0}, busy: []float64{0.5, 1}, requests: []float64{1, 10}},
		load{id: "unlearned", instances: 2, threads: 1, steps: []time.Time{t0.Add(-time.Minute), t0}, busy: []float64{1, 1}, requests: []float64{10, 10}},
		// The same step earlier, in the middle of the first cycle's settled
		// window: 75 % there, but saturated in the newer one.
		load{id: "straddle", instances: 2, threads: 1, steps: []time.Time{start, t0.Add(-150 * time.Second)}, busy: []float64{0.5, 1}, requests: []float64{1, 10}},
	)

	// Before the step: in band; the cost (1 s per request) is learned.
	r := f.decideAt(t, t0.Add(-30*time.Second))
	before := outcomeOf(t, r, keys["burst"])
	require.Equal(t, 2, before.Desired, "%+v", before)
	// A window that straddles a load step reads unsaturated while requests
	// already queue (330 requests for 90 busy seconds): learning from it
	// would give 0.27 s and size the demand far too small.
	st, err := f.store.ReadState(context.Background(), keys["straddle"])
	require.NoError(t, err)
	require.Zero(t, st.Cost.Weight, "nothing learned from a window followed by saturation: %+v", st.Cost)

	// Two minutes into the step: the settled and the fresh window are
	// saturated. Demand is 10 req/s x 1 s / 1 thread = 10 busy
	// instances: 17 at the 60 % target, in one decision.
	r = f.decideAt(t, t0.Add(150*time.Second))
	o := outcomeOf(t, r, keys["burst"])
	require.Equal(t, string(policy.ReasonScaleUpDemand), o.Reason, "%+v", o)
	require.Equal(t, 17, o.Desired, "%+v", o)
	require.Contains(t, o.Detail, policy.MethodRequestsLearnedCost)
	require.Equal(t, "written", o.Action)
	got, _ := f.sim.Desired(keys["burst"].FunctionID, keys["burst"].FunctionVersionID)
	require.Equal(t, 17, got)
	require.Equal(t, 2, f.sim.Calls(keys["burst"].FunctionID, keys["burst"].FunctionVersionID), "one write before (the first request), one for the step")

	// The saturated windows taught nothing: the cost is still 1 s.
	st, err = f.store.ReadState(context.Background(), keys["burst"])
	require.NoError(t, err)
	require.InDelta(t, 1.0, st.Cost.SecondsPerRequest, 1e-9)

	// Without a learned cost the same load can only double.
	u := outcomeOf(t, r, keys["unlearned"])
	require.Equal(t, string(policy.ReasonScaleUpSaturated), u.Reason, "%+v", u)
	require.Equal(t, 4, u.Desired, "%+v", u)
}

// Missing or partial data never scales down or to zero: each version at 4
// instances (4 last requested) has a twin whose settled data would scale
// it, so the test fails if the path under test were dead.
func TestMissingOrPartialDataNeverScalesDownOrToZero(t *testing.T) {
	f := setup(t, 1)
	minuteSettings(f)
	f.settings.Scale.PolicyMode = "target"
	f.settings.Scale.DownStabilization = 0
	now := time.Now().Truncate(time.Minute).Add(-30 * time.Second)
	start := now.Add(-15 * time.Minute)
	// After the newest settled sample (now rounded down to the minute),
	// so only the fresh window sees what happens from here on.
	lull := now.Add(-20 * time.Second)
	keys := f.addVersions(t, now,
		// Settled at 50 % (in band at 60 % target), idle in the newest,
		// partial window: the fresh sample reads 20 %.
		load{id: "fresh-lull", instances: 4, threads: 1, steps: []time.Time{start, lull}, busy: []float64{0.5, 0}, requests: []float64{2, 0}},
		// Settled at 50 %, workers stopped reporting inside the fresh
		// window: a partial window, low if read as a whole one.
		load{id: "fresh-partial", instances: 4, threads: 1, steps: []time.Time{start}, busy: []float64{0.5}, requests: []float64{2}, workersUntil: lull},
		// Control: settled at 10 % scales down.
		load{id: "settled-low", instances: 4, threads: 1, steps: []time.Time{start}, busy: []float64{0.1}, requests: []float64{0.4}},
		// Workers only in the fresh window, idle, never invoked: no
		// settled minute, so neither down nor to zero.
		load{id: "fresh-only-idle", instances: 4, threads: 1, steps: []time.Time{start}, busy: []float64{0}, workersFrom: lull},
		// Control: idle in settled minutes too, never invoked: to zero.
		load{id: "settled-idle", instances: 4, threads: 1, steps: []time.Time{start}, busy: []float64{0}},
	)
	ctx := context.Background()
	for _, k := range keys {
		// Requested 4 earlier, watched for long enough that no invocation
		// in the row TTL is evidence of idleness.
		require.NoError(t, f.store.RecordWrite(ctx, k, 4, now.Add(-time.Hour).UnixMilli(), "ok", time.Hour))
		var watch store.StateUpdate
		watch.Watched(now.Add(-2 * time.Hour))
		require.NoError(t, f.store.SaveState(ctx, k, watch, time.Hour))
	}
	r := f.decideAt(t, now)
	for id, k := range keys {
		o := outcomeOf(t, r, k)
		switch id {
		case "settled-low":
			require.Less(t, o.Desired, 4, "control: settled data scales down: %+v", o)
		case "settled-idle":
			require.Zero(t, o.Desired, "control: settled idleness scales to zero: %+v", o)
		default:
			require.GreaterOrEqual(t, o.Desired, 4, "%s scaled down on missing or partial data: %+v", id, o)
			require.Zero(t, f.sim.Calls(k.FunctionID, k.FunctionVersionID), "%s written: %+v", id, o)
		}
	}
}
