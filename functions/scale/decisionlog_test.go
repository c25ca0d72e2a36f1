package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/policy"
)

// TestDecisionLineCarriesEveryField reads a decision line back as the
// closed-loop tests and operators do: every field under its name, with its
// JSON type (times as RFC 3339 text, counts and seconds as numbers).
func TestDecisionLineCarriesEveryField(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("function_id", "f", "function_version_id", "v")
	now := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	in := policy.Input{Now: now, Source: "worker", LastInvokedAt: now.Add(-time.Minute),
		Utilization: []policy.Sample{{At: now.Add(-30 * time.Second), Value: 0.9}}}
	in.Idle = in.Idle.Observe(now.Add(-2*time.Minute), 10*time.Minute)
	clamp := 4
	o := Outcome{Current: 2, Desired: 5, LastRequested: 2, Utilization: 0.9, Valid: true, Reason: "scale_up", Action: "written",
		Detail: "d", Error: "e", ClampedTo: &clamp}
	p := policy.Policy{KeepAlive: policy.KeepAliveLearned, KeepAlivePercentile: 99, PrewarmPercentile: 5}
	obs := observation{cost: policy.Cost{}.Learn(now, 93, 100, 50), backlog: policy.Backlog{Requests: 12, UpdatedAt: now}}
	// The bucket's loop puts the source on the logger.
	logDecision(log.With("source", in.Source), o, in, policy.Decision{Recommendation: 5}, append(keepAliveFields(p, in), learnedFields(obs)...)...)

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	require.Equal(t, "decision", line["msg"])
	for k, want := range map[string]any{
		"function_id": "f", "function_version_id": "v", "source": "worker",
		"current": 2.0, "desired": 5.0, "recommendation": 5.0, "last_requested": 2.0, "utilization": 0.9,
		"sample_at": "2026-11-30T20:59:30Z", "decided_at": "2026-11-30T21:00:00Z", "valid": true, "reason": "scale_up",
		"action": "written", "detail": "d", "error": "e", "clamped_to": 4.0,
		"keep_alive": "learned", "idle_gaps": 1.0, "idle_representative": false, "cold_start_s": -1.0,
		"last_invoked_at": "2026-11-30T20:59:00Z", "released_at": "0001-01-01T00:00:00Z",
		"cost_s": 0.93, "cost_requests": 100.0, "backlog_requests": 12.0,
	} {
		require.Equal(t, want, line[k], k)
	}
	// One gap of 10 minutes: both percentiles fall in its bin.
	for _, k := range []string{"idle_keep_alive_s", "idle_prewarm_s"} {
		require.InDelta(t, 630, line[k], 30, k)
	}
}

// TestDecisionLineSaysWhenNothingIsLearned: a version without a cost or a
// backlog estimate reads -1 for both, and an early cost (never stored, a
// bound rather than an estimate) is not passed off as a learned one.
func TestDecisionLineSaysWhenNothingIsLearned(t *testing.T) {
	for name, o := range map[string]observation{
		"nothing":    {},
		"early cost": {cost: policy.Cost{SecondsPerRequest: 2, Weight: 6, Early: true}},
	} {
		got := map[string]float64{}
		for _, a := range learnedFields(o) {
			got[a.Key] = a.Value.Float64()
		}
		require.Equal(t, map[string]float64{"cost_s": -1, "cost_requests": -1, "backlog_requests": -1}, got, name)
	}
}

