package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/stretchr/testify/require"

	"function/shared/buckets"
	"function/shared/ids"
)

// maxClippedMessage is the longest message BadRequest can give: maxMessage
// bytes and the note Clip adds saying how long the whole was.
var maxClippedMessage = maxMessage + len(fmt.Sprintf("...(%d bytes)", int64(1<<63-1)))

// lastMilli is the last millisecond of year 9999, the latest time an
// RFC 3339 timestamp (and so a CloudEvent's time) can carry.
const lastMilli = 253402300799999

// FuzzParseEvents feeds ParseBucket, ParseActivate, Bucket.Bound and CycleOf
// events built from fuzzed attributes, extension, datacontenttype and data.
// Whatever the input, each parser either refuses it with a 400 that names
// the event and quotes a bounded part of it (Knative must not retry it, and
// the message goes back to the sender and the dead-letter sink), or returns
// a value that holds every invariant the package documents for it.
func FuzzParseEvents(f *testing.F) {
	const (
		now      = int64(1700000000000) // the cycle of goodBucketData
		skew     = int64(10 * time.Second)
		deadline = int64(55 * time.Second)
	)
	seed := func(typ, id, ts, ct, data string) {
		f.Add(typ, "test", id, ts, "", "", ct, []byte(data), now, skew, deadline)
	}
	seed(TypeBucket, "id-1", "", "application/json", goodBucketData)
	seed(TypeActivate, "id-1", "", "application/json", goodActivateData)
	for _, name := range slices.Sorted(maps.Keys(badBucketData)) { // sorted: seed#N stays the same input
		seed(TypeBucket, "id-1", "", "application/json", badBucketData[name])
	}
	for _, name := range slices.Sorted(maps.Keys(badActivateData)) {
		seed(TypeActivate, "id-1", "", "application/json", badActivateData[name])
	}
	seed(TypeBucket, "x", "", "text/plain", "bucket=1")
	seed(TypeBucket, "x", "", "application/cloudevents+json", goodBucketData)
	seed(TypeBucket, "x", "", "", goodBucketData)
	seed(TypeActivate, "id-1", "", "application/json", `{"functionId":"f","functionVersionId":"v"}`)
	seed(TypeActivate, "id-1", "", "application/json", `{"functionId":"f","functionVersionId":"v","ncaId":"_n"}`)
	seed(TypeActivate, "id-1", "", "application/json", `{"functionId":"f","functionVersionId":"v","ncaId":""}`)
	seed(TypeActivate, strings.Repeat("x", 2000), "", "application/json", `{"functionId":"a b","functionVersionId":"v"}`)
	seed(TypeActivate, "\x80\x80\x80", "", "application/json", `{"functionId":"f","functionVersionId":".v"}`)
	seed(TypeActivate, "id-1", "", "application/json", `{"functionId":"`+strings.Repeat("x", 2000)+`","functionVersionId":"v"}`)
	seed(TypeBucket, "id-1", "", "application/json", `{"bucket":0,"buckets":1,"cycle":1,"deadline":"`+strings.Repeat("x", 2000)+`"}`)
	seed(TypeBucket, "id-1", "", "application/json", `{"bucket":0,"buckets":4,"cycle":1,"deadline":"2026-01-01T00:00:00Z","versions":1}`)
	seed(TypeBucket, "id-1", "", "application/json", `{"bucket":127,"buckets":65536,"cycle":1700000010000,"deadline":"9999-01-01T00:00:00Z"}`)
	seed(TypeBucket, "id-1", "", "application/json", `{"bucket":0,"buckets":1,"cycle":1700000010001,"deadline":"2023-11-14T22:14:00Z"}`)
	seed(TypeBucket, "id-1", "", "application/json", `{"bucket":0,"buckets":65537,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`)
	// Ticks: a time within the skew, one far ahead of it, none at all.
	f.Add(TypePing, "/apis/v1/namespaces/ns/pingsources/tick", "t-1", "2023-11-14T22:13:25.123Z", "knativearrivaltime", "2023-11-14T22:13:25Z",
		"application/json", []byte(`{"message":"tick"}`), now, skew, deadline)
	f.Add(TypePing, "s", "t-2", "2023-11-14T23:13:20Z", "", "", "", []byte(nil), now, skew, deadline)
	f.Add(TypePing, "s", "t-3", "", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "", []byte(nil), now, int64(0), deadline)

	f.Fuzz(func(t *testing.T, typ, source, id, ts, extName, extValue, ct string, data []byte, nowMilli, skewNanos, deadlineNanos int64) {
		e := event.New()
		e.SetID(id)
		e.SetType(typ)
		e.SetSource(source)
		// A time reaches the parsers only as the SDK parsed it: RFC 3339.
		if at, err := types.ParseTime(ts); err == nil {
			e.SetTime(at)
		}
		if extName != "" {
			e.SetExtension(extName, extValue)
		}
		if ct != "" || data != nil {
			_ = e.SetData(ct, data) // bytes are stored as given, never encoded
		}
		// The replica's clock and its settings as configuration allows them:
		// a time an event could carry, MAX_CLOCK_SKEW >= 0, BUCKET_DEADLINE > 0.
		l := Bounds{
			Now:      time.UnixMilli(int64(uint64(nowMilli) % (lastMilli + 1))),
			Skew:     time.Duration(skewNanos ^ skewNanos>>63), // a negative x becomes -x-1
			Deadline: max(time.Duration(deadlineNanos^deadlineNanos>>63), 1),
		}
		prefix := func(kind string) string { return kind + " event " + Clip(e.ID(), MaxQuoted) + ": " }

		b, err := ParseBucket(e)
		if err != nil {
			requireBadRequest(t, err, prefix("bucket"))
		} else {
			requireJSONPayload(t, e, []string{"bucket", "buckets", "cycle", "deadline"}, "versions")
			require.NoError(t, buckets.Validate(b.Buckets))
			require.True(t, b.Bucket >= 0 && b.Bucket < b.Buckets, "bucket %d of %d", b.Bucket, b.Buckets)
			r := b.Range() // panics on a bucket For would refuse
			require.Equal(t, b.Bucket, r.Index)
			require.Equal(t, b.Buckets, r.Count)
			require.Positive(t, b.Cycle)
			require.False(t, b.Deadline.IsZero(), "deadline")

			bound, err := b.Bound(e.ID(), l)
			tick := time.UnixMilli(b.Cycle)
			if err != nil {
				requireBadRequest(t, err, prefix("bucket")+"cycle ")
				require.Greater(t, tick.Sub(l.Now), l.Skew, "refused a cycle within the skew: %v", err)
			} else {
				require.LessOrEqual(t, tick.Sub(l.Now), l.Skew, "accepted a cycle beyond the skew")
				last := tick.Add(l.Deadline)
				require.False(t, bound.Deadline.After(last), "deadline %s after cycle + %s", bound.Deadline, l.Deadline)
				if !b.Deadline.After(last) {
					require.True(t, bound.Deadline.Equal(b.Deadline), "a deadline inside the bound moved")
				}
				bound.Deadline = b.Deadline
				require.Equal(t, b, bound, "Bound changes the deadline only")
			}
		}

		a, err := ParseActivate(e)
		if err != nil {
			requireBadRequest(t, err, prefix("activate"))
		} else {
			requireJSONPayload(t, e, []string{"functionId", "functionVersionId"}, "ncaId")
			require.True(t, ids.Valid(a.FunctionID), "functionId %q", a.FunctionID)
			require.True(t, ids.Valid(a.FunctionVersionID), "functionVersionId %q", a.FunctionVersionID)
			require.True(t, a.NcaID == "" || ids.Valid(a.NcaID), "ncaId %q", a.NcaID)
		}

		cycle, clamped := CycleOf(e, l.Now, l.Skew)
		at := e.Time()
		if at.IsZero() {
			at = l.Now
		}
		require.Zero(t, cycle%1000, "cycle %d is not a whole second", cycle)
		require.Equal(t, at.Sub(l.Now) > l.Skew, clamped, "tick %s, now %s, skew %s", at, l.Now, l.Skew)
		if clamped {
			at = l.Now
		}
		require.Equal(t, at.Truncate(time.Second).UnixMilli(), cycle)
		require.LessOrEqual(t, time.UnixMilli(cycle).Sub(l.Now), l.Skew, "a cycle beyond the skew")
	})
}

