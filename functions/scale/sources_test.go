package scale

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/buckets"
	"function/shared/events"
	"function/shared/store"
	"function/shared/testenv"
	"function/shared/tsdb"
	"function/shared/tsdb/tsdbtest"
)

func TestSourceOf(t *testing.T) {
	for _, c := range []struct {
		evidence, remembered string
		want                 tsdb.Source
	}{
		{"", "", sourceUnknown}, // no series of any source, now or before
		{"worker", "", tsdb.SourceWorker},
		{"worker", "control_plane", tsdb.SourceWorker},   // started exporting worker series
		{"", "worker", tsdb.SourceWorker},                // a worker version at zero has no series
		{"control_plane", "worker", tsdb.SourceWorker},   // nor does its control plane count make it BYOC
		{"gateway", "control_plane", tsdb.SourceGateway}, // put behind the gateway
		{"control_plane", "gateway", tsdb.SourceGateway}, // an idle gateway function is still one
		{"", "gateway", tsdb.SourceGateway},
		{"control_plane", "", tsdb.SourceControlPlane},
	} {
		require.Equal(t, c.want, sourceOf(c.evidence, c.remembered), "%+v", c)
	}
}

// sourcesFixture is the scale fixture plus series of the other two
// sources, under the fixture's run label, and their rows and simulator
// registrations.
func sourcesFixture(t *testing.T) (*fixture, string) {
	f := setup(t, 1) // one worker version, decided alongside
	return f, f.settings.EnvValue
}

func (f *fixture) register(t *testing.T, rows ...store.ActiveVersion) {
	t.Helper()
	for _, v := range rows {
		f.sim.Register(nvcfsim.FunctionVersion{FunctionID: v.FunctionID, VersionID: v.FunctionVersionID, NcaID: v.NcaID, Status: nvcfsim.StatusActive,
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 50}}})
	}
	_, err := f.store.UpsertVersions(context.Background(), rows, time.Hour)
	require.NoError(t, err)
}

func (f *fixture) ingest(t *testing.T, series []tsdbtest.Series) {
	t.Helper()
	require.NoError(t, tsdbtest.ImportVM(context.Background(), testenv.RequireVM(t), series))
}

func row(fid, vid, nca, source string) store.ActiveVersion {
	return store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: fid, FunctionVersionID: vid}, NcaID: nca,
		Invoked: true, LastUpdatedAt: time.Now(), Source: source}
}

func outcomesOf(r BucketResult, fid string) map[string]Outcome {
	out := map[string]Outcome{}
	for _, o := range r.Outcomes {
		if o.FunctionID == fid {
			out[o.FunctionVersionID] = o
		}
	}
	return out
}

func writesTo(f *fixture, fid string) []nvcfsim.Write {
	var out []nvcfsim.Write
	for _, w := range f.sim.Writes() {
		if w.FunctionID == fid {
			out = append(out, w)
		}
	}
	return out
}

