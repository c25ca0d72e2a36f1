package tsdb

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/testenv"
)

// bearerRecorder is a TSDB that answers every query and records the
// Authorization header of each.
type bearerRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (b *bearerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.seen = append(b.seen, r.Header.Get("Authorization"))
	b.mu.Unlock()
	w.Write([]byte(okBody))
}

// sent queries through cl and returns the Authorization header the TSDB
// received.
func (b *bearerRecorder) sent(t *testing.T, cl *Client) string {
	t.Helper()
	_, _, err := cl.Query(context.Background(), "up", time.Now())
	require.NoError(t, err)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[len(b.seen)-1]
}

// A Kubernetes secret volume's update swaps a symlink to a new file. A new
// token of the old one's length, with the old file's modification time
// (written in the same second, or copied with it preserved), is the same
// to a look at time and size alone; the next query must still send it.
func TestTokenRotatedBySymlinkSwapIsSentAtTheNextQuery(t *testing.T) {
	dir := t.TempDir()
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	for name, tok := range map[string]string{"v1": "token-AAAA", "v2": "token-BBBB"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		p := filepath.Join(dir, name, "token")
		require.NoError(t, os.WriteFile(p, []byte(tok), 0o600))
		require.NoError(t, os.Chtimes(p, at, at))
	}
	tokFile := filepath.Join(dir, "token")
	require.NoError(t, os.Symlink(filepath.Join("v1", "token"), tokFile))
	rec := &bearerRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cl := newTestClient(t, srv.URL, func(c *Config) { c.Auth, c.TokenFile = "token", tokFile })
	require.Equal(t, "Bearer token-AAAA", rec.sent(t, cl))

	// The swap as the kubelet makes it: a new link renamed over the old.
	next := filepath.Join(dir, "token.new")
	require.NoError(t, os.Symlink(filepath.Join("v2", "token"), next))
	require.NoError(t, os.Rename(next, tokFile))
	require.Equal(t, "Bearer token-BBBB", rec.sent(t, cl), "the rotated token is sent at the next query")
}

// A token file caught empty or gone while it is rewritten must not fail
// queries the token read before would pass: that token is still sent, one
// log line per change says why, and the rewrite is taken once it is done.
// No line and no error carries a token.
func TestTokenFileHalfRewrittenKeepsTheLastGoodToken(t *testing.T) {
	lines := testenv.CaptureLogs(t)
	tokFile := filepath.Join(t.TempDir(), "token")
	writes := 0
	write := func(tok string) {
		require.NoError(t, os.WriteFile(tokFile, []byte(tok), 0o600))
		// A new mtime for every write, whatever the file system's
		// timestamp resolution.
		writes++
		at := time.Now().Add(time.Duration(writes) * time.Second)
		require.NoError(t, os.Chtimes(tokFile, at, at))
	}
	write("s3cret-one\n")
	rec := &bearerRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cl := newTestClient(t, srv.URL, func(c *Config) { c.Auth, c.TokenFile = "token", tokFile })
	require.Equal(t, "Bearer s3cret-one", rec.sent(t, cl))
	require.Empty(t, lines(), "reading the token at start is not a rotation")

	var all []map[string]any
	warned := func(why string) {
		t.Helper()
		got := lines()
		all = append(all, got...)
		require.Len(t, got, 1, "one line per change, not per query: %v", got)
		require.Equal(t, "WARN", got[0]["level"])
		require.Equal(t, "TSDB_TOKEN_FILE", got[0]["token_setting"])
		require.Contains(t, got[0]["error"], why)
	}
	write("\n")
	require.Equal(t, "Bearer s3cret-one", rec.sent(t, cl), "an empty rewrite keeps the token read before")
	require.Equal(t, "Bearer s3cret-one", rec.sent(t, cl))
	warned("empty")

	require.NoError(t, os.Remove(tokFile))
	require.Equal(t, "Bearer s3cret-one", rec.sent(t, cl), "a file gone during a swap keeps the token read before")
	require.Equal(t, "Bearer s3cret-one", rec.sent(t, cl))
	warned("no such file")

	write("s3cret-two")
	require.Equal(t, "Bearer s3cret-two", rec.sent(t, cl))
	require.Equal(t, "Bearer s3cret-two", rec.sent(t, cl))
	got := lines()
	require.Len(t, got, 1, "%v", got)
	require.Equal(t, "INFO", got[0]["level"])
	require.Equal(t, "TSDB_TOKEN_FILE", got[0]["token_setting"])
	require.NotContains(t, fmt.Sprint(append(all, got...)), "s3cret")
}
