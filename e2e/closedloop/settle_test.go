package closedloop

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/e2e/world"
)

// The view settle takes while the loop runs on: the writes are read
// first, the decisions after, and the next cycle of a version that is
// coming down can write and log in between. That decision is outside the
// view, not one claiming a write the API never accepted; a decision
// logged before the writes were read still is, when they lack its write.
func TestSettleLeavesOutWhatWasWrittenAfterTheWritesWereRead(t *testing.T) {
	const vid = "fn-down-v1"
	written := func(decided, logged time.Time, n int) world.Decision {
		return world.Decision{FunctionVersionID: vid, Action: "written", Desired: n, DecidedAt: decided, Time: logged.Format(time.RFC3339Nano)}
	}
	cycle := time.Now().Add(-4 * time.Second)
	first := nvcfsim.Write{VersionID: vid, Requested: 3, Applied: 3, Outcome: nvcfsim.ScalingApplied, Time: cycle.Add(100 * time.Millisecond)}
	firstDecision := written(cycle, first.Time.Add(20*time.Millisecond), 3)
	writes := func() []nvcfsim.Write { return []nvcfsim.Write{first} }

	// The next cycle wrote 2 and logged it once the writes had been read.
	next := func() []world.Decision {
		now := time.Now()
		return []world.Decision{firstDecision, written(now.Add(-100*time.Millisecond), now, 2)}
	}
	ws, ds := settle(t, writes, next, vid)
	cs := attribute(t, ws, ds, vid)
	require.Len(t, cs, 1)
	require.Equal(t, firstDecision, cs[0].Decision)
	require.Equal(t, []world.Decision{firstDecision}, ds, "the next cycle's decision belongs to a later view")

	// A decision logged before the writes were read made its write before
	// that: missing from them, it is a write the API never accepted.
	phantom := written(cycle.Add(time.Second), cycle.Add(2*time.Second), 2)
	ws, ds = settle(t, writes, func() []world.Decision { return []world.Decision{firstDecision, phantom} }, vid)
	_, err := match(t, ws, ds, vid)
	require.ErrorContains(t, err, "claims a write the NVCF API never accepted")
}
