package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/nvcf"
	"function/shared/testenv"
)

// An NVCF HTTP API behind a private CA the deployment was not given: the
// bucket answers 503 (a retry can help once the deployment is fixed), each
// version's decision log names NVCF_API_CA_FILE, and nothing is recorded
// as applied. The same bucket event redelivered to a process given the
// right CA writes every version once, and a second redelivery writes
// nothing: no write is lost and none is made twice.
func TestHTTPSWriteFailureIsRetriedAndWrittenOnceFixed(t *testing.T) {
	f := setup(t, 3)
	certs := testenv.Certs(t)
	serverTLS, err := nvcfsim.ServerTLS(certs.PEM("server"), certs.PEM("server-key"), "")
	require.NoError(t, err)
	sim, err := nvcfsim.Start(nvcfsim.Options{HTTPTLS: serverTLS})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close(context.Background()) })
	for _, v := range f.versions {
		sim.Register(nvcfsim.FunctionVersion{FunctionID: v.FunctionID, VersionID: v.FunctionVersionID, NcaID: v.NcaID, Status: nvcfsim.StatusActive,
			Specs: []nvcfsim.DeploymentSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 50}}})
	}
	client := func(ca string) *nvcf.Client {
		s := f.settings.Scale
		s.NVCFURL, s.NVCFAPICAFile = sim.HTTPURL(), certs.PEM(ca)
		c, err := nvcf.New(nvcf.Config{Transport: nvcf.TransportHTTP, BaseURL: s.NVCFURL, APITLS: s.NVCFAPITLSFiles(),
			BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	var mu sync.Mutex
	var logs bytes.Buffer
	handler := func(c *nvcf.Client) *Handler {
		h, err := New(Deps{Settings: f.settings, Store: f.store, TSDB: f.tsdb, NVCF: c,
			Log: slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))})
		require.NoError(t, err)
		return h
	}
	cycle := time.Now()

	_, err = handler(client("other-ca")).HandleBucket(context.Background(), bucketEvent(cycle))
	require.Equal(t, http.StatusServiceUnavailable, statusOf(err), "%v", err)
	require.ErrorContains(t, err, "3 of 3 NVCF writes failed")
	require.Empty(t, sim.Writes(), "nothing reached the API")
	failed := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, Action, Error string }
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if rec.Msg == "decision" {
			require.Equal(t, "error", rec.Action)
			require.Contains(t, rec.Error, `the server's certificate is not signed by the CA of NVCF_API_CA_FILE="`+certs.PEM("other-ca")+`"`)
			failed++
		}
	}
	require.Equal(t, 3, failed)
	for _, v := range f.versions {
		st, err := f.store.ReadState(context.Background(), v.VersionKey)
		require.NoError(t, err)
		require.False(t, st.HasLastRequested, "%s: a failed write is not recorded as applied", v.FunctionID)
		require.False(t, st.Claim.Held(), "%s: the failed write's claim is given up, so the retry can write", v.FunctionID)
	}

	// The operator fixes the CA; Knative redelivers the same event.
	fixed := handler(client("ca"))
	reply, err := fixed.HandleBucket(context.Background(), bucketEvent(cycle))
	require.NoError(t, err)
	require.Equal(t, 3, decode(t, reply).Written)
	written := map[string]int{}
	for _, w := range sim.Writes() {
		written[w.FunctionID]++
	}
	for _, v := range f.versions {
		require.Equal(t, 1, written[v.FunctionID], v.FunctionID)
	}
	reply, err = fixed.HandleBucket(context.Background(), bucketEvent(cycle))
	require.NoError(t, err)
	require.Zero(t, decode(t, reply).Written)
	require.Len(t, sim.Writes(), 3, "a replay writes nothing")
}
