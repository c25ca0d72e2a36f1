package function

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"function/shared/config"
)

// What the CloudEvents SDK refused before our code ran (issue 15, defect 9)
// and bodies over the limit (defect 5), through the function's real HTTP
// entry point: each gets its status, a message saying what to fix, and
// exactly one log line.

// refusals counts the function's "event refused" log lines.
func refusals(t *testing.T, logPath string) []string {
	t.Helper()
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"msg":"event refused"`) {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestMalformedRequestsGetAStatusAMessageAndOneLogLine(t *testing.T) {
	addr, _, logPath := unreadyFunction(t, nil)
	url := "http://" + addr + "/"
	binary := func(mod map[string]string) map[string]string {
		hdr, _ := activation("bad-1")
		for k, v := range mod {
			if v == "" {
				delete(hdr, k)
				continue
			}
			hdr[k] = v
		}
		return hdr
	}
	const payload = `{"functionId":"f","functionVersionId":"v"}`
	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(payload))
	require.NoError(t, zw.Close())

	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		body   string
		status int
		says   []string
	}{
		{"empty Ce-Id", "POST", map[string]string{"Ce-Id": " ", "Ce-Specversion": "1.0", "Ce-Source": "s", "Ce-Type": "t", "Content-Type": "application/json"},
			payload, 400, []string{"malformed CloudEvent (binary mode)", "id is required to be a non-empty string"}},
		{"invalid Ce-Time", "POST", binary(map[string]string{"Ce-Time": "yesterday"}), payload, 400,
			[]string{"malformed CloudEvent (binary mode)", "yesterday"}},
		{"batch mode", "POST", map[string]string{"Content-Type": "application/cloudevents-batch+json"},
			`[{"specversion":"1.0","id":"b","source":"s","type":"t"}]`, 400, []string{"batch mode", "one event per request"}},
		{"empty structured body", "POST", structured, "", 400, []string{"malformed CloudEvent (structured mode)"}},
		{"structured body that is not JSON", "POST", structured, `{"specversion":"1.0","id":`, 400,
			[]string{"malformed CloudEvent (structured mode)"}},
		{"binary mode without specversion", "POST", binary(map[string]string{"Ce-Specversion": ""}), payload, 415,
			[]string{"not a CloudEvent", "Ce-Specversion", `"application/json"`}},
		{"gzip", "POST", binary(map[string]string{"Content-Encoding": "gzip"}), gz.String(), 415,
			[]string{`Content-Encoding "gzip" is not supported`, "uncompressed"}},
		{"GET", "GET", nil, "", 405, []string{"method GET", "POST"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(refusals(t, logPath))
			req, err := http.NewRequest(c.method, url, strings.NewReader(c.body))
			require.NoError(t, err)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, c.status, resp.StatusCode, "%s", b)
			for _, s := range c.says {
				require.Contains(t, string(b), s)
			}
			lines := refusals(t, logPath)
			require.Len(t, lines, before+1, "exactly one log line per refused request")
			require.Contains(t, lines[len(lines)-1], `"status":`+strconv.Itoa(c.status))
			quoted, _ := json.Marshal(c.says[0]) // as it appears in a JSON log line
			require.Contains(t, lines[len(lines)-1], strings.Trim(string(quoted), `"`))
		})
	}

	// A well-formed event still reaches the handler: not ready, 503, and
	// no refusal logged.
	before := len(refusals(t, logPath))
	hdr, body := activation("good-1")
	status, msg := post(t, url, hdr, body)
	require.Equal(t, http.StatusServiceUnavailable, status, msg)
	require.Len(t, refusals(t, logPath), before)
}

// readBytes is how many bytes the process has read through read(2)-like
// calls so far, sockets included (/proc/PID/io rchar).
func readBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no rchar in /proc/%d/io", pid)
	return 0
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A body over MAX_EVENT_BYTES is a 413 without being read whole: the
// process reads a bounded number of bytes of a 256 MiB body, whether its
// length is declared or not. (Before, a 200 MB body was read whole: RSS 25
// -> 550 MB.)
func TestBodyOverTheLimitIsRefusedUnread(t *testing.T) {
	const limit = 4096
	addr, pid, logPath := unreadyFunction(t, map[string]string{"MAX_EVENT_BYTES": strconv.Itoa(limit)})
	url := "http://" + addr + "/"
	const huge = 256 << 20
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprintf("length declared %v", declared), func(t *testing.T) {
			hdr, _ := activation("huge")
			req, err := http.NewRequest(http.MethodPost, url, io.LimitReader(zeros{}, huge))
			require.NoError(t, err)
			req.ContentLength = -1 // chunked
			if declared {
				req.ContentLength = huge
			}
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			before := readBytes(t, pid)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err, "the 413 arrives while the body is still being sent")
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			read := readBytes(t, pid) - before
			require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s", b)
			require.Contains(t, string(b), "MAX_EVENT_BYTES=4096")
			// The limit, plus what net/http drains before closing (256 KiB)
			// and the socket's buffers: far from the 256 MiB sent.
			require.Less(t, read, int64(8<<20), "bytes the function read of a %d-byte body", huge)
			t.Logf("the function read %d bytes of a %d-byte body", read, huge)
		})
	}
	lines := refusals(t, logPath)
	require.Len(t, lines, 2)

	// The limit itself: a body of exactly MAX_EVENT_BYTES is read and
	// parsed (here: not JSON, 400), one byte more is not.
	hdr, _ := activation("edge")
	status, msg := post(t, url, hdr, strings.Repeat(" ", limit))
	require.Equal(t, http.StatusBadRequest, status, msg)
	status, msg = post(t, url, hdr, strings.Repeat(" ", limit+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, msg)
}

// The default limit is sized to the largest event the autoscaler is sent:
// an activation in structured mode with every id at its 128-character
// maximum and the attributes a Broker adds. It fits 30 times over, and is
// accepted (the not-ready 503) by the default configuration.
func TestTheLargestLegitimateEventFitsTheDefaultLimit(t *testing.T) {
	id := strings.Repeat("a", 128)
	largest := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/apis/v1/namespaces/nvcf-invocation/apiserversources/%s",`+
		`"type":"com.nvidia.nvcf.autoscaler.function.activate","subject":%q,"time":"2026-11-30T08:00:00.123456789Z",`+
		`"datacontenttype":"application/json","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",`+
		`"tracestate":%q,"knativearrivaltime":"2026-11-30T08:00:00.123456789Z","knativebrokerttl":"255",`+
		`"data":{"functionId":%q,"functionVersionId":%q,"ncaId":%q}}`,
		id+"-"+id, id, id, strings.Repeat("v", 256), id, id, id)
	field, ok := reflect.TypeOf(config.Common{}).FieldByName("MaxEventBytes")
	require.True(t, ok)
	limit, err := strconv.Atoi(field.Tag.Get("default"))
	require.NoError(t, err)
	require.Less(t, len(largest)*30, limit, "the largest legitimate event is %d bytes", len(largest))
	t.Logf("largest legitimate event: %d bytes; MAX_EVENT_BYTES default %d", len(largest), limit)

	addr, _, _ := unreadyFunction(t, nil)
	status, msg := post(t, "http://"+addr+"/", map[string]string{"Content-Type": "application/cloudevents+json"}, largest)
	require.Equal(t, http.StatusServiceUnavailable, status, msg)
	require.Contains(t, msg, "not ready")
}
