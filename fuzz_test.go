package function

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"function/shared/config"
	"function/shared/events"
)

// roles are the processes FuzzRoute routes through, by the fuzzed role
// byte.
var roles = []config.Role{config.RoleAll, config.RoleDiscovery, config.RoleScale}

// FuzzRoute sends events of a fuzzed type, id, content type and data through
// the function's entry (Handle, the receiver and route) in a process of each
// role that has loaded its configuration but never reached Cassandra or the
// TSDB: what the "unknown type" tests run against, without the process.
// What no retry can fix (an unknown type, a role this process does not
// serve, a payload the parsers refuse, a cycle beyond the skew) must be a
// 400 saying so, and everything else the not-ready 503 that has Knative
// redeliver it: never a 500, never a 503 for an event a retry cannot fix,
// never a 400 for one it can. No answer is longer than the 1 KiB message
// bound.
//
// Start is not called: it dials the dependencies in the background and
// logs to stderr; the receiver comes from newReceiver, as Start's does,
// with route wrapped to take the expectation, and logs nowhere.
func FuzzRoute(f *testing.F) {
	functions := make([]*Function, len(roles))
	for i, role := range roles {
		s, err := config.Load(map[string]string{
			"AUTOSCALER_ROLE": string(role), "TSDB_URL": "http://127.0.0.1:1", "CASSANDRA_HOSTS": "127.0.0.1:1",
			"K_SINK": "http://127.0.0.1:9", "NVCF_DRY_RUN": "true",
		})
		require.NoError(f, err)
		functions[i] = &Function{settings: s, log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	}

	seed := func(role uint8, typ, data string) {
		f.Add(role, typ, "curl-1", "application/json", []byte(data))
	}
	for role := range uint8(len(roles)) {
		seed(role, "com.example.unknown", `{}`)
		seed(role, events.TypePing, `{"message":"tick"}`)
		seed(role, events.TypeBucket, `{"bucket":"x"}`)
		seed(role, events.TypeBucket, `{"bucket":9,"buckets":4,"cycle":1,"deadline":"2030-01-01T00:00:00Z"}`)
		seed(role, events.TypeBucket, `{"bucket":0,"buckets":1,"cycle":1700000000000,"deadline":"2026-01-01T00:00:00Z"}`)
		seed(role, events.TypeBucket, `{"bucket":0,"buckets":1,"cycle":4102444800000,"deadline":"2100-01-01T00:01:00Z"}`)
		seed(role, events.TypeActivate, `{"functionId":"a b","functionVersionId":"v"}`)
		seed(role, events.TypeActivate, `{"functionId":"f","functionVersionId":"v"}`)
	}
	seed(0, strings.Repeat("t", 2000), `{}`)
	seed(0, events.TypeActivate, `{"functionId":"`+strings.Repeat("x", 4<<10)+`","functionVersionId":"v"}`)
	f.Add(uint8(0), events.TypeBucket, strings.Repeat("i", 2000), "application/json", []byte(`{"bucket":"x"}`))
	f.Add(uint8(2), events.TypeBucket, "curl-1", "text/plain", []byte(`bucket=1`))
	f.Add(uint8(1), events.TypePing, "curl-1", "", []byte(nil))

	f.Fuzz(func(t *testing.T, role uint8, typ, id, contentType string, data []byte) {
		fn := functions[int(role)%len(functions)]
		var routed bool
		var retryable, again bool
		var reason string
		fn.receiver.Store(fn.newReceiver(func(ctx context.Context, e event.Event) (*event.Event, error) {
			routed = true
			// A bucket's cycle is held to the clock: at the edge of the
			// skew, the answer may depend on when it is read, so the
			// expectation is taken on both sides of route.
			retryable, reason = fn.expect(e)
			defer func() { again, _ = fn.expect(e) }()
			return fn.route(ctx, e)
		}))
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(data)))
		req.Header = http.Header{"Ce-Specversion": {"1.0"}, "Ce-Source": {"curl"}, "Ce-Id": {id}, "Ce-Type": {typ}}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		fn.Handle(w, req)

		answer := w.Body.String()
		require.LessOrEqual(t, len(answer), maxAnswer, "answer of %d bytes: %.300q", len(answer), answer)
		if !routed {
			// The receiver's refusals (FuzzServeHTTP holds them to theirs).
			require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}, w.Code, "%.300q", answer)
			return
		}
		if again != retryable {
			t.Skip("the clock crossed the skew's edge during route")
		}
		if retryable {
			require.Equal(t, http.StatusServiceUnavailable, w.Code, "a retry can fix %s %.300q: %.300q", typ, data, answer)
			require.Contains(t, answer, "not ready")
			return
		}
		require.Equal(t, http.StatusBadRequest, w.Code, "no retry fixes %s %.300q (%s): %.300q", typ, data, reason, answer)
		require.Contains(t, answer, reason)
	})
}

// maxAnswer is the longest answer's body: events.BadRequest's 1024 bytes
// and Clip's note of the whole length.
var maxAnswer = 1024 + len(fmt.Sprintf("...(%d bytes)", int64(1<<63-1)))

// expect says what route must answer e: whether a retry can fix it (then
// it waits for readiness: a 503), or else what the 400 says. It is route's
// contract restated from the outside: the type, the role that serves it,
// and the events package's parsers.
func (f *Function) expect(e event.Event) (retryable bool, reason string) {
	var served config.Role
	switch e.Type() {
	case events.TypePing:
		served = config.RoleDiscovery
	case events.TypeBucket, events.TypeActivate:
		served = config.RoleScale
	default:
		return false, "unknown event type"
	}
	if !f.settings.Role.Serves(served) {
		return false, "is not served by role"
	}
	switch e.Type() {
	case events.TypeBucket:
		b, err := events.ParseBucket(e)
		if err != nil {
			return false, "bucket event"
		}
		if _, err := b.Bound(e.ID(), events.Bounds{Now: time.Now(), Skew: f.settings.ClockSkew, Deadline: f.settings.Discovery.BucketDeadline}); err != nil {
			return false, "MAX_CLOCK_SKEW"
		}
	case events.TypeActivate:
		if _, err := events.ParseActivate(e); err != nil {
			return false, "activate event"
		}
	}
	return true, ""
}
