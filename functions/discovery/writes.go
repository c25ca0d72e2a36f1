package discovery

import (
	"hash/fnv"
	"time"

	"function/shared/store"
	"function/shared/tsdb"
)

// Why a row is written this cycle; every other found version's row is
// left as it is.
const (
	writeNew     = "new"     // no live row in its table
	writeChanged = "changed" // its nca_id or source differs
	writeDue     = "due"     // its TTL is due for a refresh
	writeFading  = "fading"  // invoked, but not in the newest step
)

// rowWrites picks the rows to write: rewriting every found version each
// cycle cost about 3 s at 100,000 versions, while most rows only need a
// longer life now and then.
//
// What the scale function reads stays as it was:
//   - A live row is never let run out while its version is found: it is
//     rewritten once it has aged between a sixth and a quarter of the TTL
//     (spread per version, so rows written together are not all due in
//     the same cycle), long before it expires. The scale function touches
//     rows older than a third of the TTL itself; discovery's rows stay
//     younger than that as long as the period is under a twelfth of the
//     TTL (60 s against 1800 s by default).
//   - A version no longer found is not written, so it ages out as before.
//   - The invoked row's time is the scale function's evidence of the last
//     invocation once the TSDB's own window no longer shows one. While
//     requests still grow in the newest step the TSDB shows it; once they
//     stop, the row is rewritten every cycle, as before, until the version
//     is no longer found invoked, so its last time is the same.
func rowWrites(found []tsdb.ActiveVersion, stored store.StoredRows, now time.Time, ttl time.Duration) ([]store.ActiveVersion, map[string]int) {
	var rows []store.ActiveVersion
	why := map[string]int{}
	for _, v := range found {
		key := store.VersionKey{FunctionID: v.FunctionID, FunctionVersionID: v.FunctionVersionID}
		table := stored.Running
		if v.Invoked {
			table = stored.Invoked
		}
		reason := ""
		row, ok := table[key]
		switch {
		case !ok:
			reason = writeNew
		case row.NcaID != v.NcaID || row.Source != string(v.Evidence):
			reason = writeChanged
		case row.TTL < ttl-refreshAge(key, ttl):
			reason = writeDue
		case v.Invoked && !v.StillInvoked:
			reason = writeFading
		default:
			continue
		}
		why[reason]++
		rows = append(rows, store.ActiveVersion{
			VersionKey:    key,
			NcaID:         v.NcaID,
			Invoked:       v.Invoked,
			LastUpdatedAt: now,
			Source:        string(v.Evidence),
		})
	}
	return rows, why
}

// refreshAge is how old a version's row may grow before discovery renews
// it: between a sixth and a quarter of the TTL, fixed per version.
func refreshAge(key store.VersionKey, ttl time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(key.FunctionID))
	h.Write([]byte{0})
	h.Write([]byte(key.FunctionVersionID))
	spread := float64(h.Sum64()>>11) / (1 << 53) // [0, 1)
	return time.Duration(float64(ttl) * (1.0/4 - spread/12))
}