// A gateway function with three versions: b runs and was written last
// (pinned), a is new and already running, c is at zero. Gateway
// utilization is 3 in flight over (1 + 2) x 1 slots = 100 %: the nvcf
// policy takes the total from 3 to ceil(3 x 1.2) = 4, and the one write
// goes to b: its own 1 + (4 - 3) = 2. Replays and a racing replica write
// nothing more.
func TestGatewayFunctionWritesOneTargetOnce(t *testing.T) {
	f, run := sourcesFixture(t)
	fid := run + "-gw"
	now := time.Now()
	f.ingest(t, tsdbtest.GenerateGateway([]tsdbtest.GatewayFunction{{FunctionID: fid, RequestsPerSecond: 5, InFlight: 3,
		Extra: map[string]string{"test_env": run}, Versions: []tsdbtest.GatewayVersion{
			{ID: "a", NcaID: "nca-g", Instances: 2, Concurrency: 1},
			{ID: "b", NcaID: "nca-g", Instances: 1, Concurrency: 1},
			{ID: "c", NcaID: "nca-g", Instances: 0, Concurrency: 1},
		}}}, now.Add(-15*time.Minute), now))
	f.register(t, row(fid, "a", "nca-g", "gateway"), row(fid, "b", "nca-g", "gateway"), row(fid, "c", "nca-g", "gateway"))
	ctx := context.Background()
	pinned := store.VersionKey{FunctionID: fid, FunctionVersionID: "b"}
	require.NoError(t, f.store.RecordWrite(ctx, pinned, 1, now.Add(-time.Hour).UnixMilli(), statusOK, time.Hour))
	var source store.StateUpdate
	source.Source("gateway")
	require.NoError(t, f.store.SaveState(ctx, pinned, source, time.Hour))

	cycle := time.Now()
	reply, err := f.handler(t, "node-a", nil).HandleBucket(ctx, bucketEvent(cycle))
	require.NoError(t, err)
	got := outcomesOf(decode(t, reply), fid)
	require.Len(t, got, 3)
	b := got["b"]
	require.Equal(t, "written", b.Action, "%+v", b)
	require.Equal(t, 3, b.Current, "the function's total")
	require.Equal(t, 2, b.Desired, "own 1 + (4 - 3)")
	require.Equal(t, "gateway", b.Source)
	require.Contains(t, b.Detail, "function total 3 -> 4")
	require.Contains(t, b.Detail, "pinned")
	for _, v := range []string{"a", "c"} {
		require.Equal(t, "not_target", got[v].Action, "%s: %+v", v, got[v])
		require.Equal(t, "gateway", got[v].Source)
	}
	ws := writesTo(f, fid)
	require.Len(t, ws, 1)
	require.Equal(t, "b", ws[0].VersionID)
	require.Equal(t, 2, ws[0].Requested)

	// The same event again, and on another replica: written once.
	for _, node := range []string{"node-a", "node-b"} {
		reply, err = f.handler(t, node, nil).HandleBucket(ctx, bucketEvent(cycle))
		require.NoError(t, err)
		// The state already says 2: unchanged, or already applied.
		require.Contains(t, []string{"already_applied", "unchanged"}, outcomesOf(decode(t, reply), fid)["b"].Action)
	}
	require.Len(t, writesTo(f, fid), 1)
	st, err := f.store.ReadState(ctx, store.VersionKey{FunctionID: fid, FunctionVersionID: "a"})
	require.NoError(t, err)
	require.False(t, st.HasLastRequested, "a version other than the target is never written")
	require.Equal(t, "gateway", st.Source)
}

// Without a pinned version the first running one by id is the target; a
// function nvcf_function_info does not list holds with the reason.
func TestGatewayTargetWithoutPinAndWithoutInfo(t *testing.T) {
	f, run := sourcesFixture(t)
	fid, noInfo := run+"-gw2", run+"-noinfo"
	now := time.Now()
	f.ingest(t, tsdbtest.GenerateGateway([]tsdbtest.GatewayFunction{
		{FunctionID: fid, RequestsPerSecond: 5, InFlight: 3, Extra: map[string]string{"test_env": run}, Versions: []tsdbtest.GatewayVersion{
			{ID: "a", NcaID: "nca-g", Instances: 0, Concurrency: 1},
			{ID: "b", NcaID: "nca-g", Instances: 1, Concurrency: 1},
			{ID: "c", NcaID: "nca-g", Instances: 2, Concurrency: 1},
		}},
		{FunctionID: noInfo, RequestsPerSecond: 5, InFlight: 30, Extra: map[string]string{"test_env": run}, Versions: []tsdbtest.GatewayVersion{
			{ID: "a", NcaID: "nca-g", Instances: 1, Concurrency: 1, Unlisted: true},
		}},
	}, now.Add(-15*time.Minute), now))
	f.register(t, row(fid, "a", "nca-g", "gateway"), row(fid, "b", "nca-g", "gateway"), row(fid, "c", "nca-g", "gateway"),
		row(noInfo, "a", "nca-g", "gateway"))
	reply, err := f.handler(t, "node-a", nil).HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	r := decode(t, reply)
	got := outcomesOf(r, fid)
	require.Equal(t, "written", got["b"].Action, "%+v", got)
	require.Equal(t, 2, got["b"].Desired, "own 1 + (4 - 3)")
	require.Equal(t, "not_target", got["a"].Action)
	require.Equal(t, "not_target", got["c"].Action)

	held := outcomesOf(r, noInfo)["a"]
	require.Equal(t, "held", held.Action)
	require.Equal(t, "hold_no_function_info", held.Reason)
	require.Contains(t, held.Detail, "nvcf_function_info")
	require.Empty(t, writesTo(f, noInfo))
}

