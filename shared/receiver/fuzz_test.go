package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"

	"function/shared/events"
	"function/shared/ids"
)

// The headers a fuzzed request may carry, in the order of the bits of
// FuzzServeHTTP's present mask.
var fuzzedHeaders = []string{"Content-Type", "Ce-Specversion", "Ce-Id", "Ce-Source", "Ce-Type", "Ce-Time"}

// maxAnswer bounds every answer's body: the longest message, a 400 from
// events.BadRequest or a 500 here, is 1024 bytes and Clip's note of the
// whole length; the receiver's own refusals quote less.
var maxAnswer = maxMessage + len(fmt.Sprintf("...(%d bytes)", int64(1<<63-1)))

// refusedStatuses are the statuses of a request refused before the handler
// runs: all 4xx, since no retry makes a malformed request well-formed, and
// a 5xx would have Knative redeliver it until its retries run out.
var refusedStatuses = []int{http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}

// FuzzServeHTTP sends the receiver requests built from a fuzzed method,
// CloudEvents headers, body and declared length, in binary mode (attributes
// in headers) or structured mode (attributes in a JSON body built from the
// same values). Whatever the request, ServeHTTP answers within seconds; the
// handler sees only an event that validated, and its outcome is the
// answer; a request refused before it gets a 4xx and one log line; no
// answer's body is longer than maxAnswer; and a plain well-formed event
// always reaches the handler.
//
// mode's low bit picks structured mode, the rest what the handler does:
// accept, or parse the event as a bucket or an activation and return the
// parser's error. lengthSkew is added to the body's length to give the
// declared Content-Length: a shorter one cuts the body there, as the server
// would; a longer one ends it early with io.ErrUnexpectedEOF, as the server
// does when the client stops sending; a negative total is a chunked body.
func FuzzServeHTTP(f *testing.F) {
	// Handler outcomes (mode >> 1): accept, parse a bucket, parse an
	// activation. untimed is every header but Ce-Time.
	const (
		accept, bucket, activate = 0, 1 << 1, 2 << 1
		structured               = 1
		untimed                  = uint8(1<<5 - 1)
	)
	binary := func(method string, handler uint8, ct, id, typ, body string) {
		f.Add(method, handler, untimed, ct, "1.0", id, "test", typ, "", int16(0), []byte(body))
	}
	binary("POST", accept, "application/json", "e-1", "t", `{}`)
	binary("POST", bucket, "application/json", "e-1", events.TypeBucket, `{"bucket":3,"buckets":128,"cycle":1700000000000,"deadline":"2026-01-01T00:00:55Z"}`)
	binary("POST", activate, "application/json", "e-1", events.TypeActivate, `{"functionId":"f","functionVersionId":"v"}`)
	binary("POST", activate, "application/json", "e-1", events.TypeActivate, `{"functionId":"`+strings.Repeat("x", 900)+`","functionVersionId":"v"}`)
	binary("POST", bucket, "application/json", strings.Repeat("i", 2000), events.TypeBucket, `{"bucket":"x"}`)
	binary("POST", bucket, "text/plain", "e-1", events.TypeBucket, `bucket=1`)
	binary("POST", accept, "application/cloudevents-batch+json", "e-1", "t", `[{"specversion":"1.0","id":"b","source":"s","type":"t"}]`)
	binary("POST", accept, strings.Repeat("\x01", 2000), "e-1", "t", `{}`)
	binary("GET", accept, "application/json", "e-1", "t", ``)
	binary("P"+strings.Repeat("X", 2000), accept, "application/json", "e-1", "t", `{}`)
	binary("POST", accept, "application/json", " ", "t", `{}`)
	binary("POST", accept, "application/json", "e-1", "t", strings.Repeat(" ", 1024))
	binary("POST", accept, "application/json", "e-1", "t", strings.Repeat(" ", 1025))
	attrs := func(present uint8, spec, source, ceTime string, skew int16) {
		f.Add("POST", uint8(accept), present, "application/json", spec, "e-1", source, "t", ceTime, skew, []byte(`{}`))
	}
	attrs(untimed|1<<5, "1.0", "s", "noon", 0)
	attrs(untimed|1<<5, "1.0", "s", "2026-11-30T11:40:00.5Z", 0)
	attrs(untimed&^(1<<1), "", "s", "", 0)
	attrs(untimed&^(1<<3), "1.0", "", "", 0)
	attrs(untimed, "0.3", "s", "", 0)
	attrs(untimed, "1.0", "/apis/v1/namespaces/ns/pingsources/tick", "", 0)
	for _, skew := range []int16{1025, 5, -1, -3} { // over the limit, too long, chunked, too short
		attrs(untimed, "1.0", "s", "", skew)
	}
	// Structured mode: the same attributes in the body.
	structuredEvent := func(handler, present uint8, ct, source, typ, ceTime, data string) {
		f.Add("POST", structured|handler, present, ct, "1.0", "s-1", source, typ, ceTime, int16(0), []byte(data))
	}
	structuredEvent(accept, untimed, "application/json", "test", "t", "", `{"b":2}`)
	structuredEvent(accept, untimed|1<<5, "application/json", "test", "t", "2026-11-30T11:40:00Z", `"not an object"`)
	structuredEvent(bucket, untimed, "application/json", "test", events.TypeBucket, "", `{"bucket":0,"buckets":2,"cycle":1}`)
	structuredEvent(activate, untimed, "application/json", "test", events.TypeActivate, "", `{"functionId":"f","functionVersionId":"v"}`)
	structuredEvent(accept, untimed&^(1<<3), "", "", "t", "", ``)
	structuredEvent(accept, untimed, "text/plain", "test", "t", "", "plain text")

	f.Fuzz(func(t *testing.T, method string, mode, present uint8, contentType, specVersion, ceID, ceSource, ceType, ceTime string, lengthSkew int16, body []byte) {
		values := []string{contentType, specVersion, ceID, ceSource, ceType, ceTime}
		set := func(i int) bool { return values[i] != "" || present&(1<<i) != 0 }
		structured := mode&1 == 1
		hdr := http.Header{}
		if structured {
			body = structuredBody(t, values, set, body)
			hdr.Set("Content-Type", event.ApplicationCloudEventsJSON)
		} else {
			for i, name := range fuzzedHeaders {
				if set(i) {
					hdr[name] = []string{values[i]}
				}
			}
		}

		req, err := http.NewRequest(method, "/", nil)
		if err != nil {
			return // not a method token: net/http refuses the request line itself
		}
		req.Header = hdr
		req.ContentLength, req.Body = declaredBody(body, int(lengthSkew))

		var calls int
		var invalid, handled error
		handle := func(_ context.Context, e event.Event) (*event.Event, error) {
			calls++
			invalid = e.Validate() // checked on the test's goroutine
			switch mode >> 1 % 3 {
			case 1:
				_, handled = events.ParseBucket(e)
			case 2:
				_, handled = events.ParseActivate(e)
			}
			return nil, handled
		}
		var logs bytes.Buffer
		rc := &Receiver{MaxBodyBytes: 1024, LimitSetting: "MAX_EVENT_BYTES", Log: slog.New(slog.NewJSONHandler(&logs, nil)), Handle: handle}
		w := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			rc.ServeHTTP(w, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer within 10s to %s with %v (%d body bytes)", method, hdr, len(body))
		}

		answer := w.Body.String()
		require.LessOrEqual(t, len(answer), maxAnswer, "answer of %d bytes: %.300q", len(answer), answer)
		require.LessOrEqual(t, calls, 1)
		if calls == 1 {
			require.NoError(t, invalid, "the handler got an event that does not validate")
			want := http.StatusOK
			var r *cehttp.Result
			if errors.As(handled, &r) {
				want = r.StatusCode
				require.Equal(t, fmt.Errorf(r.Format, r.Args...).Error(), answer)
			}
			require.Equal(t, want, w.Code, "answer %.300q", answer)
			require.NotContains(t, logs.String(), `"msg":"event refused"`)
			return
		}
		require.Contains(t, refusedStatuses, w.Code, "refused with %d: %.300q", w.Code, answer)
		require.NotEmpty(t, answer, "a refusal says what to fix")
		require.Equal(t, 1, strings.Count(logs.String(), `"msg":"event refused"`), "%s", logs.String())
		if req.Method != http.MethodPost {
			require.Equal(t, http.StatusMethodNotAllowed, w.Code)
		} else if req.ContentLength > rc.MaxBodyBytes {
			require.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
		}
		// Nothing is lost: a plain binary-mode event, sent whole, is handled
		// (ids.Valid stands for "plainly a good attribute value" here).
		if req.Method == http.MethodPost && !structured && lengthSkew == 0 && len(body) <= int(rc.MaxBodyBytes) &&
			contentType == "application/json" && specVersion == "1.0" && ids.Valid(ceID) && ids.Valid(ceSource) && ids.Valid(ceType) && !set(5) {
			t.Fatalf("a well-formed event was refused with %d: %.300q", w.Code, answer)
		}
	})
}

