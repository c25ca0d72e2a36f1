package testenv

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// CaptureLogs makes slog's default logger write JSON the test reads, for
// the length of the test: each call of the function returned gives the
// lines logged since the last call. The default logger is the process's,
// so tests that use it must not run in parallel with others that log.
func CaptureLogs(t testing.TB) func() []map[string]any {
	t.Helper()
	var logged bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logged, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return func() []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("log line %q is not JSON: %v", l, err)
			}
			out = append(out, m)
		}
		logged.Reset()
		return out
	}
}
