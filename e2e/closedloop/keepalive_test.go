package closedloop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/sim"
	"function/e2e/world"
	"function/shared/testenv"
	"function/shared/tsdb/tsdbtest"
)

// TestLearnedKeepAlivePrewarmsAPeriodicFunction runs two functions in
// learned keep-alive mode whose invocation history is already in the TSDB
// when the autoscaler starts (as after a restart: the history is the real
// series the scale function reads, ingested into the real
// VictoriaMetrics): one invoked every period like a cron job, one at
// irregular gaps. The periodic one must be released after its live burst
// and pre-warmed before the next, which must find its instance up; the
// irregular one must keep the fixed idle timeout.
//
// A twin of the periodic function, with the same history and bursts, runs
// with the fixed idle timeout (the mode's other setting), so that what
// learned keep-alive saves is measured on the real servers too: the
// instance-seconds each kept between its two live bursts, when it served
// nothing, and whether the second burst found an instance up.
//
// Everything asserted is a decision and the inputs it logged, or the
// simulator's state at the moment a burst began; no wall-clock bound.
func TestLearnedKeepAlivePrewarmsAPeriodicFunction(t *testing.T) {
	// Gaps are measured at the 4 s step, from a burst's last step to the
	// last quiet step before the next. A period of 80 s (a 4 s burst, then
	// quiet) makes them about 72 s. The pre-warm comes at 90 % of their
	// 5th percentile less the cold start (2.5-8.5 s measured: the
	// simulator's 2 s provisioning at step resolution), ~7 s plus the cold
	// start before the next burst's first request, less up to a cycle
	// (4 s) of waiting for its decision: at least ~5.5 s, more than the
	// ~4.5 s a pre-warmed worker takes to be up and scraped, so the burst
	// finds it reporting (the margin is 10 % of the period: a 60 s period
	// left as little as 3 s). The release (>= 2 quiet steps, a pre-warm
	// >= a cold start ahead) has about ten cycles.
	const (
		every    = 80 * time.Second
		burst    = 4 * time.Second
		rate     = 0.5 // requests/s: 1 s each on 1 thread, 25 % busy at most, under the 30 % down threshold
		history  = 9   // bursts in the TSDB before the run: 8 gaps, enough for a representative histogram
		firstRun = every
	)
	run := time.Now().Unix() % 1_000_000
	periodic, irregular := fmt.Sprintf("ka-periodic-%d", run), fmt.Sprintf("ka-irregular-%d", run)
	twin := fmt.Sprintf("ka-fixed-%d", run)
	bursts := func(at ...time.Duration) sim.LoadSpec {
		var phases []sim.LoadSpec
		var t time.Duration
		for _, a := range at {
			phases = append(phases, sim.LoadSpec{Kind: "idle", For: d(a - t)}, sim.LoadSpec{Kind: "constant", Rate: rate, For: d(burst)})
			t = a + burst
		}
		return sim.LoadSpec{Kind: "phases", Phases: append(phases, sim.LoadSpec{Kind: "idle"})}
	}
	overrides := filepath.Join(t.TempDir(), "overrides.json")
	require.NoError(t, os.WriteFile(overrides, []byte(fmt.Sprintf(`{"functions": {%q: {"keepAlive": "learned"}, %q: {"keepAlive": "learned"}, %q: {"keepAlive": "fixed"}}}`,
		periodic, irregular, twin)), 0o644))
	// The periodic function and its twin start at zero and are invoked at
	// firstRun and one period later; the irregular one runs one instance
	// and is invoked once, early.
	fns := []sim.ScenarioFunction{
		fn(periodic, 0, 2, 0, bursts(firstRun, firstRun+every)),
		fn(twin, 0, 2, 0, bursts(firstRun, firstRun+every)),
		fn(irregular, 0, 2, 1, bursts(8*time.Second)),
	}
	// The utilization lookback covers the invocation history.
	w := newWorld(t, "keepalive", map[string]string{"POLICY_OVERRIDES_FILE": overrides, "UTILIZATION_LOOKBACK": "900s"}, fns...)
	idleTimeout := setting(t, w, "SCALE_TO_ZERO_IDLE_TIMEOUT")

	// The history: the periodic function's bursts every period before the
	// run, the last one two periods before its first live burst (a
	// skipped run: one long gap among regular ones); the irregular one's
	// at gaps from 8 s to 3 minutes.
	var periodicAt, irregularAt []time.Time
	for k := history + 1; k >= 2; k-- {
		periodicAt = append(periodicAt, w.LoadStart.Add(firstRun-time.Duration(k)*every))
	}
	at := w.LoadStart.Add(-10 * time.Minute)
	for _, gap := range []time.Duration{8, 100, 12, 56, 180, 16, 36, 120, 20} {
		irregularAt = append(irregularAt, at)
		at = at.Add(gap*time.Second + burst)
	}
	vm := testenv.RequireVM(t)
	ctx := context.Background()
	require.NoError(t, tsdbtest.ImportVM(ctx, vm, []tsdbtest.Series{
		invocationHistory(periodic, periodicAt, burst, rate, w.LoadStart),
		invocationHistory(twin, periodicAt, burst, rate, w.LoadStart),
		invocationHistory(irregular, irregularAt, burst, rate, w.LoadStart),
	}))

	// The first live burst finds the periodic function at zero: the
	// invocation plane's activation brings it up, the cold start that
	// teaches the version its cold-start time.
	time.Sleep(time.Until(w.LoadStart.Add(firstRun)))
	for _, f := range []string{periodic, twin} {
		status, reply, err := w.Activate(ctx, f, f+"-v1", "nca-e2e")
		require.NoError(t, err)
		require.Equal(t, 200, status, "activation reply for %s: %v", f, reply)
	}

	secondRun := w.LoadStart.Add(firstRun + every)
	vid := periodic + "-v1"
	require.NoError(t, world.WaitFor(firstRun+every+30*time.Second, func() bool {
		ir, _ := w.NVCF.Desired(irregular, irregular+"-v1")
		return time.Now().After(secondRun.Add(2*w.Opts.Period)) && ir == 0 && len(prewarmSettled(w, vid)) > 0
	}), "no settled pre-warm of %s, or %s not at zero: %s\n%s", periodic, irregular, describeDecisions(w.AllDecisions(), vid),
		describeDecisions(w.AllDecisions(), irregular+"-v1"))

	ds := w.AllDecisions()
	// The periodic function: released after its live burst by learned
	// keep-alive, then pre-warmed before the next burst, from a
	// representative histogram and a learned cold start.
	var release, prewarm *world.Decision
	for i, d := range ds {
		if d.FunctionVersionID != vid || d.Action != "written" || d.DecidedAt.Before(w.LoadStart.Add(firstRun)) {
			continue
		}
		switch {
		case d.Reason == "scale_to_zero_learned" && release == nil:
			release = &ds[i]
		case d.Reason == "prewarm" && release != nil && prewarm == nil:
			prewarm = &ds[i]
		}
	}
	require.NotNil(t, release, "%s was not released after its live burst: %s", periodic, describeDecisions(ds, vid))
	require.NotNil(t, prewarm, "%s was not pre-warmed after its release: %s", periodic, describeDecisions(ds, vid))
	require.True(t, prewarm.DecidedAt.Before(secondRun), "the pre-warm (%s) came after the burst it was for (%s)", prewarm.DecidedAt, secondRun)
	require.True(t, prewarm.IdleRepresentative, "pre-warm on a histogram that is not representative: %+v", *prewarm)
	require.GreaterOrEqual(t, prewarm.IdleGaps, 6.0)
	require.Positive(t, prewarm.ColdStartS, "pre-warm without a learned cold start: %+v", *prewarm)
	require.Positive(t, prewarm.IdlePrewarmS)
	require.Equal(t, 1, prewarm.Desired)
	t.Logf("RESULT %s: released %.1fs after its last invocation, pre-warmed %.1fs after it and %.1fs before the next burst (p5 gap %.0fs, cold start %.1fs, %.1f gaps)",
		periodic, release.DecidedAt.Sub(release.LastInvokedAt).Seconds(), prewarm.DecidedAt.Sub(prewarm.LastInvokedAt).Seconds(),
		secondRun.Sub(prewarm.DecidedAt).Seconds(), prewarm.IdlePrewarmS, prewarm.ColdStartS, prewarm.IdleGaps)

	// The burst found the pre-warmed instance up: at the first moment the
	// simulator offered it load, an instance was active, and the
	// autoscaler settled the pre-warm as used.
	var first *sim.Snapshot
	for _, s := range w.History() {
		if s.FunctionVersionID == vid && !s.At.Before(secondRun) && s.Load > 0 {
			first = &s
			break
		}
	}
	require.NotNil(t, first, "the simulator never offered %s its second burst", periodic)
	require.GreaterOrEqual(t, first.Active, 1, "the second burst of %s found no instance up: %+v", periodic, *first)
	require.Equal(t, []string{"used"}, prewarmSettled(w, vid))

	// Its twin on the fixed timeout: the same history and bursts, one
	// idle timeout (40 s) kept after the first burst, then released, so
	// the second burst, 76 s after the first ended, found it at zero.
	tvid := twin + "-v1"
	between := func(vid string) (idle float64, upAtBurst bool) {
		idle = loadFiguresOf(w.History(), nil, vid, w.LoadStart.Add(firstRun+burst), secondRun).instanceSeconds
		s := firstLoaded(w.History(), vid, secondRun, rate)
		return idle, s != nil && s.Active > 0
	}
	learnedIdle, learnedUp := between(vid)
	fixedIdle, fixedUp := between(tvid)
	require.True(t, learnedUp, "the second burst of %s found no instance up", periodic)
	require.False(t, fixedUp, "the second burst of %s found an instance up on the fixed timeout: %s", twin, describeDecisions(ds, tvid))
	for _, d := range ds {
		if d.FunctionVersionID == tvid {
			require.NotContains(t, []string{"prewarm", "scale_to_zero_learned"}, d.Reason, "%s is on the fixed timeout: %+v", twin, d)
		}
	}
	require.Less(t, learnedIdle, fixedIdle, "learned keep-alive kept more idle instance-seconds between the bursts than the fixed timeout")
	t.Logf("RESULT learned against fixed keep-alive between two bursts %s apart: %.1f against %.1f idle instance-seconds (provisioning included); second burst found an instance up: %v against %v",
		secondRun.Sub(w.LoadStart.Add(firstRun+burst)), learnedIdle, fixedIdle, learnedUp, fixedUp)

	// The irregular function: the fixed idle timeout, exactly as today.
	// After its live burst it went to zero by the fixed rule, no sooner
	// than the idle timeout after its last invocation, saying why learned
	// keep-alive did not apply, and was never released early or
	// pre-warmed.
	ivid := irregular + "-v1"
	var zero *world.Decision
	for i, d := range ds {
		if d.FunctionVersionID != ivid {
			continue
		}
		require.NotContains(t, []string{"prewarm", "scale_to_zero_learned"}, d.Reason, "%s: %+v", irregular, d)
		if d.Action == "written" && d.Desired == 0 {
			zero = &ds[i] // the last one: after its live burst
		}
	}
	require.NotNil(t, zero, "%s never went to zero: %s", irregular, describeDecisions(ds, ivid))
	require.Equal(t, "scale_to_zero", zero.Reason)
	require.Equal(t, "learned", zero.KeepAlive)
	require.GreaterOrEqual(t, zero.DecidedAt.Sub(zero.LastInvokedAt), idleTimeout, "%+v", *zero)
	require.Regexp(t, "not representative|no better|beyond", zero.Detail, "the fixed rule applied without saying why learned did not")
	t.Logf("RESULT %s: to zero %.1fs after its last invocation by the fixed timeout (%s): %s", irregular,
		zero.DecidedAt.Sub(zero.LastInvokedAt).Seconds(), idleTimeout, zero.Detail)
}

