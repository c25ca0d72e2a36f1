package function

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/harness"
)

// The receiver's tests need no server: the function is started with
// Cassandra and the TSDB unreachable, so it never becomes ready, and every
// event is still parsed and answered (a malformed one with a 400, a valid
// one with a 503) through the same HTTP entry point kn func serves.

// unreadyFunction starts the function binary with no reachable dependency
// and waits until it serves HTTP. extra adds or overrides settings.
func unreadyFunction(t *testing.T, extra map[string]string) (addr string, pid int, logPath string) {
	t.Helper()
	bin := funcBinary(t)
	addr, err := harness.FreeAddr()
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LISTEN_ADDRESS="+addr, "CASSANDRA_HOSTS=127.0.0.1:1", "TSDB_URL=http://127.0.0.1:1",
		"K_SINK=http://127.0.0.1:9", "NVCF_DRY_RUN=true")
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logPath = filepath.Join(t.TempDir(), "function.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/health/liveness")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "the function never served /health/liveness; log %s", logPath)
	return addr, cmd.Process.Pid, logPath
}

// activation is a well-formed binary-mode event: it passes validation and
// gets the not-ready 503, so the whole receive path runs.
func activation(id string) (map[string]string, string) {
	return map[string]string{
		"Ce-Id": id, "Ce-Specversion": "1.0", "Ce-Source": "wedge-test",
		"Ce-Type": "com.nvidia.nvcf.autoscaler.function.activate", "Content-Type": "application/json",
	}, `{"functionId":"f","functionVersionId":"v"}`
}

// rawRequest is an HTTP/1.1 POST of the event, as bytes for a raw
// connection.
func rawRequest(addr string, hdr map[string]string, body string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", addr, len(body))
	for k, v := range hdr {
		fmt.Fprintf(&sb, "%s: %s\r\n", k, v)
	}
	sb.WriteString("\r\n" + body)
	return sb.String()
}

// The CloudEvents SDK's HTTP receive handler (sdk-go v2.16, which func-go's
// CloudEvents runtime serves through) pairs each request with a receiver
// goroutine across one shared unbuffered channel; a receiver whose request
// is cancelled before it picks up a message leaves a message unpaired, and
// from then on every request waits for the next one to arrive to be
// answered (cloudevents/sdk-go#1224, #1332). For discovery, which gets one
// tick a minute, that is every cycle a minute late.
//
// The test storms the function with concurrent events, most of them
// cancelled by their clients mid-flight (connections closed or reset right
// after the request is written, contexts cancelled at random moments), and
// after each round sends one event with nothing else in flight: it must be
// answered on its own. A wedged receiver answers it only when another
// request arrives, so it fails there. Against the SDK's receiver one round
// of 400 requests wedges it with a probability of roughly 1 in 10 on a
// 2-core machine (measured: 1 to 19 rounds), hence the rounds.
func TestCancelledRequestsCannotWedgeTheReceiver(t *testing.T) {
	addr, _, logPath := unreadyFunction(t, nil)
	url := "http://" + addr + "/"
	const rounds, workers, perWorker = 40, 8, 50
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				client := &http.Client{}
				defer client.CloseIdleConnections()
				for i := 0; i < perWorker; i++ {
					hangUp(addr, url, client, fmt.Sprintf("storm-%d-%d-%d", round, w, i), i%8)
				}
			}(w)
		}
		wg.Wait()
		requireAnsweredAlone(t, url, fmt.Sprintf("after-%d", round), logPath)
	}
}

// hangUp sends one activation event in one of eight ways, six of which
// abandon it mid-flight.
func hangUp(addr, url string, client *http.Client, id string, way int) {
	hdr, body := activation(id)
	switch way {
	case 0, 1, 2, 3: // the client hangs up (FIN, or RST for odd ways) right after writing
		if way >= 2 {
			body = "" // an empty body: the server watches the connection at once
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, rawRequest(addr, hdr, body))
		if way%2 == 1 {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		_ = c.Close()
	case 4, 5: // the client gives up at a random moment
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(1000))*time.Microsecond)
		defer cancel()
		send(ctx, client, url, hdr, body)
	default: // an ordinary delivery, waited for (not indefinitely: the receiver may be wedged)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		send(ctx, client, url, hdr, body)
	}
}

func send(ctx context.Context, client *http.Client, url string, hdr map[string]string, body string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if resp, err := client.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// requireAnsweredAlone sends one event on a fresh connection, with nothing
// else in flight, and requires its answer (the not-ready 503) within a
// second; the function answers it in well under a millisecond, and a wedged
// receiver never does.
func requireAnsweredAlone(t *testing.T, url, id, logPath string) {
	t.Helper()
	hdr, body := activation(id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("event %s, alone in flight, was not answered within a second (%v): the receiver is wedged; log %s:\n%s",
			id, err, logPath, tailLines(logPath, 10))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a valid event waits for readiness: %s", b)
	require.Contains(t, string(b), "not ready")
}

func tailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
