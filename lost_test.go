package function

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"function/shared/store"
	"function/shared/telemetry"
)

// What an operator sees of a lost Cassandra answer: a WARN line when the
// read-back at SERIAL settled it, an ERROR line when it could not, and the
// lost-answers counter by op, cause and resolution. (The store's tests
// provoke the losses on the real Cassandra; this checks the wiring.)
func TestLostAnswersAreLoggedAndCounted(t *testing.T) {
	var logs bytes.Buffer
	f := &Function{log: slog.New(slog.NewJSONHandler(&logs, nil)), metrics: telemetry.NewMetrics()}
	timeout := errors.New("gocql: no response received from cassandra within timeout period")
	f.lostAnswer(store.LostAnswer{Op: "acquire", Name: "discovery", Cause: "client_timeout", Err: timeout, Resolved: "applied"})
	f.lostAnswer(store.LostAnswer{Op: "record", Name: "f/v", Cause: "write_timeout", Err: timeout, Resolved: "unknown", ReadErr: timeout})

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2)
	var settled, unknown map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &settled))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &unknown))
	require.Equal(t, "WARN", settled["level"])
	require.Equal(t, "cassandra answer lost; settled by a read at SERIAL", settled["msg"])
	require.Equal(t, "applied", settled["resolved"])
	require.Equal(t, "discovery", settled["name"])
	require.Equal(t, "ERROR", unknown["level"])
	require.Equal(t, "unknown", unknown["resolved"])
	require.Contains(t, unknown, "read_error")

	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.LostAnswers.WithLabelValues("acquire", "client_timeout", "applied")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.LostAnswers.WithLabelValues("record", "write_timeout", "unknown")))
}
