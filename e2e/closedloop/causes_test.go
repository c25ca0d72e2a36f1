package closedloop

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/e2e/world"
	"function/shared/nvcf"
)

// The closed loop runs on a shared, loaded machine: a cycle may be late,
// skipped or retried. So assertions here are about causes, read from the
// scale processes' decision logs, not about when things happened on the
// test's clock: every NVCF write is tied to the decision that made it, and
// each rule is checked against the inputs that decision was given.

// cause is one accepted NVCF write and the decision that made it.
type cause struct {
	Write    nvcfsim.Write
	Decision world.Decision
}

// wrote reports whether a decision claims an NVCF write: written, or
// written but its record in Cassandra failed (the API saw it all the same).
func wrote(d world.Decision) bool {
	return d.Action == "written" || (d.Action == "error" && strings.HasPrefix(d.Error, "written but not recorded"))
}

// loggedAt is when the decision's line was logged: after its write
// returned. slog writes milliseconds, so it is rounded up to the next one.
func loggedAt(t *testing.T, d world.Decision) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, d.Time)
	require.NoError(t, err, "decision log time %q", d.Time)
	return at.Add(time.Millisecond)
}

// attribute pairs every accepted NVCF write of version vid with the
// decision that made it: same version, same count, the write between the
// decision's start and its log line. A write no decision explains, or a
// decision claiming a write the API never accepted, fails the test.
//
// A decision that logged an error may still own an accepted write: the API
// applied it but the answer was lost (a timeout on a loaded machine); the
// next attempt then repeats the same count, which changes nothing.
func attribute(t *testing.T, writes []nvcfsim.Write, ds []world.Decision, vid string) []cause {
	t.Helper()
	cs, err := match(t, writes, ds, vid)
	require.NoError(t, err)
	return cs
}

// attributeSettled is attribute over the writes and decisions of w as
// they are once a decision has had time to log the write it made: a
// decision logs its line after its write returns (and its record lands in
// Cassandra), so a read between the two sees the write without its
// decision.
func attributeSettled(t *testing.T, w *world.World, vid string) []cause {
	t.Helper()
	writes, ds := settledView(t, w, vid)
	return attribute(t, writes, ds, vid)
}

// settleBound is how long a write may go without its decision's log line
// before the test calls it unexplained: the line follows the NVCF answer
// and the Cassandra record, each bounded by its client's timeout (seconds),
// so a write still unexplained after this has no decision.
const settleBound = 15 * time.Second

// settledView reads the simulator's writes and every scale process's
// decisions until each accepted write of the given versions has its
// decision (or settleBound passes; attribute then names the orphan). It
// waits for the observation to catch up with what already happened, not
// for the system to change: the writes it checks are those of the first
// read, and the decisions those that could have made them.
func settledView(t *testing.T, w *world.World, vids ...string) ([]nvcfsim.Write, []world.Decision) {
	t.Helper()
	return settle(t, w.NVCF.Writes, w.AllDecisions, vids...)
}