// structuredBody is a structured-mode event carrying the fuzzed attributes
// that are set (values in fuzzedHeaders' order; Content-Type becomes
// datacontenttype) and data: as JSON when it is JSON, else as a string.
func structuredBody(t *testing.T, values []string, set func(int) bool, data []byte) []byte {
	t.Helper()
	attrs := map[string]any{}
	for i, name := range []string{"datacontenttype", "specversion", "id", "source", "type", "time"} {
		if set(i) {
			attrs[name] = values[i]
		}
	}
	switch {
	case json.Valid(data):
		attrs["data"] = json.RawMessage(data)
	case data != nil:
		attrs["data"] = string(data)
	}
	b, err := json.Marshal(attrs)
	require.NoError(t, err)
	return b
}

// declaredBody is what a handler gets for body sent with a Content-Length
// of len(body)+skew: see FuzzServeHTTP.
func declaredBody(body []byte, skew int) (int64, io.ReadCloser) {
	declared := len(body) + skew
	switch {
	case declared < 0:
		return -1, io.NopCloser(bytes.NewReader(body))
	case declared <= len(body):
		return int64(declared), io.NopCloser(bytes.NewReader(body[:declared]))
	default:
		return int64(declared), io.NopCloser(io.MultiReader(bytes.NewReader(body), failingReader{io.ErrUnexpectedEOF}))
	}
}

// failingReader fails every read with its error.
type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }
