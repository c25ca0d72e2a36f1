package events

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"function/shared/ids"
)

func ev(typ, data string) event.Event {
	e := event.New()
	e.SetID("id-1")
	e.SetType(typ)
	e.SetSource("test")
	if data != "" {
		_ = e.SetData(event.ApplicationJSON, []byte(data))
	}
	return e
}

func status(t *testing.T, err error) int {
	t.Helper()
	var r *cehttp.Result
	require.True(t, errors.As(err, &r), "want an HTTP result, got %v", err)
	return r.StatusCode
}

// goodBucketData and goodActivateData are payloads the parsers accept, and
// badBucketData and badActivateData ones they refuse, by what is wrong;
// the fuzz tests start from all of them.
const (
	goodBucketData   = `{"bucket":3,"buckets":128,"cycle":1700000000000,"deadline":"2026-01-01T00:00:55Z"}`
	goodActivateData = `{"functionId":"3fa85f64-5717-4562-b3fc-2c963f66afa6","functionVersionId":"v1","ncaId":"nca-1"}`
)

var badBucketData = map[string]string{
	"empty":          ``,
	"not json":       `{"bucket":`,
	"unknown field":  `{"bucket":1,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z","extra":1}`,
	"out of range":   `{"bucket":2,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"negative count": `{"bucket":0,"buckets":-1,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"no cycle":       `{"bucket":0,"buckets":2,"deadline":"2026-01-01T00:00:00Z"}`,
	"no deadline":    `{"bucket":0,"buckets":2,"cycle":1}`,
	"trailing":       `{"bucket":0,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"} {}`,
	"string bucket":  `{"bucket":"0","buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"no bucket":      `{"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"null bucket":    `{"bucket":null,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"other case":     `{"Bucket":0,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"both cases":     `{"bucket":1,"BUCKET":0,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	"an array":       `[{"bucket":0,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}]`,
}

var badActivateData = map[string]string{
	"missing version": `{"functionId":"f"}`,
	"bad id":          `{"functionId":"f\"}","functionVersionId":"v"}`,
	"regex chars":     `{"functionId":"f|.*","functionVersionId":"v"}`,
	"too long":        `{"functionId":"` + string(make([]byte, 200)) + `","functionVersionId":"v"}`,
	"other case":      `{"FunctionID":"f","functionVersionId":"v"}`,
	"null version":    `{"functionId":"f","functionVersionId":null}`,
}

func TestParseBucket(t *testing.T) {
	b, err := ParseBucket(ev(TypeBucket, goodBucketData))
	require.NoError(t, err)
	require.Equal(t, 3, b.Bucket)
	require.Equal(t, 3, b.Range().Index)

	for name, data := range badBucketData {
		_, err := ParseBucket(ev(TypeBucket, data))
		require.Error(t, err, name)
		require.Equal(t, http.StatusBadRequest, status(t, err), name)
		require.Contains(t, err.Error(), "id-1", name)
	}
}

func TestParseActivate(t *testing.T) {
	a, err := ParseActivate(ev(TypeActivate, goodActivateData))
	require.NoError(t, err)
	require.Equal(t, "v1", a.FunctionVersionID)
	for name, data := range badActivateData {
		_, err := ParseActivate(ev(TypeActivate, data))
		require.Error(t, err, name)
		require.Equal(t, http.StatusBadRequest, status(t, err), name)
	}
	// An id refused for its first character is told the whole rule, and
	// each field is named.
	for field, data := range map[string]string{
		"functionId":        `{"functionId":"-f","functionVersionId":"v"}`,
		"functionVersionId": `{"functionId":"f","functionVersionId":".v"}`,
		"ncaId":             `{"functionId":"f","functionVersionId":"v","ncaId":"_n"}`,
	} {
		_, err := ParseActivate(ev(TypeActivate, data))
		require.ErrorContains(t, err, field+" ")
		require.ErrorContains(t, err, "want "+ids.Rule)
	}
}

// Errors name the field: a missing one and one in another case are told
// apart, and the optional fields stay optional.
func TestPayloadKeysAreExactAndRequired(t *testing.T) {
	_, err := ParseBucket(ev(TypeBucket, `{"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`))
	require.ErrorContains(t, err, `field "bucket" is missing`)
	_, err = ParseActivate(ev(TypeActivate, `{"FunctionID":"f","functionVersionId":"v"}`))
	require.ErrorContains(t, err, `unknown field "FunctionID"`)
	require.ErrorContains(t, err, "functionId")
	_, err = ParseActivate(ev(TypeActivate, `{"functionId":"f","functionVersionId":"v"}`))
	require.NoError(t, err, "ncaId is optional")
	_, err = ParseBucket(ev(TypeBucket, `{"bucket":0,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z","versions":3}`))
	require.NoError(t, err, "versions is optional")
}

// A 400 quotes what was wrong, not all of it: the message goes back to the
// sender and on to the dead-letter sink, and a 10 MB id must not make a
// 10 MB answer. What it names stays readable.
func TestBadRequestsQuoteBoundedInput(t *testing.T) {
	huge := strings.Repeat("x", 10<<20)
	for name, e := range map[string]event.Event{
		"id":       ev(TypeActivate, `{"functionId":"`+huge+`","functionVersionId":"v"}`),
		"key":      ev(TypeActivate, `{"`+huge+`":"f","functionVersionId":"v"}`),
		"deadline": ev(TypeBucket, `{"bucket":0,"buckets":1,"cycle":1,"deadline":"`+huge+`"}`),
		"event id": func() event.Event {
			e := ev(TypeActivate, `{"functionId":"a b","functionVersionId":"v"}`)
			e.SetID(huge)
			return e
		}(),
		"data type": func() event.Event { e := ev(TypeBucket, ""); _ = e.SetData("text/"+huge, []byte("x")); return e }(),
	} {
		var err error
		if e.Type() == TypeBucket {
			_, err = ParseBucket(e)
		} else {
			_, err = ParseActivate(e)
		}
		require.Error(t, err, name)
		require.Less(t, len(err.Error()), 1200, name)
		require.Contains(t, err.Error(), "bytes", "%s: says how much was cut: %.300s", name, err.Error())
	}
	_, err := ParseActivate(ev(TypeActivate, `{"functionId":"`+huge+`","functionVersionId":"v"}`))
	require.ErrorContains(t, err, "functionId")
	require.ErrorContains(t, err, "want 1-128 characters")
}

func TestDataContentTypeMustBeJSON(t *testing.T) {
	e := event.New()
	e.SetID("x")
	e.SetType(TypeBucket)
	e.SetSource("s")
	_ = e.SetData("text/plain", []byte("bucket=1"))
	_, err := ParseBucket(e)
	require.ErrorContains(t, err, "application/json")
}

func TestCycleAndIDsAreDeterministic(t *testing.T) {
	e := ev(TypePing, "")
	at := time.Date(2026, 11, 22, 14, 0, 0, 123e6, time.UTC)
	e.SetTime(at)
	cycle, clamped := CycleOf(e, at, 0)
	require.Equal(t, at.Truncate(time.Second).UnixMilli(), cycle)
	require.False(t, clamped)
	require.Equal(t, "cycle-5-bucket-3-of-128", BucketEventID(5, 3, 128))
	r, err := NewReply(e, TypeDiscoveryResult, map[string]int{"n": 1})
	require.NoError(t, err)
	require.Equal(t, "id-1/result", r.ID())
	require.NoError(t, r.Validate())
}

func TestTickAheadIsClampedToNow(t *testing.T) {
	e := ev(TypePing, "")
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	e.SetTime(now.Add(10 * time.Second))
	cycle, clamped := CycleOf(e, now, 10*time.Second)
	require.False(t, clamped, "within the skew")
	require.Equal(t, now.Add(10*time.Second).UnixMilli(), cycle)
	e.SetTime(now.Add(time.Hour))
	cycle, clamped = CycleOf(e, now, 10*time.Second)
	require.True(t, clamped)
	require.Equal(t, now.UnixMilli(), cycle)
}

func TestBucketBoundToTheClock(t *testing.T) {
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	l := Bounds{Now: now, Skew: 10 * time.Second, Deadline: 55 * time.Second}
	bucket := func(cycle, deadline time.Time) Bucket {
		return Bucket{Bucket: 0, Buckets: 1, Cycle: cycle.UnixMilli(), Deadline: deadline}
	}

	b, err := bucket(now, now.Add(50*time.Second)).Bound("id-1", l)
	require.NoError(t, err)
	require.Equal(t, now.Add(50*time.Second), b.Deadline, "a deadline inside the bound stands")

	b, err = bucket(now.Add(10*time.Second), now.Add(2*time.Minute)).Bound("id-1", l)
	require.NoError(t, err, "a cycle ahead by the skew is accepted")
	require.Equal(t, now.Add(65*time.Second), b.Deadline.UTC(), "and its deadline is cut back to cycle + 55s")

	_, err = bucket(now.Add(11*time.Second), now.Add(time.Minute)).Bound("id-1", l)
	require.Equal(t, http.StatusBadRequest, status(t, err))
	require.ErrorContains(t, err, "MAX_CLOCK_SKEW=10s")
	require.ErrorContains(t, err, "id-1")

	old := now.Add(-30 * 24 * time.Hour)
	b, err = bucket(old, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)).Bound("id-1", l)
	require.NoError(t, err)
	require.Equal(t, old.Add(55*time.Second), b.Deadline.UTC(), "an old cycle cannot claim a far deadline")
}

func TestStatusHelpers(t *testing.T) {
	require.Equal(t, http.StatusBadRequest, status(t, BadRequest("x %d", 1)))
	require.Equal(t, http.StatusServiceUnavailable, status(t, Unavailable("y")))
}

// Clip keeps input of n bytes whole, keeps the first n bytes of longer
// input (fewer only to end at a character's start) and says the length.
func TestClip(t *testing.T) {
	require.Equal(t, "abcd", Clip("abcd", 4), "n bytes are not clipped")
	require.Equal(t, "abc...(5 bytes)", Clip("abcde", 3))
	// "é" is 2 bytes: a cut inside it moves back to its start.
	require.Equal(t, "ab...(6 bytes)", Clip("abécd", 3))
	require.Equal(t, "abé...(6 bytes)", Clip("abécd", 4))
	// Not UTF-8 at all (an event id is any bytes): no character start
	// before the cut, so nothing is kept, and nothing indexes before 0.
	require.Equal(t, "...(4 bytes)", Clip("\x80\x80\x80\x80", 2))
}
