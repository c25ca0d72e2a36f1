// Package events defines the CloudEvents the autoscaler receives and sends:
// their types, payloads, deterministic ids, and strict parsing that turns a
// malformed event into a non-retryable 400 naming what is wrong.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"function/shared/buckets"
	"function/shared/ids"
)

// Event types. Triggers filter on these, so they are part of the install
// contract.
const (
	// TypePing is what a Knative PingSource sends: a discovery tick.
	TypePing = "dev.knative.sources.ping"
	// TypeBucket asks the scale function to decide one bucket.
	TypeBucket = "com.nvidia.nvcf.autoscaler.bucket"
	// TypeActivate asks for an immediate 0 -> min instances for a version
	// the invocation plane saw invoked while at zero.
	TypeActivate = "com.nvidia.nvcf.autoscaler.function.activate"

	// TypeDiscoveryResult, TypeBucketResult and TypeActivateResult are the
	// reply events that report what a handler did.
	TypeDiscoveryResult = "com.nvidia.nvcf.autoscaler.discovery.result"
	TypeBucketResult    = "com.nvidia.nvcf.autoscaler.bucket.result"
	TypeActivateResult  = "com.nvidia.nvcf.autoscaler.function.activate.result"
)

// Source is the CloudEvents source of events this service emits.
const Source = "/nvcf/autoscaler"

// Bucket is the payload of a TypeBucket event.
type Bucket struct {
	Bucket  int `json:"bucket"`
	Buckets int `json:"buckets"`
	// Cycle identifies the discovery cycle: the tick time in unix
	// milliseconds. Cycles are ordered, which is what lets the scale function
	// refuse a late event from an older cycle.
	Cycle    int64     `json:"cycle"`
	Deadline time.Time `json:"deadline"`
	// Versions is how many versions discovery put in the bucket (a hint for
	// logs; the scale function reads the bucket from Cassandra).
	Versions int `json:"versions,omitempty"`
}

// Range returns the token range of the bucket.
func (b Bucket) Range() buckets.Range { return buckets.For(b.Bucket, b.Buckets) }

// BucketEventID is deterministic per cycle and bucket, so the Broker and the
// scale function can recognise a resend as the same event.
func BucketEventID(cycle int64, bucket, count int) string {
	return fmt.Sprintf("cycle-%d-bucket-%d-of-%d", cycle, bucket, count)
}

// Activate is the payload of a TypeActivate event.
type Activate struct {
	FunctionID        string `json:"functionId"`
	FunctionVersionID string `json:"functionVersionId"`
	NcaID             string `json:"ncaId,omitempty"`
}

// BadRequest marks an event no retry can fix: Knative gets a 400 and moves
// on (to the dead-letter sink, if any). The message goes back to the sender
// and on to that sink, so it is cut to maxMessage bytes whatever a library
// error inside it repeats; Clip what you quote so the cut falls there.
func BadRequest(format string, args ...any) error {
	return cehttp.NewResult(http.StatusBadRequest, "%s", Clip(fmt.Sprintf(format, args...), maxMessage))
}

// maxMessage bounds a 400's message: room for a few clipped values and the
// explanation around them.
const maxMessage = 1024

// MaxQuoted bounds each piece of input a message quotes: an id is at most
// 128 characters when valid, so a longer one is wrong whatever its tail.
const MaxQuoted = 160

// Clip returns s cut to at most n bytes (at a character boundary), saying
// how long it was, so a message quoting input stays small.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("...(%d bytes)", len(s))
}

// q quotes a piece of input for a message, clipped.
func q(s string) string { return strconv.Quote(Clip(s, MaxQuoted)) }

// Unavailable marks a failure a retry can fix (a dependency is down): the
// 503 makes Knative redeliver with back-off.
func Unavailable(format string, args ...any) error {
	return cehttp.NewResult(http.StatusServiceUnavailable, format, args...)
}

// decodeStrict decodes a JSON object payload into the struct into points
// to, so a typo in a hand-written curl fails loudly: keys must match the
// json tags exactly (encoding/json alone would take "Bucket" for "bucket"),
// every field without omitempty must be present and not null (alone it would
// leave a missing bucket at 0, a valid bucket), and nothing may follow the
// object.
func decodeStrict(e event.Event, into any) error {
	if ct := e.DataContentType(); ct != "" && !strings.HasPrefix(ct, "application/json") && !strings.HasSuffix(ct, "+json") {
		return fmt.Errorf("datacontenttype %s: want application/json", q(ct))
	}
	data := e.Data()
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("event has no data")
	}
	var present map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&present); err != nil {
		return fmt.Errorf("decode data: want a JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("decode data: trailing data after the JSON object")
	}
	fields := jsonFields(reflect.TypeOf(into).Elem())
	for key := range present {
		if _, ok := fields.required[key]; !ok {
			return fmt.Errorf("decode data: unknown field %s (keys are case-sensitive: want %s)", q(key), strings.Join(fields.names, ", "))
		}
	}
	for _, name := range fields.names {
		if v, ok := present[name]; fields.required[name] && (!ok || string(v) == "null") {
			return fmt.Errorf("decode data: field %q is missing", name)
		}
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}

// payloadFields are a payload struct's JSON keys in declaration order and
// whether each is required (has no omitempty).
type payloadFields struct {
	names    []string
	required map[string]bool
}

func jsonFields(t reflect.Type) payloadFields {
	f := payloadFields{required: map[string]bool{}}
	for i := 0; i < t.NumField(); i++ {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f.names = append(f.names, name)
		f.required[name] = !strings.Contains(","+opts+",", ",omitempty,")
	}
	return f
}

// ParseBucket reads and validates a TypeBucket event.
func ParseBucket(e event.Event) (Bucket, error) {
	var b Bucket
	if err := decodeStrict(e, &b); err != nil {
		return b, BadRequest("bucket event %s: %v", Clip(e.ID(), MaxQuoted), err)
	}
	if err := buckets.Validate(b.Buckets); err != nil {
		return b, BadRequest("bucket event %s: buckets: %v", Clip(e.ID(), MaxQuoted), err)
	}
	if b.Bucket < 0 || b.Bucket >= b.Buckets {
		return b, BadRequest("bucket event %s: bucket %d out of range [0, %d)", Clip(e.ID(), MaxQuoted), b.Bucket, b.Buckets)
	}
	if b.Cycle <= 0 {
		return b, BadRequest("bucket event %s: cycle %d: want the tick time in unix milliseconds", Clip(e.ID(), MaxQuoted), b.Cycle)
	}
	if b.Deadline.IsZero() {
		return b, BadRequest("bucket event %s: deadline missing", Clip(e.ID(), MaxQuoted))
	}
	return b, nil
}

// Bounds are what a bucket event is held to on arrival, by the receiving
// replica's clock.
type Bounds struct {
	Now time.Time
	// Skew is how far ahead of Now a cycle may be (MAX_CLOCK_SKEW).
	Skew time.Duration
	// Deadline is the longest a bucket may be decided after its cycle
	// (BUCKET_DEADLINE).
	Deadline time.Duration
}

// Bound holds b to the clock. A cycle ahead of the clock by more than the
// skew is a 400: it would be stored as each version's last applied cycle,
// and every real cycle until then would be skipped as a replay. A deadline
// later than cycle + the bucket deadline is cut back to it, so an old cycle
// is dropped as late whatever deadline its event claims.
func (b Bucket) Bound(eventID string, l Bounds) (Bucket, error) {
	tick := time.UnixMilli(b.Cycle)
	if ahead := tick.Sub(l.Now); ahead > l.Skew {
		return b, BadRequest("bucket event %s: cycle %s is %s ahead of this replica's clock, beyond MAX_CLOCK_SKEW=%s",
			Clip(eventID, MaxQuoted), FormatCycle(b.Cycle), ahead.Round(time.Millisecond), l.Skew)
	}
	if last := tick.Add(l.Deadline); b.Deadline.After(last) {
		b.Deadline = last
	}
	return b, nil
}

// ParseActivate reads and validates a TypeActivate event.
func ParseActivate(e event.Event) (Activate, error) {
	var a Activate
	if err := decodeStrict(e, &a); err != nil {
		return a, BadRequest("activate event %s: %v", Clip(e.ID(), MaxQuoted), err)
	}
	for _, id := range []struct {
		field, value string
		optional     bool
	}{{"functionId", a.FunctionID, false}, {"functionVersionId", a.FunctionVersionID, false}, {"ncaId", a.NcaID, true}} {
		if (id.value != "" || !id.optional) && !ids.Valid(id.value) {
			return a, BadRequest("activate event %s: %s %s: want %s", Clip(e.ID(), MaxQuoted), id.field, q(id.value), ids.Rule)
		}
	}
	return a, nil
}

// CycleOf returns the cycle of a PingSource tick: its event time truncated
// to the second, in unix milliseconds. Retries of the same tick keep the
// event time, so they map to the same cycle. A tick without a time uses now
// (the receive time).
//
// A tick more than skew ahead of now is clamped to now (clamped reports it)
// rather than refused. Its cycle becomes every version's last applied cycle,
// so a far-future one would make every real cycle after it look like a
// replay until the state rows expire. Refusing it would be no better: a
// PingSource whose clock runs ahead would then stop discovery altogether,
// while the tick still means what it always means, "run a cycle now".
// Within skew the tick's own time stands, so retries keep their cycle.
func CycleOf(e event.Event, now time.Time, skew time.Duration) (cycle int64, clamped bool) {
	t := e.Time()
	if t.IsZero() {
		t = now
	}
	if t.Sub(now) > skew {
		t, clamped = now, true
	}
	return t.Truncate(time.Second).UnixMilli(), clamped
}

// FormatCycle renders a cycle for logs and replies.
func FormatCycle(cycle int64) string {
	return strconv.FormatInt(cycle, 10) + " (" + time.UnixMilli(cycle).UTC().Format(time.RFC3339) + ")"
}

// NewReply builds a result event whose id derives from the event it answers,
// so a retried request yields a recognisably identical reply.
func NewReply(in event.Event, typ string, payload any) (*event.Event, error) {
	out := event.New()
	out.SetID(in.ID() + "/result")
	out.SetType(typ)
	out.SetSource(Source)
	out.SetTime(time.Now().UTC())
	if err := out.SetData(event.ApplicationJSON, payload); err != nil {
		return nil, fmt.Errorf("encode %s reply: %w", typ, err)
	}
	return &out, nil
}
