// Package receiver serves CloudEvents over HTTP, each request parsed,
// handled and answered in its own goroutine, with nothing shared between
// requests.
//
// It replaces the CloudEvents SDK's HTTP receive handler (which func-go's
// CloudEvents runtime serves through). That handler passes every request
// across one shared unbuffered channel to a goroutine started for it; a
// client that hangs up at the wrong moment leaves the pairing offset by one,
// after which every request waits for the next to arrive to be answered
// (cloudevents/sdk-go#1224 and #1332, open). The SDK's HTTP binding is still
// what reads and writes the events (cehttp.NewMessage, binding.ToEvent,
// cehttp.WriteResponseWriter): only the hand-off is gone.
//
// Everything the SDK refused before our code ran (an empty id, a bad time,
// batch mode, a body that is not JSON) is a 400 with a message and a log
// line here; a body over the limit is a 413 before any parsing.
package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"function/shared/events"
)

// HandleFunc handles one event. A reply event goes back in the response
// (the Broker forwards it). An error made with cehttp.NewResult (as
// events.BadRequest and events.Unavailable do) sets the status and the
// message; any other error is a 500.
type HandleFunc func(context.Context, event.Event) (*event.Event, error)

// Receiver is an http.Handler for CloudEvents in binary or structured mode.
type Receiver struct {
	// MaxBodyBytes bounds the request body (MAX_EVENT_BYTES); a larger one
	// is a 413, refused before it is read whole.
	MaxBodyBytes int64
	// LimitSetting names the setting behind MaxBodyBytes in 413 messages.
	LimitSetting string
	// AnswerWithin is how long after a request arrives its answer may
	// still be written. It replaces the server's write timeout (func-go's
	// is 30 s) for events, which a bucket may outlast: its work is bounded
	// by BUCKET_DEADLINE (55 s), and an answer the server can no longer
	// write makes the Broker retry a bucket that was decided. Zero keeps
	// the server's.
	AnswerWithin time.Duration
	Log          *slog.Logger
	Handle       HandleFunc
}

// ServeHTTP reads, parses, handles and answers one event.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rc.AnswerWithin > 0 {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(rc.AnswerWithin)); err != nil {
			rc.Log.Warn("cannot extend the write deadline; a slow answer may be cut off", "error", err.Error())
		}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rc.refuse(w, r, nil, http.StatusMethodNotAllowed, "method %s: CloudEvents are delivered with POST", events.Clip(r.Method, 16))
		return
	}
	// No sender on the delivery path compresses (the Broker, the
	// PingSource, our discovery), and the events are a few hundred bytes:
	// decoding would add a decompressor, and the bomb it invites, for
	// nothing. 415 is HTTP's answer to an unsupported content coding.
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		rc.refuse(w, r, nil, http.StatusUnsupportedMediaType, "Content-Encoding %s is not supported: send the event uncompressed",
			strconv.Quote(events.Clip(enc, events.MaxQuoted)))
		return
	}
	body, status, msg := rc.readBody(w, r)
	if status != 0 {
		rc.refuse(w, r, nil, status, "%s", msg)
		return
	}
	m := cehttp.NewMessage(r.Header, io.NopCloser(bytes.NewReader(body)))
	switch m.ReadEncoding() {
	case binding.EncodingBatch:
		rc.refuse(w, r, nil, http.StatusBadRequest, "batch mode (Content-Type %s) is not supported: send one event per request", event.ApplicationCloudEventsBatchJSON)
		return
	case binding.EncodingUnknown:
		rc.refuse(w, r, nil, http.StatusUnsupportedMediaType,
			"not a CloudEvent: binary mode needs the Ce-Specversion, Ce-Id, Ce-Source and Ce-Type headers; structured mode needs Content-Type %s (got Content-Type %s)",
			event.ApplicationCloudEventsJSON, strconv.Quote(events.Clip(r.Header.Get("Content-Type"), events.MaxQuoted)))
		return
	}
	mode := "binary"
	if m.ReadEncoding() == binding.EncodingStructured {
		mode = "structured"
	}
	e, err := binding.ToEvent(r.Context(), m)
	if err != nil {
		rc.refuse(w, r, nil, http.StatusBadRequest, "malformed CloudEvent (%s mode): %s", mode, events.Clip(err.Error(), events.MaxQuoted))
		return
	}
	if err := e.Validate(); err != nil {
		rc.refuse(w, r, e, http.StatusBadRequest, "invalid CloudEvent (%s mode): %s", mode, events.Clip(err.Error(), events.MaxQuoted))
		return
	}
	if rc.Log.Enabled(r.Context(), slog.LevelDebug) {
		// Which way the event came: Knative's Broker ingress stamps
		// knativearrivaltime on every event it accepts, a direct sender
		// does not; e2e/knativepath reads this line to follow events
		// through real Knative.
		arrival := ""
		if v, ok := e.Extensions()["knativearrivaltime"]; ok {
			arrival = fmt.Sprint(v)
		}
		rc.Log.Debug("event received", "event_id", events.Clip(e.ID(), events.MaxQuoted), "event_type", events.Clip(e.Type(), events.MaxQuoted),
			"event_source", events.Clip(e.Source(), events.MaxQuoted), "knative_arrival_time", events.Clip(arrival, events.MaxQuoted))
	}
	reply, err := rc.handle(r.Context(), *e)
	rc.answer(w, r, e, reply, err)
}

