package events

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"
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

func TestParseBucket(t *testing.T) {
	ok := `{"bucket":3,"buckets":128,"cycle":1700000000000,"deadline":"2026-01-01T00:00:55Z"}`
	b, err := ParseBucket(ev(TypeBucket, ok))
	require.NoError(t, err)
	require.Equal(t, 3, b.Bucket)
	require.Equal(t, 3, b.Range().Index)

	for name, data := range map[string]string{
		"empty":          ``,
		"not json":       `{"bucket":`,
		"unknown field":  `{"bucket":1,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z","extra":1}`,
		"out of range":   `{"bucket":2,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
		"negative count": `{"bucket":0,"buckets":-1,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
		"no cycle":       `{"bucket":0,"buckets":2,"deadline":"2026-01-01T00:00:00Z"}`,
		"no deadline":    `{"bucket":0,"buckets":2,"cycle":1}`,
		"trailing":       `{"bucket":0,"buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"} {}`,
		"string bucket":  `{"bucket":"0","buckets":2,"cycle":1,"deadline":"2026-01-01T00:00:00Z"}`,
	} {
		_, err := ParseBucket(ev(TypeBucket, data))
		require.Error(t, err, name)
		require.Equal(t, http.StatusBadRequest, status(t, err), name)
		require.Contains(t, err.Error(), "id-1", name)
	}
}

func TestParseActivate(t *testing.T) {
	a, err := ParseActivate(ev(TypeActivate, `{"functionId":"3fa85f64-5717-4562-b3fc-2c963f66afa6","functionVersionId":"v1","ncaId":"nca-1"}`))
	require.NoError(t, err)
	require.Equal(t, "v1", a.FunctionVersionID)
	for name, data := range map[string]string{
		"missing version": `{"functionId":"f"}`,
		"bad id":          `{"functionId":"f\"}","functionVersionId":"v"}`,
		"regex chars":     `{"functionId":"f|.*","functionVersionId":"v"}`,
		"too long":        `{"functionId":"` + string(make([]byte, 200)) + `","functionVersionId":"v"}`,
	} {
		_, err := ParseActivate(ev(TypeActivate, data))
		require.Error(t, err, name)
		require.Equal(t, http.StatusBadRequest, status(t, err), name)
	}
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
	require.Equal(t, at.Truncate(time.Second).UnixMilli(), CycleOf(e, time.Now()))
	require.Equal(t, "cycle-5-bucket-3-of-128", BucketEventID(5, 3, 128))
	r, err := NewReply(e, TypeDiscoveryResult, map[string]int{"n": 1})
	require.NoError(t, err)
	require.Equal(t, "id-1/result", r.ID())
	require.NoError(t, r.Validate())
}

func TestStatusHelpers(t *testing.T) {
	require.Equal(t, http.StatusBadRequest, status(t, BadRequest("x %d", 1)))
	require.Equal(t, http.StatusServiceUnavailable, status(t, Unavailable("y")))
}