// TestDecisionLinesNameEachFieldOnce: every decision line of a bucket is a
// JSON object whose names are unique. encoding/json keeps the last of a
// repeated name, but log pipelines differ (some refuse the line, some keep
// the first), and the decision line is what operators and the closed-loop
// tests read. The source was written twice.
func TestDecisionLinesNameEachFieldOnce(t *testing.T) {
	f := setup(t, 3)
	var logs bytes.Buffer
	h, err := New(Deps{Settings: f.settings, Store: f.store, TSDB: f.tsdb, NVCF: f.nvcf, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	_, err = h.HandleBucket(context.Background(), bucketEvent(time.Now()))
	require.NoError(t, err)
	decisions := 0
	for _, line := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		names := topLevelNames(t, line)
		if !slices.Contains(names, "msg") || !bytes.Contains(line, []byte(`"msg":"decision"`)) {
			continue
		}
		decisions++
		seen := map[string]bool{}
		for _, n := range names {
			require.False(t, seen[n], "%q twice in %s", n, line)
			seen[n] = true
		}
		require.True(t, seen["source"], "no source in %s", line)
	}
	require.Equal(t, len(f.versions), decisions, "one decision line per version:\n%s", logs.String())
}

// topLevelNames lists a JSON object's member names in order, repeats kept.
func topLevelNames(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok, "%s", line)
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		names = append(names, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return names
}

// TestDecisionLevelQuietsOnlyUnchanged: with DECISION_LOG_UNCHANGED=false
// only a decision asking the count already asked goes to debug; holds,
// writes, clamps, replays and errors stay at info, where operators look.
func TestDecisionLevelQuietsOnlyUnchanged(t *testing.T) {
	for _, action := range []string{"unchanged", "held", "written", "clamped", "already_applied", "locked", "error", "not_found", "beyond_limits"} {
		o := Outcome{Action: action}
		require.Equal(t, slog.LevelInfo, decisionLevel(o, true), "%s with unchanged lines on", action)
		want := slog.LevelInfo
		if action == "unchanged" {
			want = slog.LevelDebug
		}
		require.Equal(t, want, decisionLevel(o, false), "%s with unchanged lines off", action)
	}
}

// TestUnchangedDecisionsLoggedAtDebugWhenAsked runs a real bucket over
// four cycles a minute apart with DECISION_LOG_UNCHANGED=false, the load
// the same throughout, so that the later cycles ask counts already asked.
// With the log at debug, every version has one decision line, at debug
// when its action is unchanged, at info otherwise; at info, the unchanged
// have none. Each line names its version and its source once (the two
// now come from one With).
func TestUnchangedDecisionsLoggedAtDebugWhenAsked(t *testing.T) {
	f := setup(t, 3)
	f.settings.Scale.LogUnchanged = false
	type line struct{ level, action string }
	run := func(now time.Time, level slog.Level) (BucketResult, map[string][]line) {
		var logs bytes.Buffer
		res := f.decideLogged(t, now, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level})))
		lines := map[string][]line{}
		for _, raw := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
			var m map[string]any
			require.NoError(t, json.Unmarshal(raw, &m), "%s", raw)
			if m["msg"] != "decision" {
				continue
			}
			names := topLevelNames(t, raw)
			require.Equal(t, 1, countOf(names, "function_version_id"), "%s", raw)
			require.Equal(t, 1, countOf(names, "source"), "%s", raw)
			v, _ := m["function_version_id"].(string)
			lvl, _ := m["level"].(string)
			act, _ := m["action"].(string)
			lines[v] = append(lines[v], line{lvl, act})
		}
		return res, lines
	}
	now := time.Now()
	run(now.Add(-3*time.Minute), slog.LevelInfo)
	run(now.Add(-2*time.Minute), slog.LevelInfo)
	for _, c := range []struct {
		at    time.Time
		level slog.Level
	}{{now.Add(-time.Minute), slog.LevelDebug}, {now, slog.LevelInfo}} {
		res, lines := run(c.at, c.level)
		require.Len(t, res.Outcomes, len(f.versions))
		unchanged := 0
		for _, o := range res.Outcomes {
			got := lines[o.FunctionVersionID]
			switch {
			case o.Action != "unchanged":
				require.Equal(t, []line{{"INFO", o.Action}}, got, "%s, log at %s", o.FunctionVersionID, c.level)
			case c.level == slog.LevelDebug:
				unchanged++
				require.Equal(t, []line{{"DEBUG", "unchanged"}}, got, "%s, log at %s", o.FunctionVersionID, c.level)
			default:
				unchanged++
				require.Empty(t, got, "%s is unchanged: no line at %s", o.FunctionVersionID, c.level)
			}
		}
		// Without an unchanged version the test would prove nothing.
		require.Positive(t, unchanged, "no unchanged decision in the cycle at %s: %+v", c.at, res.Outcomes)
	}
}

func countOf(names []string, name string) int {
	n := 0
	for _, x := range names {
		if x == name {
			n++
		}
	}
	return n
}