// requireBadRequest holds err to what a refused event gets: a 400 (no
// retry), a message that starts by naming the event, and no more of the
// input than BadRequest's bound.
func requireBadRequest(t *testing.T, err error, prefix string) {
	t.Helper()
	var r *cehttp.Result
	require.True(t, errors.As(err, &r), "want an HTTP result, got %T %v", err, err)
	require.Equal(t, http.StatusBadRequest, r.StatusCode, "%v", err)
	msg := fmt.Errorf(r.Format, r.Args...).Error()
	require.LessOrEqual(t, len(msg), maxClippedMessage, "message of %d bytes", len(msg))
	require.True(t, strings.HasPrefix(msg, prefix), "message %.300q does not start with %.300q", msg, prefix)
}

// requireJSONPayload holds an accepted event to decodeStrict's rules: JSON
// (or no) datacontenttype, one JSON object whose keys are the payload's
// keys exactly, with every required one present and not null. The keys are
// spelled out here rather than read from the struct tags, so a tag and the
// rule cannot drift together.
func requireJSONPayload(t *testing.T, e event.Event, required []string, optional ...string) {
	t.Helper()
	ct := e.DataContentType()
	require.True(t, ct == "" || strings.HasPrefix(ct, "application/json") || strings.HasSuffix(ct, "+json"), "datacontenttype %q", ct)
	var present map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(e.Data(), &present), "data %q", e.Data())
	for key := range present {
		require.True(t, slices.Contains(required, key) || slices.Contains(optional, key), "unknown key %q accepted", key)
	}
	for _, key := range required {
		v, ok := present[key]
		require.True(t, ok && string(v) != "null", "required %q missing or null in %q", key, e.Data())
	}
}
