package tsdb

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/tlsfiles"
)

func TestParseResponse(t *testing.T) {
	body := `{"status":"success","warnings":["partial"],"data":{"resultType":"matrix","result":[
		{"metric":{"function_id":"f"},"values":[[1700000000,"1.5"],[1700000060.5,"NaN"],[1700000120,"+Inf"],[1700000180,"-Inf"]]}]}}`
	s, w, apiErr, err := parseStream([]byte(body))
	require.NoError(t, err)
	require.Nil(t, apiErr)
	require.Equal(t, Warnings{"partial"}, w)
	require.Len(t, s, 1)
	require.Equal(t, "f", s[0].Labels["function_id"])
	v := s[0].Samples
	require.Equal(t, 1.5, v[0].Value)
	require.True(t, math.IsNaN(v[1].Value))
	require.Equal(t, time.UnixMilli(1700000060500).UTC(), v[1].At)
	require.True(t, math.IsInf(v[2].Value, 1))
	require.True(t, math.IsInf(v[3].Value, -1))

	s, _, _, err = parseStream([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"3"]}]}}`))
	require.NoError(t, err)
	require.Equal(t, 3.0, s[0].Samples[0].Value)

	s, _, _, err = parseStream([]byte(`{"status":"success","data":{"resultType":"matrix","result":[]}}`))
	require.NoError(t, err)
	require.Empty(t, s, "no series is an empty answer, not an error")

	_, _, apiErr, err = parseStream([]byte(`{"status":"error","errorType":"bad_data","error":"parse error at char 5"}`))
	require.NoError(t, err)
	require.Equal(t, "bad_data", apiErr.ErrorType)

	for name, bad := range map[string]string{
		"not json":     `<html>`,
		"bad value":    `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}`,
		"number value": `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}`,
		"bad ts":       `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":["a","2"]}]}}`,
		"no value":     `{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}`,
		"type":         `{"status":"success","data":{"resultType":"streams","result":[]}}`,
		"data":         `{"status":"success","data":[]}`,
	} {
		_, _, _, err := parseStream([]byte(bad))
		require.Error(t, err, name)
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"NaN"]]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"+Inf"]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}`))
	f.Add([]byte(`{"status":"error","errorType":"timeout","error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _, apiErr, err := parseStream(b)
		if err == nil && apiErr == nil {
			for _, ser := range s {
				require.NotNil(t, ser.Labels)
			}
		}
	})
}

func newTestClient(t *testing.T, url string, mod func(*Config)) *Client {
	cfg := Config{URL: url, MaxAttempts: 3, MaxBackoff: 20 * time.Millisecond, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

const okBody = `{"status":"success","data":{"resultType":"vector","result":[]}}`

func TestRetriesOnlyWhatCanSucceed(t *testing.T) {
	cases := []struct {
		name      string
		statuses  []int
		wantCalls int32
		wantErr   bool
		retryable bool
	}{
		{"503 then ok", []int{503, 200}, 2, false, false},
		{"429 then ok", []int{429, 200}, 2, false, false},
		{"500 always", []int{500, 500, 500, 500}, 3, true, true},
		{"400 never retried", []int{400, 200}, 1, true, false},
		{"422 never retried", []int{422, 200}, 1, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				require.Equal(t, http.MethodPost, r.Method)
				require.Equal(t, "application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
				require.NoError(t, r.ParseForm())
				require.Equal(t, "up", r.PostForm.Get("query"), "the query travels in the body")
				st := c.statuses[min(int(n), len(c.statuses))-1]
				w.WriteHeader(st)
				if st == 200 {
					w.Write([]byte(okBody))
				} else {
					w.Write([]byte(`{"status":"error","errorType":"server","error":"boom"}`))
				}
			}))
			defer srv.Close()
			cl := newTestClient(t, srv.URL, nil)
			_, _, err := cl.Query(context.Background(), "up", time.Now())
			require.Equal(t, c.wantCalls, calls.Load())
			if c.wantErr {
				require.Error(t, err)
				require.Equal(t, c.retryable, Retryable(err))
				require.Contains(t, err.Error(), "boom")
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, int64(1), cl.Queries(), "one logical query however many attempts")
		})
	}
}

func TestConnectionRefusedIsRetriedAndReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	cl := newTestClient(t, "http://"+addr, nil)
	_, _, err = cl.QueryRange(context.Background(), "up", time.Now().Add(-time.Minute), time.Now(), time.Minute)
	require.Error(t, err)
	require.True(t, Retryable(err))
	var qe *QueryError
	require.ErrorAs(t, err, &qe)
	require.Equal(t, 3, qe.Attempts)
}

func TestTokenIsReadFromFileRotatedAndNeverLeaked(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokFile, []byte("s3cret-one\n"), 0o600))
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "Bearer s3cret-two" {
			w.Write([]byte(okBody))
			return
		}
		w.WriteHeader(401)
		w.Write([]byte("unauthorized"))
	}))
	defer srv.Close()
	cl := newTestClient(t, srv.URL, func(c *Config) { c.Auth, c.TokenFile = "token", tokFile })
	_, _, err := cl.Query(context.Background(), "up", time.Now())
	require.Error(t, err)
	require.Equal(t, "Bearer s3cret-one", seen.Load())
	require.NotContains(t, err.Error(), "s3cret")

	// Rotation: a new file content (and mtime) is picked up without restart.
	require.NoError(t, os.WriteFile(tokFile, []byte("s3cret-two"), 0o600))
	future := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(tokFile, future, future))
	_, _, err = cl.Query(context.Background(), "up", time.Now())
	require.NoError(t, err)
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "victoria:8428"},
		{URL: "http://x", Auth: "basic"},
		{URL: "http://x", Auth: "token"},
		{URL: "http://x", Auth: "token", TokenFile: "/nonexistent"},
		{URL: "http://x", Auth: "mtls", TLS: tlsfiles.Files{CertFile: "/nonexistent", KeyFile: "/nonexistent"}},
		{URL: "http://x", Auth: "mtls"},
	} {
		_, err := New(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

func TestSelectorsEscapeIDsAndChunk(t *testing.T) {
	vs := []FunctionVersion{{FunctionVersionID: "a.b"}, {FunctionVersionID: "c|d"}, {FunctionVersionID: "a.b"}}
	chunks := chunkIDs(vs, 1<<20)
	require.Equal(t, []idChunk{{{`a\.b`, `c\|d`}}}, chunks)
	require.Equal(t, `"a\\.b"`, quote(`a\.b`), "PromQL strings escape backslashes")
	many := make([]FunctionVersion, 100)
	for i := range many {
		many[i].FunctionVersionID = strings.Repeat("x", 30) + string(rune('A'+i%26)) + string(rune('a'+i/26))
	}
	chunks = chunkIDs(many, 400)
	require.Greater(t, len(chunks), 1)
	total := 0
	for _, c := range chunks {
		alternation := c.union("l", balancedOr, func(m string) string { return m })
		require.LessOrEqual(t, len(alternation), 400+len(`l=~""`), "the id list stays within the limit")
		total += len(strings.Split(alternation, "|"))
	}
	require.Equal(t, 100, total)
	_, err := LabelFilter{Name: "bad-name", Value: "x"}.matcher()
	require.Error(t, err)
}

// Ids go out sorted whatever order the bucket's rows came in (Cassandra's
// token order): the TSDB's regexp engine factors the prefixes of sorted
// neighbours, which keeps a scan of every value of the label cheap.
func TestSelectorsSortIDs(t *testing.T) {
	vs := []FunctionVersion{{FunctionVersionID: "c1"}, {FunctionVersionID: "a2"}, {FunctionVersionID: "b3"}, {FunctionVersionID: "a1"}, {FunctionVersionID: "c1"}}
	require.Equal(t, []idChunk{{{"a1", "a2", "b3", "c1"}}}, chunkIDs(vs, 1<<20))
	require.Equal(t, []idChunk{{{"a1", "a2"}}, {{"b3", "c1"}}}, chunkIDs(vs, 5), "chunks are consecutive runs of the sorted ids")
	require.Equal(t, "c1", vs[0].FunctionVersionID, "the caller's slice is left as it was")
}

// A chunk's ids are matched in groups of lookupGroup, the most the TSDB
// looks up value by value, and the query is the union of one expression
// per group: one query per chunk still.
func TestSelectorsGroupIDsIntoUnion(t *testing.T) {
	vs := make([]FunctionVersion, 2*lookupGroup+5)
	for i := range vs {
		vs[i].FunctionVersionID = fmt.Sprintf("v%03d", i)
	}
	chunks := chunkIDs(vs, 1<<20)
	require.Len(t, chunks, 1)
	require.Equal(t, []int{lookupGroup, lookupGroup, 5}, []int{len(chunks[0][0]), len(chunks[0][1]), len(chunks[0][2])})
	count := func(m string) string { return "count(x{" + m + "})" }
	q := chunks[0].union("function_version_id", balancedOr, count)
	group := func(from, to int) string {
		var ids []string
		for i := from; i < to; i++ {
			ids = append(ids, fmt.Sprintf("v%03d", i))
		}
		return `count(x{function_version_id=~"` + strings.Join(ids, "|") + `"})`
	}
	require.Equal(t, "("+group(0, 20)+") or (("+group(20, 40)+") or ("+group(40, 45)+"))", q, "a balanced tree of or")
	require.Equal(t, "union("+group(0, 20)+", "+group(20, 40)+", "+group(40, 45)+")", chunks[0].union("function_version_id", unionOf, count),
		"or MetricsQL's union, one call")
	for _, join := range []func([]string) string{balancedOr, unionOf} {
		require.Equal(t, `count(x{function_version_id=~"v000"})`, idChunk{{"v000"}}.union("function_version_id", join, count),
			"one group renders the expression alone")
	}
}