// settle is settledView over the two reads. A decision logged before the
// writes are read made its write before that too (the simulator records a
// write before it answers, the decision logs after the answer), so the
// write is among them. One logged later may have written after them, and
// belongs to a later view: left in, it would claim a write the snapshot
// lacks, for as long as the loop waits, and fail the test (the loop keeps
// the decisions read after the writes, and a version writes each cycle
// while it climbs or comes down).
func settle(t *testing.T, readWrites func() []nvcfsim.Write, readDecisions func() []world.Decision, vids ...string) ([]nvcfsim.Write, []world.Decision) {
	t.Helper()
	asOf := time.Now()
	writes := readWrites()
	deadline := time.Now().Add(settleBound)
	for {
		ds := readDecisions()
		complete := true
		later := map[int]bool{}
		for _, vid := range vids {
			_, orphan, claims := pair(t, writes, ds, vid)
			if orphan != nil {
				complete = false
			}
			for _, i := range claims {
				if loggedAt(t, ds[i]).After(asOf) {
					later[i] = true
				}
			}
		}
		if complete || time.Now().After(deadline) {
			inView := make([]world.Decision, 0, len(ds))
			for i, d := range ds {
				if !later[i] {
					inView = append(inView, d)
				}
			}
			return writes, inView
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// match pairs writes and decisions as attribute describes, or says which
// one has no partner.
func match(t *testing.T, writes []nvcfsim.Write, ds []world.Decision, vid string) ([]cause, error) {
	t.Helper()
	cs, orphan, claims := pair(t, writes, ds, vid)
	if orphan != nil {
		return nil, fmt.Errorf("NVCF write %+v of %s has no decision that made it; decisions: %s", *orphan, vid, describeDecisions(ds, vid))
	}
	if len(claims) > 0 {
		return nil, fmt.Errorf("decision %+v claims a write the NVCF API never accepted", ds[claims[0]])
	}
	return cs, nil
}

// pair ties each accepted write of vid to the first decision that can
// have made it, and returns the pairs, the first write none explains (nil
// if every one is explained) and the decisions, as indices into ds, that
// claim a write none of writes is.
func pair(t *testing.T, writes []nvcfsim.Write, ds []world.Decision, vid string) ([]cause, *nvcfsim.Write, []int) {
	t.Helper()
	var owners []int
	for i, d := range ds {
		if d.FunctionVersionID == vid && (wrote(d) || d.Action == "error") {
			// Without its start a decision's window reaches back to the
			// epoch and can take an earlier write of the same count that
			// another decision made: the pairing then fails by chance.
			require.False(t, d.DecidedAt.IsZero(), "decision of %s logged no decided_at: %+v", vid, d)
			owners = append(owners, i)
		}
	}
	used := make([]bool, len(owners))
	var out []cause
	var orphan *nvcfsim.Write
	for _, wr := range writes {
		if wr.VersionID != vid || !accepted(wr) {
			continue
		}
		found := -1
		for k, i := range owners {
			d := ds[i]
			if !used[k] && d.Desired == wr.Requested && !wr.Time.Before(d.DecidedAt) && !wr.Time.After(loggedAt(t, d)) {
				found = k
				break
			}
		}
		if found < 0 {
			if orphan == nil {
				o := wr
				orphan = &o
			}
			continue
		}
		used[found] = true
		out = append(out, cause{Write: wr, Decision: ds[owners[found]]})
	}
	var claims []int
	for k, i := range owners {
		if !used[k] && wrote(ds[i]) {
			claims = append(claims, i)
		}
	}
	return out, orphan, claims
}

// assertOneWritePerCycle: however a cycle's bucket event was retried or
// redelivered, it asks for one count per version and moves the count at
// most once (a repeat of an unanswered write changes nothing).
func assertOneWritePerCycle(t *testing.T, cs []cause) {
	t.Helper()
	requested := map[int64]int{}
	moved := map[int64]int{}
	for _, c := range cs {
		cycle := c.Decision.Cycle
		if r, ok := requested[cycle]; ok {
			require.Equal(t, r, c.Write.Requested, "cycle %d asked %s for two counts: %+v", cycle, c.Write.VersionID, c)
		}
		requested[cycle] = c.Write.Requested
		if c.Write.Outcome == nvcfsim.ScalingApplied {
			moved[cycle]++
			require.LessOrEqual(t, moved[cycle], 1, "cycle %d moved %s twice: %+v", cycle, c.Write.VersionID, c)
		}
	}
}

// inForce returns the recommendations the stabilization window covered
// for a decision of vid made at `at`: those made inside (at-window, at]
// and the one still in force at the window's start (the last made at or
// before it), as the scale function's history keeps them: in whole
// milliseconds (functions/scale/history.go stores UnixMilli) against the
// deciding cycle's full-precision clock. With 4 s cycles and a 20 s window
// recommendations fall within a millisecond of the window's edge, and
// reading them at nanosecond precision put one inside the window that the
// scale function, rightly by its own record, saw outside it.
func inForce(ds []world.Decision, vid string, at time.Time, window time.Duration) []world.Decision {
	from := at.Add(-window)
	stored := func(d world.Decision) time.Time { return time.UnixMilli(d.DecidedAt.UnixMilli()) }
	var out []world.Decision
	var before *world.Decision
	for i, d := range ds {
		if d.FunctionVersionID != vid || !d.Valid || d.DecidedAt.After(at) {
			continue
		}
		if stored(d).After(from) {
			out = append(out, d)
		} else if before == nil || d.DecidedAt.After(before.DecidedAt) {
			before = &ds[i]
		}
	}
	if before != nil {
		out = append(out, *before)
	}
	return out
}

// assertStabilized checks the stabilization rule on every write that
// lowered a count: it goes no lower than the highest recommendation in
// force inside the window before it. Scale to zero is its own rule (the
// idle timeout) and is checked separately.
func assertStabilized(t *testing.T, cs []cause, ds []world.Decision, window time.Duration) {
	t.Helper()
	for _, c := range cs {
		d := c.Decision
		if d.Desired >= max(d.Current, d.LastRequested) || d.Reason == "scale_to_zero" {
			continue
		}
		for _, r := range inForce(ds, d.FunctionVersionID, d.DecidedAt, window) {
			require.GreaterOrEqual(t, d.Desired, r.Recommendation,
				"%s scaled down to %d at %s (cycle %d, %s) below the recommendation %d made at %s, inside the %s stabilization window",
				d.FunctionVersionID, d.Desired, d.DecidedAt.Format(time.RFC3339Nano), d.Cycle, d.Reason,
				r.Recommendation, r.DecidedAt.Format(time.RFC3339Nano), window)
		}
	}
}

// assertBurstBounded checks an NVCF error burst of n calls injected after
// the first `from` recorded calls: it was spent (so the check exercised
// something), and each failed call belongs to a decision that was still
// running and retried at most nvcf.DefaultMaxAttempts times, so failures
// never turned into a storm of calls nobody decided.
func assertBurstBounded(t *testing.T, all []nvcfsim.Write, from, n int, ds []world.Decision) {
	t.Helper()
	attempts := map[int]int{} // decision index -> failed calls inside it
	failed := 0
	for _, wr := range all[from:] {
		if wr.Outcome != nvcfsim.OutcomeFault {
			continue
		}
		failed++
		owner := -1
		for i, d := range ds {
			if d.FunctionVersionID == wr.VersionID && (wrote(d) || d.Action == "error") &&
				!wr.Time.Before(d.DecidedAt) && !wr.Time.After(loggedAt(t, d)) && attempts[i] < nvcf.DefaultMaxAttempts {
				owner = i
				break
			}
		}
		require.GreaterOrEqual(t, owner, 0, "failed NVCF call %+v made outside any decision's bounded retries; decisions: %s",
			wr, describeDecisions(ds, wr.VersionID))
		attempts[owner]++
	}
	require.Equal(t, n, failed, "the injected burst of %d NVCF failures was not spent by the end of the run", n)
}

// cycleGap is the p90 gap between consecutive cycles that decided vid:
// the period on an idle machine, more when a loaded one skips cycles.
// Waits that depend on machine speed are counted in it.
func cycleGap(ds []world.Decision, vid string, period time.Duration) time.Duration {
	var cycles []int64
	for _, d := range ds {
		if d.FunctionVersionID == vid && (len(cycles) == 0 || cycles[len(cycles)-1] != d.Cycle) {
			cycles = append(cycles, d.Cycle)
		}
	}
	sort.Slice(cycles, func(i, j int) bool { return cycles[i] < cycles[j] })
	var gaps []time.Duration
	for i := 1; i < len(cycles); i++ {
		if g := time.Duration(cycles[i]-cycles[i-1]) * time.Millisecond; g > 0 {
			gaps = append(gaps, g)
		}
	}
	if len(gaps) == 0 {
		return period
	}
	return max(period, percentile(gaps, 90))
}

// decidedCycles counts the distinct cycles that decided vid within
// [from, to]: the policy's chances to act, whatever the wall clock did.
func decidedCycles(ds []world.Decision, vid string, from, to time.Time) int {
	seen := map[int64]bool{}
	for _, d := range ds {
		at := time.UnixMilli(d.Cycle)
		if d.FunctionVersionID == vid && !at.Before(from) && !at.After(to) {
			seen[d.Cycle] = true
		}
	}
	return len(seen)
}

// describeDecisions renders a version's decisions for failure messages.
func describeDecisions(ds []world.Decision, vid string) string {
	var b strings.Builder
	for _, d := range ds {
		if d.FunctionVersionID != vid {
			continue
		}
		fmt.Fprintf(&b, "\n  %s cycle=%d cur=%d last=%d rec=%d desired=%d util=%.1f sample=%s cost=%.3fs/%.0f backlog=%.1f %s/%s %s %s",
			d.DecidedAt.Format("15:04:05.000"), d.Cycle, d.Current, d.LastRequested, d.Recommendation, d.Desired,
			d.Utilization, d.SampleAt.Format("15:04:05"), d.CostS, d.CostRequests, d.BacklogRequests, d.Reason, d.Action, d.Detail, d.Error)
	}
	return b.String()
}