// Control plane: two reporters average 2.5 instances (read as 3), 9 in
// flight over 2.5 x 4 slots is 90 %: scale up to ceil(3 x 1.2) = 4. An
// uninvoked version at zero with no load (0/0) and a version with no series
// at all write nothing.
func TestControlPlaneVersionsDecidedFromLittlesLaw(t *testing.T) {
	f, run := sourcesFixture(t)
	fid := run + "-byoc"
	now := time.Now()
	extra := map[string]string{"test_env": run}
	f.ingest(t, tsdbtest.GenerateControlPlane([]tsdbtest.ControlPlaneVersion{
		{FunctionID: fid, FunctionVersionID: "busy", NcaID: "nca-b", Instances: []float64{2, 3}, Concurrency: 4, InFlight: 9, RequestsPerSecond: 3, Extra: extra},
		{FunctionID: fid, FunctionVersionID: "zero", NcaID: "nca-b", Instances: []float64{0}, Concurrency: 4, Extra: extra},
	}, now.Add(-15*time.Minute), now))
	idle := row(fid, "zero", "nca-b", "control_plane")
	idle.Invoked = false // at zero and never invoked: stays there
	f.register(t, row(fid, "busy", "nca-b", "control_plane"), idle, row(fid, "none", "nca-b", ""))
	require.NoError(t, f.store.RecordWrite(context.Background(), idle.VersionKey, 0, now.Add(-time.Hour).UnixMilli(), statusOK, time.Hour))
	reply, err := f.handler(t, "node-a", nil).HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	got := outcomesOf(decode(t, reply), fid)
	busy := got["busy"]
	require.Equal(t, "control_plane", busy.Source)
	require.Equal(t, 3, busy.Current)
	require.InDelta(t, 90, busy.Utilization, 1)
	require.Equal(t, "written", busy.Action, "%+v", busy)
	require.Equal(t, 4, busy.Desired)
	require.Contains(t, busy.Detail, "source=control_plane")

	require.NotEqual(t, "written", got["zero"].Action, "%+v", got["zero"])
	require.Equal(t, "held", got["none"].Action, "no series: unknown, held")
	require.Equal(t, "unknown", got["none"].Source)
	ws := writesTo(f, fid)
	require.Len(t, ws, 1)
	require.Equal(t, "busy", ws[0].VersionID)
}

// A control-plane version that starts exporting worker series moves to
// worker threads with the same count and a load in band: the switch is
// remembered and nothing is written to NVCF.
func TestSourceSwitchWritesNothingSpurious(t *testing.T) {
	f, run := sourcesFixture(t)
	fid := run + "-switch"
	ctx := context.Background()
	now := time.Now()
	extra := map[string]string{"test_env": run}
	// 4 in flight over 2 x 4 slots: 50 %, inside the band.
	f.ingest(t, tsdbtest.GenerateControlPlane([]tsdbtest.ControlPlaneVersion{
		{FunctionID: fid, FunctionVersionID: "v", NcaID: "nca", Instances: []float64{2}, Concurrency: 4, InFlight: 4, RequestsPerSecond: 1, Extra: extra},
	}, now.Add(-15*time.Minute), now))
	f.register(t, row(fid, "v", "nca", "control_plane"))
	key := store.VersionKey{FunctionID: fid, FunctionVersionID: "v"}
	require.NoError(t, f.store.RecordWrite(ctx, key, 2, now.Add(-time.Hour).UnixMilli(), statusOK, time.Hour))

	reply, err := f.handler(t, "node-a", nil).HandleBucket(ctx, bucketEvent(time.Now()))
	require.NoError(t, err)
	o := outcomesOf(decode(t, reply), fid)["v"]
	require.Equal(t, "control_plane", o.Source)
	require.Equal(t, "unchanged", o.Action, "%+v", o)
	st, err := f.store.ReadState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "control_plane", st.Source)

	// Now its workers report: two at 50 %, and discovery's row says so.
	f.ingest(t, tsdbtest.Generate([]tsdbtest.Worker{{FunctionID: fid, FunctionVersionID: "v", NcaID: "nca", Instances: 2,
		Utilization: 0.5, RequestsPerSecond: 1, Extra: extra}}, now.Add(-15*time.Minute), now))
	f.register(t, row(fid, "v", "nca", "worker"))
	reply, err = f.handler(t, "node-a", nil).HandleBucket(ctx, bucketEvent(time.Now().Add(time.Second)))
	require.NoError(t, err)
	o = outcomesOf(decode(t, reply), fid)["v"]
	require.Equal(t, "worker", o.Source)
	require.Equal(t, 2, o.Current)
	require.Equal(t, "unchanged", o.Action, "%+v", o)
	require.Empty(t, writesTo(f, fid), "switching source writes nothing")
	st, err = f.store.ReadState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "worker", st.Source, "the switch is remembered")
}

