package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/store"
	"function/shared/tsdb"
)

func TestRowWritesOnlyWhatIsNewChangedDueOrFading(t *testing.T) {
	const ttl = 30 * time.Minute
	now := time.Unix(1795600000, 0)
	version := func(id string, invoked, still bool) tsdb.ActiveVersion {
		return tsdb.ActiveVersion{FunctionVersion: tsdb.FunctionVersion{FunctionID: "f-" + id, FunctionVersionID: "v-" + id, NcaID: "nca"},
			Invoked: invoked, StillInvoked: still, Evidence: tsdb.SourceWorker}
	}
	key := func(id string) store.VersionKey {
		return store.VersionKey{FunctionID: "f-" + id, FunctionVersionID: "v-" + id}
	}
	fresh := store.StoredRow{NcaID: "nca", Source: "worker", TTL: ttl - time.Minute}
	stored := store.StoredRows{
		Invoked: map[store.VersionKey]store.StoredRow{
			key("same-invoked"): fresh,
			key("other-nca"):    {NcaID: "nca-2", Source: "worker", TTL: ttl},
			key("other-source"): {NcaID: "nca", Source: "gateway", TTL: ttl},
			key("fading"):       fresh,
			key("now-running"):  fresh, // its running row is what counts now
		},
		Running: map[store.VersionKey]store.StoredRow{
			key("same-running"): fresh,
			key("old"):          {NcaID: "nca", Source: "worker", TTL: ttl * 3 / 4},
			key("not-found"):    fresh,
		},
	}
	found := []tsdb.ActiveVersion{
		version("same-invoked", true, true), version("same-running", false, false),
		version("brand-new", true, true), version("now-running", false, false),
		version("other-nca", true, true), version("other-source", true, true),
		version("old", false, false), version("fading", true, false),
	}
	rows, why := rowWrites(found, stored, now, ttl)
	require.Equal(t, map[string]int{writeNew: 2, writeChanged: 2, writeDue: 1, writeFading: 1}, why)
	var written []string
	for _, r := range rows {
		written = append(written, r.FunctionVersionID)
		require.Equal(t, now, r.LastUpdatedAt)
		require.Equal(t, "worker", r.Source)
	}
	require.Equal(t, []string{"v-brand-new", "v-now-running", "v-other-nca", "v-other-source", "v-old", "v-fading"}, written)
	require.True(t, rows[0].Invoked)
	require.False(t, rows[1].Invoked, "a version no longer invoked gets its running row")
}

// Rows are renewed between a sixth and a quarter of the TTL into their
// life, spread over versions: rows written in the same cycle do not all
// come due in the same later one, and none grows as old as the third of
// the TTL after which the scale function would refresh it itself.
func TestRefreshAgeIsSpreadBetweenASixthAndAQuarterOfTheTTL(t *testing.T) {
	const ttl = 30 * time.Minute
	lo, hi := ttl, time.Duration(0)
	cycles := map[time.Duration]int{} // by 30 s of age: five slots over 300-450 s
	for i := 0; i < 10000; i++ {
		a := refreshAge(store.VersionKey{FunctionID: fmt.Sprintf("f-%d", i), FunctionVersionID: "v"}, ttl)
		require.GreaterOrEqual(t, a, ttl/6)
		require.LessOrEqual(t, a, ttl/4)
		lo, hi = min(lo, a), max(hi, a)
		cycles[a.Truncate(30*time.Second)]++
	}
	require.Less(t, lo, ttl/6+time.Minute)
	require.Greater(t, hi, ttl/4-time.Minute)
	for c, n := range cycles {
		require.Less(t, n, 10000/4, "%d rows come due in the 30 s from %s", n, c)
	}
}
