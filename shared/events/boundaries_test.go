package events

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests at the edges of each rule, so that moving a bound by one (a `<`
// for a `<=`) or dropping a check fails a test. Payloads carry every field
// with realistic values: only the field under test is wrong.

func bucketPayload(bucket, count int) string {
	now := time.Now()
	return fmt.Sprintf(`{"bucket":%d,"buckets":%d,"cycle":%d,"deadline":%q,"versions":1}`,
		bucket, count, now.UnixMilli(), now.Add(time.Minute).UTC().Format(time.RFC3339Nano))
}

func TestParseBucketIndexBounds(t *testing.T) {
	for _, b := range []int{0, 63, 127} {
		got, err := ParseBucket(ev(TypeBucket, bucketPayload(b, 128)))
		require.NoError(t, err, "bucket %d of 128", b)
		require.Equal(t, b, got.Bucket)
	}
	for _, b := range []int{-1, -128, 128, 129} {
		_, err := ParseBucket(ev(TypeBucket, bucketPayload(b, 128)))
		require.Error(t, err, "bucket %d of 128", b)
		require.Equal(t, http.StatusBadRequest, status(t, err))
		require.Contains(t, err.Error(), fmt.Sprintf("bucket %d out of range [0, 128)", b))
	}
}

func activatePayload(fid, vid, nca string) string {
	return fmt.Sprintf(`{"functionId":%q,"functionVersionId":%q,"ncaId":%q}`, fid, vid, nca)
}

// The id rule is 1-128 characters: the longest id is accepted and one more
// character is refused by the length rule itself, not by the JSON decoder.
func TestParseActivateIDLength(t *testing.T) {
	longest := "f" + strings.Repeat("0", 127)
	require.Len(t, longest, 128)
	for _, field := range []string{"functionId", "functionVersionId", "ncaId"} {
		ids := map[string]string{"functionId": "fn-1", "functionVersionId": "v-1", "ncaId": "nca-1"}
		ids[field] = longest
		_, err := ParseActivate(ev(TypeActivate, activatePayload(ids["functionId"], ids["functionVersionId"], ids["ncaId"])))
		require.NoError(t, err, "%s of 128 characters", field)

		ids[field] = longest + "0"
		_, err = ParseActivate(ev(TypeActivate, activatePayload(ids["functionId"], ids["functionVersionId"], ids["ncaId"])))
		require.Error(t, err, "%s of 129 characters", field)
		require.Equal(t, http.StatusBadRequest, status(t, err))
		require.Contains(t, err.Error(), field+` "`+longest+`0": want 1-128 characters`)
	}
}

// Each id field is checked on its own: a bad ncaId is refused even when
// the function and version ids are good.
func TestParseActivateRejectsEachBadID(t *testing.T) {
	for _, bad := range []string{"nca|.*", `nca"}`, "-nca", "nca id", "nca\n"} {
		for _, field := range []string{"functionId", "functionVersionId", "ncaId"} {
			ids := map[string]string{"functionId": "fn-1", "functionVersionId": "v-1", "ncaId": "nca-1"}
			ids[field] = bad
			_, err := ParseActivate(ev(TypeActivate, activatePayload(ids["functionId"], ids["functionVersionId"], ids["ncaId"])))
			require.Error(t, err, "%s %q", field, bad)
			require.Equal(t, http.StatusBadRequest, status(t, err))
			require.Contains(t, err.Error(), field, "%s %q", field, bad)
		}
	}
	a, err := ParseActivate(ev(TypeActivate, activatePayload("fn-1", "v-1", "nca-1")))
	require.NoError(t, err)
	require.Equal(t, Activate{FunctionID: "fn-1", FunctionVersionID: "v-1", NcaID: "nca-1"}, a)
}

func TestFormatCycle(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.Equal(t, fmt.Sprintf("%d (2026-01-02T03:04:05Z)", at.UnixMilli()), FormatCycle(at.UnixMilli()))
}

// The cycle is a tick time in unix milliseconds: 0 (what a sender that
// forgot it would send) is refused, the smallest positive one parses
// (holding it to the clock is Bound's job).
func TestParseBucketCycleMustBePositive(t *testing.T) {
	payload := func(cycle int64) string {
		return fmt.Sprintf(`{"bucket":0,"buckets":4,"cycle":%d,"deadline":"2026-01-01T00:00:00Z","versions":1}`, cycle)
	}
	b, err := ParseBucket(ev(TypeBucket, payload(1)))
	require.NoError(t, err)
	require.Equal(t, int64(1), b.Cycle)
	for _, cycle := range []int64{0, -1} {
		_, err := ParseBucket(ev(TypeBucket, payload(cycle)))
		require.Error(t, err, "cycle %d", cycle)
		require.Equal(t, http.StatusBadRequest, status(t, err))
		require.Contains(t, err.Error(), fmt.Sprintf("cycle %d: want the tick time in unix milliseconds", cycle))
	}
}