func TestGatewayTarget(t *testing.T) {
	at := time.Now()
	v := func(id string, n float64, listed bool) tsdb.GatewayVersion {
		return tsdb.GatewayVersion{FunctionVersionID: id, NcaID: "nca", Listed: listed, Instances: n, InstancesKnown: true}
	}
	wrote := func(n int, ago time.Duration) store.ScalingState {
		return store.ScalingState{HasLastRequested: true, LastRequested: n, LastWrittenAt: at.Add(-ago), Source: "gateway"}
	}
	for _, c := range []struct {
		name     string
		versions []tsdb.GatewayVersion
		states   map[string]store.ScalingState
		want     string
		pinned   bool
	}{
		{"first running by id", []tsdb.GatewayVersion{v("a", 0, true), v("b", 1, true), v("c", 2, true)}, nil, "b", false},
		{"pinned while running", []tsdb.GatewayVersion{v("a", 1, true), v("b", 1, true)},
			map[string]store.ScalingState{"b": wrote(1, time.Minute), "a": wrote(1, time.Hour)}, "b", true},
		{"a pin that stopped running does not hold", []tsdb.GatewayVersion{v("a", 1, true), v("b", 0, true)},
			map[string]store.ScalingState{"b": wrote(0, time.Minute)}, "a", false},
		{"none running: the one asked for instances keeps the writes", []tsdb.GatewayVersion{v("a", 0, true), v("b", 0, true)},
			map[string]store.ScalingState{"b": wrote(2, time.Minute)}, "b", true},
		{"none running, none asked: lowest id", []tsdb.GatewayVersion{v("a", 0, true), v("b", 0, true)}, nil, "a", false},
		{"unlisted versions are never targets", []tsdb.GatewayVersion{v("a", 3, false), v("b", 0, true)}, nil, "b", false},
		{"a worker-written state is no pin", []tsdb.GatewayVersion{v("a", 1, true), v("b", 1, true)},
			map[string]store.ScalingState{"b": {HasLastRequested: true, LastRequested: 1, LastWrittenAt: at, Source: "worker"}}, "a", false},
	} {
		got, pinned, ok := gatewayTarget(tsdb.GatewayMetrics{Versions: c.versions}, c.states)
		require.True(t, ok, c.name)
		require.Equal(t, c.want, got.FunctionVersionID, c.name)
		require.Equal(t, c.pinned, pinned, c.name)
	}
	_, _, ok := gatewayTarget(tsdb.GatewayMetrics{Versions: []tsdb.GatewayVersion{v("a", 1, false)}}, nil)
	require.False(t, ok, "nothing listed: no target")
}

