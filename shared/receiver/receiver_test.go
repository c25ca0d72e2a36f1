package receiver

import (
	"bytes"
	"context"
	"errors"
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
)

// The handler's outcomes keep the statuses the SDK's receiver gave them
// (Knative's retries depend on them); the function's tests drive the same
// code through the real entry point for the requests refused before a
// handler runs.

func serve(t *testing.T, h HandleFunc, hdr map[string]string, body string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	return serveRequest(t, h, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), hdr)
}

func serveRequest(t *testing.T, h HandleFunc, req *http.Request, hdr map[string]string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	var logs bytes.Buffer
	rc := &Receiver{MaxBodyBytes: 1024, LimitSetting: "MAX_EVENT_BYTES", Log: slog.New(slog.NewJSONHandler(&logs, nil)), Handle: h}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	rc.ServeHTTP(w, req)
	return w, logs.String()
}

var binaryEvent = map[string]string{
	"Ce-Id": "e-1", "Ce-Specversion": "1.0", "Ce-Source": "test", "Ce-Type": "t",
	"Ce-Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Content-Type": "application/json",
}

func TestHandlerOutcomesKeepTheirStatuses(t *testing.T) {
	reply := func(in event.Event) *event.Event {
		out, err := events.NewReply(in, "t.result", map[string]int{"n": 1})
		require.NoError(t, err)
		return out
	}
	cases := []struct {
		name   string
		handle HandleFunc
		status int
		body   string
		logs   string
	}{
		{"bad request", func(context.Context, event.Event) (*event.Event, error) {
			return nil, events.BadRequest("bucket event %s: no good", "e-1")
		}, 400, "bucket event e-1: no good", ""},
		{"unavailable", func(context.Context, event.Event) (*event.Event, error) {
			return nil, events.Unavailable("cassandra down")
		}, 503, "cassandra down", ""},
		{"no final status is 200", func(context.Context, event.Event) (*event.Event, error) {
			return nil, cehttp.NewResult(199, "almost")
		}, 200, "almost", ""},
		{"highest status", func(context.Context, event.Event) (*event.Event, error) {
			return nil, cehttp.NewResult(599, "odd")
		}, 599, "odd", ""},
		{"beyond any status is 200", func(context.Context, event.Event) (*event.Event, error) {
			return nil, cehttp.NewResult(600, "odd")
		}, 200, "odd", ""},
		{"accepted without a reply", func(context.Context, event.Event) (*event.Event, error) { return nil, nil }, 200, "", ""},
		{"reply event", func(_ context.Context, e event.Event) (*event.Event, error) { return reply(e), nil }, 200, `{"n":1}`, ""},
		{"plain error", func(context.Context, event.Event) (*event.Event, error) {
			return nil, errors.New("wire handlers: boom")
		}, 500, "wire handlers: boom", `"msg":"event handler failed"`},
		{"panic", func(context.Context, event.Event) (*event.Event, error) { panic("nil map") }, 500,
			"internal error: the event handler panicked", `"msg":"event handler panicked"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, logs := serve(t, c.handle, binaryEvent, `{}`)
			require.Equal(t, c.status, w.Code)
			require.Equal(t, c.body, w.Body.String())
			if c.logs == "" {
				require.Empty(t, logs)
			} else {
				require.Equal(t, 1, strings.Count(logs, "\n"), logs)
				require.Contains(t, logs, c.logs)
			}
		})
	}
	// The reply goes back in binary mode, as the SDK wrote it.
	w, _ := serve(t, cases[6].handle, binaryEvent, `{}`)
	require.Equal(t, "e-1/result", w.Header().Get("Ce-Id"))
	require.Equal(t, "t.result", w.Header().Get("Ce-Type"))
}

// What the handler gets is the event the binding parsed, extensions (the
// trace context) included, in either mode.
func TestHandlerGetsTheParsedEvent(t *testing.T) {
	var got event.Event
	keep := func(_ context.Context, e event.Event) (*event.Event, error) { got = e; return nil, nil }

	w, _ := serve(t, keep, binaryEvent, `{"a":1}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	require.Equal(t, "e-1", got.ID())
	require.Equal(t, `{"a":1}`, string(got.Data()))
	require.Equal(t, binaryEvent["Ce-Traceparent"], got.Extensions()["traceparent"])

	w, _ = serve(t, keep, map[string]string{"Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"s-1","source":"test","type":"t","datacontenttype":"application/json","data":{"b":2}}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	require.Equal(t, "s-1", got.ID())
	require.Equal(t, `{"b":2}`, string(got.Data()))
}

// A request refused before the handler runs never reaches it.
func TestRefusedRequestsNeverReachTheHandler(t *testing.T) {
	called := false
	h := func(context.Context, event.Event) (*event.Event, error) { called = true; return nil, nil }
	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	for _, c := range []struct {
		name    string
		method  string
		hdr     map[string]string
		body    string
		chunked bool
		want    int
		says    string
	}{
		{"over the limit", "POST", binaryEvent, strings.Repeat(" ", 1025), false, 413, "body of 1025 bytes exceeds MAX_EVENT_BYTES=1024"},
		{"over the limit, chunked", "POST", binaryEvent, strings.Repeat(" ", 1025), true, 413, "body of more than 1024 bytes exceeds MAX_EVENT_BYTES=1024"},
		{"gzip", "POST", map[string]string{"Content-Encoding": "gzip", "Ce-Id": "e-1", "Ce-Specversion": "1.0", "Ce-Source": "s", "Ce-Type": "t"}, "x", false, 415, "Content-Encoding"},
		{"no source", "POST", map[string]string{"Ce-Id": "e-1", "Ce-Specversion": "1.0", "Ce-Type": "t"}, "{}", false, 400, "invalid CloudEvent (binary mode): source"},
		{"bad time", "POST", map[string]string{"Ce-Id": "e-1", "Ce-Specversion": "1.0", "Ce-Source": "s", "Ce-Type": "t", "Ce-Time": "noon"}, "{}", false, 400, "malformed CloudEvent (binary mode)"},
		{"structured without a source", "POST", structured, `{"specversion":"1.0","id":"e-1","type":"t"}`, false, 400, "invalid CloudEvent (structured mode): source"},
		{"structured not JSON", "POST", structured, `{`, false, 400, "malformed CloudEvent (structured mode)"},
		{"batch", "POST", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, `[]`, false, 400, "batch mode"},
		{"no specversion", "POST", map[string]string{"Ce-Id": "e-1", "Content-Type": "text/plain"}, `{}`, false, 415, `not a CloudEvent: binary mode needs the Ce-Specversion`},
		{"GET", "GET", nil, "", false, 405, "method GET"},
	} {
		req := httptest.NewRequest(c.method, "/", strings.NewReader(c.body))
		if c.chunked {
			req.ContentLength = -1
		}
		w, logs := serveRequest(t, h, req, c.hdr)
		require.Equal(t, c.want, w.Code, "%s: %s", c.name, w.Body.String())
		require.Contains(t, w.Body.String(), c.says, c.name)
		require.Equal(t, 1, strings.Count(logs, `"msg":"event refused"`), c.name)
		if id := c.hdr["Ce-Id"]; id != "" {
			require.Contains(t, logs, `"event_id":"`+id+`"`, c.name)
		}
	}
	require.False(t, called)

	// Exactly the limit is read and handled.
	w, _ := serve(t, h, binaryEvent, strings.Repeat(" ", 1024))
	require.Equal(t, 200, w.Code, w.Body.String())
	require.True(t, called)
}

// An answer is written after the server's write timeout has passed when
// AnswerWithin allows it; without it, the server drops the answer (the
// Broker would retry a bucket already decided). The handler returns only
// once the server's own deadline is behind it.
func TestAnswerWithinOutlastsTheServersWriteTimeout(t *testing.T) {
	const serverTimeout = 100 * time.Millisecond
	for _, answerWithin := range []time.Duration{0, time.Minute} {
		rc := &Receiver{MaxBodyBytes: 1024, LimitSetting: "MAX_EVENT_BYTES", AnswerWithin: answerWithin,
			Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
			Handle: func(context.Context, event.Event) (*event.Event, error) {
				time.Sleep(3 * serverTimeout)
				return nil, events.Unavailable("decided late")
			}}
		srv := httptest.NewUnstartedServer(rc)
		srv.Config.WriteTimeout = serverTimeout
		srv.Start()
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{}`))
		require.NoError(t, err)
		for k, v := range binaryEvent {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if answerWithin == 0 {
			require.Error(t, err, "the server's write timeout drops a late answer")
		} else {
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			require.Equal(t, "decided late", string(b))
		}
		srv.Close()
	}
}

// At debug level every event is logged with the hop evidence Knative's
// Broker leaves on it (knativearrivaltime); at info level nothing per event.
func TestDebugLogNamesTheEventAndItsBrokerArrival(t *testing.T) {
	ok := func(context.Context, event.Event) (*event.Event, error) { return nil, nil }
	hdr := map[string]string{"Ce-Knativearrivaltime": "2026-11-30T11:40:00.5Z"}
	for k, v := range binaryEvent {
		hdr[k] = v
	}
	var logs bytes.Buffer
	rc := &Receiver{MaxBodyBytes: 1024, Log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Handle: ok}
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rc.ServeHTTP(httptest.NewRecorder(), req)
	require.Contains(t, logs.String(), `"msg":"event received","event_id":"e-1","event_type":"t","event_source":"test","knative_arrival_time":"2026-11-30T11:40:00.5Z"`)

	_, info := serve(t, ok, hdr, `{}`)
	require.NotContains(t, info, "event received")
}