// readBody reads at most MaxBodyBytes. A declared length over the limit
// is refused without reading; an undeclared (chunked) one is cut at the
// limit, and the server closes the connection instead of draining it.
func (rc *Receiver) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	tooLarge := func(size string) (int, string) {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %s exceeds %s=%d bytes: an event is a few hundred bytes", size, rc.LimitSetting, rc.MaxBodyBytes)
	}
	if r.ContentLength > rc.MaxBodyBytes {
		s, m := tooLarge(strconv.FormatInt(r.ContentLength, 10) + " bytes")
		return nil, s, m
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rc.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s, m := tooLarge("more than " + strconv.FormatInt(rc.MaxBodyBytes, 10) + " bytes")
		return nil, s, m
	case err != nil:
		// The client went away or stalled past the server's read timeout:
		// nobody may read this answer, but the log line says what happened.
		return nil, http.StatusBadRequest, "read body: " + events.Clip(err.Error(), events.MaxQuoted)
	}
	return body, 0, ""
}

// handle calls Handle; a panic is a 500 and a log line, not a dead process.
func (rc *Receiver) handle(ctx context.Context, e event.Event) (reply *event.Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			rc.Log.Error("event handler panicked", "event_id", events.Clip(e.ID(), events.MaxQuoted), "event_type", events.Clip(e.Type(), events.MaxQuoted), "panic", fmt.Sprint(p))
			reply, err = nil, cehttp.NewResult(http.StatusInternalServerError, "internal error: the event handler panicked") // logged here, once
		}
	}()
	return rc.Handle(ctx, e)
}

// answer writes the handler's outcome: the reply event (binary mode) with
// the status of the result, or the result's status and message. These are
// the statuses the SDK's receiver gave, so Knative retries what it retried.
func (rc *Receiver) answer(w http.ResponseWriter, r *http.Request, e *event.Event, reply *event.Event, err error) {
	status, msg := http.StatusOK, ""
	if err != nil {
		var result *cehttp.Result
		switch {
		case protocol.ResultAs(err, &result):
			// A status no final answer can have is the SDK's "no status":
			// 200, as its receiver did.
			if result.StatusCode >= 200 && result.StatusCode < 600 {
				status = result.StatusCode
			}
			msg = fmt.Errorf(result.Format, result.Args...).Error()
		case !protocol.IsACK(err):
			status, msg = http.StatusInternalServerError, events.Clip(err.Error(), maxMessage)
			rc.Log.Error("event handler failed", "event_id", events.Clip(e.ID(), events.MaxQuoted), "event_type", events.Clip(e.Type(), events.MaxQuoted), "error", msg)
		}
	}
	if reply != nil {
		if werr := cehttp.WriteResponseWriter(r.Context(), binding.ToMessage(reply), status, w); werr != nil {
			rc.Log.Warn("write reply event", "event_id", events.Clip(e.ID(), events.MaxQuoted), "error", werr.Error())
		}
		return
	}
	writeText(w, status, msg)
}

// refuse answers a request our handler never saw, with one log line: the
// sender learns what to fix, and so does whoever reads the logs.
func (rc *Receiver) refuse(w http.ResponseWriter, r *http.Request, e *event.Event, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	attrs := []any{"status", status, "error", msg, "content_type", events.Clip(r.Header.Get("Content-Type"), events.MaxQuoted)}
	if e != nil {
		attrs = append(attrs, "event_id", events.Clip(e.ID(), events.MaxQuoted), "event_type", events.Clip(e.Type(), events.MaxQuoted))
	} else if id := r.Header.Get("Ce-Id"); id != "" {
		attrs = append(attrs, "event_id", events.Clip(id, events.MaxQuoted))
	}
	rc.Log.Warn("event refused", attrs...)
	writeText(w, status, msg)
}

// maxMessage bounds the message of a 500, as events.BadRequest bounds a
// 400's.
const maxMessage = 1024

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}