// A gateway function's versions hash to different buckets: every bucket
// event of one cycle is delivered, and only the bucket of the target
// version (v0, the first running one) writes, once; the other version's
// bucket answers not_target.
func TestGatewayFunctionDecidedOnlyInItsTargetsBucket(t *testing.T) {
	f, run := sourcesFixture(t)
	const n = 16
	f.settings.Buckets = n
	fid := ""
	for i := 0; fid == ""; i++ {
		c := fmt.Sprintf("%s-gwb%d", run, i)
		if buckets.OfVersion(c, "v0", n) != buckets.OfVersion(c, "v1", n) {
			fid = c
		}
	}
	now := time.Now()
	f.ingest(t, tsdbtest.GenerateGateway([]tsdbtest.GatewayFunction{{FunctionID: fid, RequestsPerSecond: 5, InFlight: 2,
		Extra: map[string]string{"test_env": run}, Versions: []tsdbtest.GatewayVersion{
			{ID: "v0", NcaID: "nca-g", Instances: 1, Concurrency: 1},
			{ID: "v1", NcaID: "nca-g", Instances: 1, Concurrency: 1},
		}}}, now.Add(-15*time.Minute), now))
	f.register(t, row(fid, "v0", "nca-g", "gateway"), row(fid, "v1", "nca-g", "gateway"))

	cycle := time.Now()
	got := map[string]Outcome{}
	for _, node := range []string{"node-a", "node-b"} { // a replay of every bucket too
		h := f.handler(t, node, nil)
		for b := 0; b < n; b++ {
			e := event.New()
			e.SetID(events.BucketEventID(cycle.UnixMilli(), b, n))
			e.SetType(events.TypeBucket)
			e.SetSource("test")
			require.NoError(t, e.SetData(event.ApplicationJSON, events.Bucket{Bucket: b, Buckets: n, Cycle: cycle.UnixMilli(), Deadline: cycle.Add(time.Minute)}))
			reply, err := h.HandleBucket(context.Background(), e)
			require.NoError(t, err)
			for v, o := range outcomesOf(decode(t, reply), fid) {
				if node == "node-a" {
					got[v] = o
				}
			}
		}
	}
	require.Equal(t, "written", got["v0"].Action, "%+v", got)
	require.Equal(t, 2, got["v0"].Desired, "at 100 percent the total goes 2 -> 3: own 1 + 1")
	require.Equal(t, "not_target", got["v1"].Action)
	ws := writesTo(f, fid)
	require.Len(t, ws, 1, "one write for the function in the cycle")
	require.Equal(t, "v0", ws[0].VersionID)
}

// A version no series of any source shows, and none showed before, is
// "unknown": held, nothing written, and the guess not remembered. Here
// NVCF was last asked 0 for it and it is invoked: read as a worker
// version it was "known at zero" and scaled from zero, although nothing
// said what it runs. When its control-plane series appear, it is decided
// from them, with the count they show.
func TestUnknownSourceIsHeldNotRememberedAndDecidedOnceASourceShows(t *testing.T) {
	f, run := sourcesFixture(t)
	fid := run + "-unknown"
	ctx := context.Background()
	key := store.VersionKey{FunctionID: fid, FunctionVersionID: "v"}
	f.register(t, row(fid, "v", "nca", ""))
	require.NoError(t, f.store.RecordWrite(ctx, key, 0, time.Now().Add(-time.Hour).UnixMilli(), statusOK, time.Hour))

	reply, err := f.handler(t, "node-a", nil).HandleBucket(ctx, bucketEvent(time.Now()))
	require.NoError(t, err)
	o := outcomesOf(decode(t, reply), fid)["v"]
	require.Equal(t, "unknown", o.Source)
	require.Equal(t, "held", o.Action, "%+v", o)
	require.Equal(t, reasonHoldUnknownSource, o.Reason)
	require.Zero(t, o.Desired, "held at what NVCF was last asked")
	require.Empty(t, writesTo(f, fid))
	st, err := f.store.ReadState(ctx, key)
	require.NoError(t, err)
	require.Empty(t, st.Source, "a guess is not remembered as a source")

	// Its control plane now reports two instances at 50 % (4 in flight
	// over 2 x 4 slots), and discovery's row says so.
	now := time.Now()
	f.ingest(t, tsdbtest.GenerateControlPlane([]tsdbtest.ControlPlaneVersion{
		{FunctionID: fid, FunctionVersionID: "v", NcaID: "nca", Instances: []float64{2}, Concurrency: 4, InFlight: 4, RequestsPerSecond: 1,
			Extra: map[string]string{"test_env": run}},
	}, now.Add(-15*time.Minute), now))
	f.register(t, row(fid, "v", "nca", "control_plane"))
	reply, err = f.handler(t, "node-a", nil).HandleBucket(ctx, bucketEvent(time.Now().Add(time.Second)))
	require.NoError(t, err)
	o = outcomesOf(decode(t, reply), fid)["v"]
	require.Equal(t, "control_plane", o.Source, "%+v", o)
	require.True(t, o.CurrentKnown)
	require.Equal(t, 2, o.Current)
	st, err = f.store.ReadState(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "control_plane", st.Source)
}