// invocationHistory is the invocation service's request counter of one
// version as scraped every 2 s up to end: `rate` requests per second for
// `burst` from each of at, none between. It carries a label of its own, so
// it is a series apart from the one the simulator exports from the run's
// start; the scale function's queries sum both.
func invocationHistory(fid string, at []time.Time, burst time.Duration, rate float64, end time.Time) tsdbtest.Series {
	var steps []time.Time
	var rates []float64
	start := at[0].Add(-time.Minute)
	steps, rates = append(steps, start), append(rates, 0)
	for _, a := range at {
		steps, rates = append(steps, a, a.Add(burst)), append(rates, rate, 0)
	}
	labels := map[string]string{"__name__": sim.MetricRequests, "function_id": fid, "function_version_id": fid + "-v1",
		"nca_id": "nca-e2e", "environment": sim.Production.Worker, "history": "imported"}
	return tsdbtest.Scrape(labels, start, end, 2*time.Second, tsdbtest.Counter(steps, rates))
}

// prewarmSettled returns the outcomes of the version's settled pre-warms
// in the scale processes' logs.
func prewarmSettled(w *world.World, vid string) []string {
	var out []string
	for _, p := range w.Scale {
		f, err := os.Open(p.LogPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, `"msg":"pre-warm settled"`) {
				continue
			}
			var l struct {
				VersionID string `json:"function_version_id"`
				Outcome   string `json:"outcome"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.VersionID == vid {
				out = append(out, l.Outcome)
			}
		}
		f.Close()
	}
	return out
}
