package nvcf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"function/e2e/nvcfsim"
	"function/shared/nvcf/nvcfpb"
)

const (
	fid = "fn-1"
	vid = "ver-1"
)

var transports = []string{TransportHTTP, TransportGRPC}

func startSim(t *testing.T) *nvcfsim.Server {
	t.Helper()
	sim, err := nvcfsim.Start(nvcfsim.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sim.Close(context.Background())) })
	// Two specs so that clamping works on sums: min 2, max 5.
	sim.Register(nvcfsim.FunctionVersion{
		FunctionID: fid, VersionID: vid, NcaID: "nca-1",
		Specs: []nvcfsim.DeploymentSpec{
			{GPU: "L40", InstanceType: "g6.xlarge", MinInstances: 1, MaxInstances: 3},
			{GPU: "A100", InstanceType: "p4d", MinInstances: 1, MaxInstances: 2},
		},
	})
	return sim
}

// fakeTime is a clock that moves only when someone sleeps on it, so waits
// can be asserted without waiting.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return ctx.Err()
}

func (f *fakeTime) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

func (f *fakeTime) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

type observed struct{ endpoint, code string }

type recorder struct {
	mu  sync.Mutex
	obs []observed
}

func (r *recorder) observe(endpoint, code string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observed{endpoint, code})
}

func (r *recorder) codes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, o := range r.obs {
		out = append(out, o.code)
	}
	return out
}

// newClient builds a client for sim over transport with short back-off and
// a fake clock; mutate adjusts the config before New.
func newClient(t *testing.T, transport string, sim *nvcfsim.Server, mutate func(*Config)) (*Client, *fakeTime) {
	t.Helper()
	cfg := Config{
		Transport:    transport,
		BaseURL:      sim.HTTPURL(),
		GRPCAddr:     sim.GRPCAddr(),
		GRPCInsecure: true,
		Timeout:      5 * time.Second,
		BackoffBase:  10 * time.Millisecond,
		BackoffMax:   time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ft := &fakeTime{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now, c.sleep = ft.Now, ft.Sleep
	return c, ft
}

func autoscale(c *Client, n int) (Result, error) {
	return c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid, NcaID: "nca-1", Instances: n})
}

func TestAutoscaleIsRecordedAndClamped(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			c, _ := newClient(t, tr, sim, nil)
			got, ok := sim.Desired(fid, vid)
			require.True(t, ok)
			require.Equal(t, 2, got, "a new deployment runs its minimum")

			for _, tc := range []struct {
				name           string
				request, want  int
				scalingStatus  string
				expectedChange bool
			}{
				{"within limits", 4, 4, nvcfsim.ScalingApplied, true},
				{"above the sum of max", 10, 5, nvcfsim.ScalingApplied, true},
				{"same as current", 7, 5, nvcfsim.ScalingNoChange, false},
				{"below the sum of min", 1, 2, nvcfsim.ScalingApplied, true},
				{"zero", 0, 2, nvcfsim.ScalingNoChange, false},
				{"negative", -3, 2, nvcfsim.ScalingNoChange, false},
			} {
				res, err := autoscale(c, tc.request)
				require.NoError(t, err, tc.name)
				require.Equal(t, tc.request, res.Requested, tc.name)
				require.Equal(t, 1, res.Attempts, tc.name)
				require.Equal(t, tc.want, res.ActiveInstances, tc.name)
				require.Equal(t, nvcfsim.StatusActive, res.FunctionStatus, tc.name)
				require.Equal(t, tc.scalingStatus, res.ScalingStatus, tc.name)
				got, _ := sim.Desired(fid, vid)
				require.Equal(t, tc.want, got, tc.name)
				writes := sim.Writes()
				last := writes[len(writes)-1]
				require.Equal(t, tr, last.Transport, tc.name)
				require.Equal(t, tc.request, last.Requested, tc.name)
				require.Equal(t, tc.want, last.Applied, tc.name)
			}
			require.Equal(t, 6, sim.Calls(fid, vid))

			// Not ACTIVE: the API accepts the call and changes nothing.
			require.True(t, sim.SetStatus(fid, vid, nvcfsim.StatusDeploying))
			res, err := autoscale(c, 4)
			require.NoError(t, err)
			require.Equal(t, nvcfsim.StatusDeploying, res.FunctionStatus)
			require.Equal(t, nvcfsim.ScalingNotActive, res.ScalingStatus)
			got, _ = sim.Desired(fid, vid)
			require.Equal(t, 2, got)

			// A spec edited so that the current count is out of range: no-op.
			require.True(t, sim.SetStatus(fid, vid, nvcfsim.StatusActive))
			sim.Register(nvcfsim.FunctionVersion{FunctionID: fid, VersionID: vid,
				Specs: []nvcfsim.DeploymentSpec{{GPU: "L40", MinInstances: 3, MaxInstances: 6}}})
			res, err = autoscale(c, 5)
			require.NoError(t, err)
			require.Equal(t, nvcfsim.ScalingOutOfRange, res.ScalingStatus)
			got, _ = sim.Desired(fid, vid)
			require.Equal(t, 2, got)
		})
	}
}

func TestRateLimitedThenSuccessHonoursRetryAfter(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			rec := &recorder{}
			c, ft := newClient(t, tr, sim, func(c *Config) { c.Observer = rec.observe })
			sim.FailNext(1, nvcfsim.Fault{Kind: nvcfsim.FaultRateLimited, RetryAfter: 2 * time.Second})

			res, err := autoscale(c, 4)
			require.NoError(t, err)
			require.Equal(t, 2, res.Attempts)
			require.Equal(t, 2, sim.Calls(fid, vid))
			sleeps := ft.Sleeps()
			require.Len(t, sleeps, 1)
			require.GreaterOrEqual(t, sleeps[0], 2*time.Second, "Retry-After outranks the shorter back-off")
			require.Less(t, sleeps[0], 3*time.Second)
			want := map[string][]string{TransportHTTP: {"429", "200"}, TransportGRPC: {"ResourceExhausted", "OK"}}
			require.Equal(t, want[tr], rec.codes())
		})
	}
}

func TestRetryAfterBeyondBoundEndsTheCall(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			c, ft := newClient(t, tr, sim, func(c *Config) { c.MaxRetryAfter = 10 * time.Second })
			sim.FailNext(1, nvcfsim.Fault{Kind: nvcfsim.FaultRateLimited, RetryAfter: time.Hour})

			_, err := autoscale(c, 4)
			require.ErrorIs(t, err, ErrRateLimited)
			require.True(t, Retryable(err))
			require.Equal(t, 1, sim.Calls(fid, vid))
			require.Empty(t, ft.Sleeps(), "an hour is the next cycle's business")
		})
	}
}

func TestUnavailableThriceThenSuccess(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			c, ft := newClient(t, tr, sim, nil)
			sim.FailNext(3, nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable})

			res, err := autoscale(c, 4)
			require.NoError(t, err)
			require.Equal(t, 4, res.Attempts)
			require.Equal(t, 4, sim.Calls(fid, vid))
			got, _ := sim.Desired(fid, vid)
			require.Equal(t, 4, got)
			// Exponential with jitter in [d/2, d], d = 10ms * 2^(n-1).
			sleeps := ft.Sleeps()
			require.Len(t, sleeps, 3)
			for i, s := range sleeps {
				d := 10 * time.Millisecond << i
				require.GreaterOrEqual(t, s, d/2, "sleep %d", i)
				require.LessOrEqual(t, s, d, "sleep %d", i)
			}
		})
	}
}

func TestPermanentUnavailableGivesUp(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			c, ft := newClient(t, tr, sim, func(c *Config) { c.MaxAttempts = 3 })
			sim.SetFaultSchedule(func(nvcfsim.Call) *nvcfsim.Fault {
				return &nvcfsim.Fault{Kind: nvcfsim.FaultUnavailable}
			})

			_, err := autoscale(c, 4)
			require.ErrorIs(t, err, ErrUnavailable)
			var ex *ExhaustedError
			require.ErrorAs(t, err, &ex)
			require.Equal(t, 3, ex.Attempts)
			require.Equal(t, 3, sim.Calls(fid, vid))
			require.Len(t, ft.Sleeps(), 2)
			require.True(t, Retryable(err))
		})
	}
}

func TestPerAttemptTimeoutIsRetried(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			c, _ := newClient(t, tr, sim, func(c *Config) {
				c.Timeout = 50 * time.Millisecond
				c.MaxAttempts = 2
			})
			sim.SetLatency(300 * time.Millisecond)

			_, err := autoscale(c, 4)
			require.ErrorIs(t, err, ErrUnavailable)
			var ex *ExhaustedError
			require.ErrorAs(t, err, &ex)
			require.Equal(t, 2, ex.Attempts)
		})
	}
}

func TestNotFoundIsClassifiedAndNotRetried(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			c, ft := newClient(t, tr, sim, nil)

			_, err := c.Autoscale(context.Background(), Request{FunctionID: "nope", FunctionVersionID: vid, Instances: 3})
			require.ErrorIs(t, err, ErrNotFound)
			require.False(t, Retryable(err))
			require.Equal(t, 1, sim.Calls("nope", vid))
			require.Empty(t, ft.Sleeps())
			require.Contains(t, err.Error(), "nope/"+vid)
		})
	}
}

func TestBeyondLimitsIsClassified(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			sim.Register(nvcfsim.FunctionVersion{FunctionID: "strict", VersionID: vid, RejectBeyondLimits: true,
				Specs: []nvcfsim.DeploymentSpec{{GPU: "L40", MinInstances: 0, MaxInstances: 4}}})
			c, _ := newClient(t, tr, sim, nil)

			_, err := c.Autoscale(context.Background(), Request{FunctionID: "strict", FunctionVersionID: vid, Instances: 9})
			require.ErrorIs(t, err, ErrBeyondLimits)
			require.False(t, Retryable(err))
			require.Equal(t, 1, sim.Calls("strict", vid))
		})
	}
}

func TestAccountScopedHTTP(t *testing.T) {
	sim := startSim(t)
	c, _ := newClient(t, TransportHTTP, sim, func(c *Config) { c.AccountScoped = true })

	_, err := c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid,
		NcaID: "nca-1", DeploymentID: "dep-7", Instances: 3})
	require.NoError(t, err)
	w := sim.Writes()[0]
	require.Equal(t, "nca-1", w.NcaID)
	require.Equal(t, "dep-7", w.DeploymentID)
	require.Equal(t, 3, w.Applied)

	_, err = c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid, NcaID: "other", Instances: 3})
	require.ErrorIs(t, err, ErrNotFound, "a function of another account does not exist for us")

	_, err = c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid, Instances: 3})
	require.ErrorIs(t, err, ErrInvalidRequest)
	require.Equal(t, 2, sim.Calls(fid, vid), "an invalid request is not sent")
}

func TestGPUSpecAndDeploymentIDOverGRPC(t *testing.T) {
	sim := startSim(t)
	c, _ := newClient(t, TransportGRPC, sim, nil)
	_, err := c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid,
		DeploymentID: "dep-1", GPUSpecID: "gpu-spec-1", Instances: 3})
	require.NoError(t, err)
	w := sim.Writes()[0]
	require.Equal(t, "dep-1", w.DeploymentID)
	require.Equal(t, "gpu-spec-1", w.GPUSpecID)
}

// tokenServer is an OAuth2 token endpoint on 127.0.0.1 that counts the
// tokens it hands out.
type tokenServer struct {
	*httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	scopes  []string
	status  int
}

func startTokenServer(t *testing.T, clientID, secret, token string) *tokenServer {
	t.Helper()
	ts := &tokenServer{status: http.StatusOK}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.fetches.Add(1)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.scopes = append(ts.scopes, r.PostForm.Get("scope"))
		status := ts.status
		ts.mu.Unlock()
		id, sec, ok := r.BasicAuth()
		if !ok {
			id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		w.Header().Set("Content-Type", "application/json")
		if status != http.StatusOK || r.PostForm.Get("grant_type") != "client_credentials" || id != clientID || sec != secret {
			w.WriteHeader(http.StatusUnauthorized)
			// A careless server echoing the secret must not leak it through us.
			_, _ = fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s"}`, sec)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func writeFile(t *testing.T, path, content string, mod time.Time) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content+"\n"), 0o600))
	require.NoError(t, os.Chtimes(path, mod, mod))
}

func TestOAuthClientCredentialsCachedAndScoped(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			const token = "jwt-abc-123"
			sim.SetAcceptedTokens(token)
			ts := startTokenServer(t, "autoscaler", "s3cret-value", token)
			secretPath := filepath.Join(t.TempDir(), "client-secret")
			writeFile(t, secretPath, "s3cret-value", time.Now())
			c, _ := newClient(t, tr, sim, func(c *Config) {
				c.OAuthTokenURL = ts.URL + "/token"
				c.OAuthClientID = "autoscaler"
				c.OAuthClientSecretFile = secretPath
			})

			for i := 0; i < 3; i++ {
				_, err := autoscale(c, 3+i)
				require.NoError(t, err)
			}
			require.EqualValues(t, 1, ts.fetches.Load(), "the token is cached until it expires")
			ts.mu.Lock()
			require.Equal(t, []string{OAuthScope}, ts.scopes)
			ts.mu.Unlock()
			require.Equal(t, 3, sim.Calls(fid, vid))
		})
	}
}

func TestOAuthRefusedSecretIsUnauthorizedAndNotLeaked(t *testing.T) {
	sim := startSim(t)
	ts := startTokenServer(t, "autoscaler", "right-secret", "tok")
	secretPath := filepath.Join(t.TempDir(), "client-secret")
	writeFile(t, secretPath, "wrong-secret-value", time.Now())
	c, _ := newClient(t, TransportGRPC, sim, func(c *Config) {
		c.OAuthTokenURL = ts.URL
		c.OAuthClientID = "autoscaler"
		c.OAuthClientSecretFile = secretPath
	})

	_, err := autoscale(c, 3)
	require.ErrorIs(t, err, ErrUnauthorized)
	require.False(t, Retryable(err))
	require.NotContains(t, err.Error(), "wrong-secret-value")
	require.Zero(t, sim.Calls(fid, vid), "nothing is sent without a token")
}

func TestStaticTokenFileRotation(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			path := filepath.Join(t.TempDir(), "token")
			t0 := time.Now().Add(-time.Hour)
			writeFile(t, path, "token-one", t0)
			sim.SetAcceptedTokens("token-one")
			c, _ := newClient(t, tr, sim, func(c *Config) { c.TokenFile = path })

			_, err := autoscale(c, 3)
			require.NoError(t, err)

			// The secret rotates: the server wants the new token at once,
			// and the client picks it up from the changed file.
			sim.SetAcceptedTokens("token-two")
			writeFile(t, path, "token-two", t0.Add(time.Minute))
			_, err = autoscale(c, 4)
			require.NoError(t, err)
			require.Equal(t, 2, sim.Calls(fid, vid))

			// A refused token, the file unchanged: one retry, then a
			// classified error that does not quote the token.
			sim.SetAcceptedTokens("token-three")
			_, err = autoscale(c, 5)
			require.ErrorIs(t, err, ErrUnauthorized)
			require.False(t, Retryable(err))
			require.NotContains(t, err.Error(), "token-two")
			require.Equal(t, 4, sim.Calls(fid, vid))
			for _, w := range sim.Writes()[2:] {
				require.Equal(t, nvcfsim.OutcomeUnauthorized, w.Outcome)
			}
		})
	}
}

func TestTokenNotInExhaustedError(t *testing.T) {
	sim := startSim(t)
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, "very-secret-token", time.Now())
	sim.SetAcceptedTokens("very-secret-token")
	sim.SetFaultSchedule(func(nvcfsim.Call) *nvcfsim.Fault { return &nvcfsim.Fault{Kind: nvcfsim.FaultInternal} })
	c, _ := newClient(t, TransportHTTP, sim, func(c *Config) { c.TokenFile = path; c.MaxAttempts = 2 })
	_, err := autoscale(c, 3)
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotContains(t, err.Error(), "very-secret-token")
}

func TestRateLimiterAdmitsBurstThenShedsLoad(t *testing.T) {
	sim := startSim(t)
	rec := &recorder{}
	c, ft := newClient(t, TransportHTTP, sim, func(c *Config) {
		c.Rate = 1
		c.Burst = 2
		c.MaxQueueAge = 10 * time.Millisecond
		c.Observer = rec.observe
	})

	// The fake clock stands still, so only the burst is available.
	for i := 0; i < 2; i++ {
		_, err := autoscale(c, 3+i)
		require.NoError(t, err)
	}
	require.Empty(t, ft.Sleeps(), "the burst is admitted without waiting")

	_, err := autoscale(c, 5)
	require.ErrorIs(t, err, ErrRateLimited)
	require.True(t, Retryable(err))
	require.Empty(t, ft.Sleeps(), "a request that would queue too long fails at once")
	require.Equal(t, 2, sim.Calls(fid, vid))
	require.Equal(t, []string{"200", "200", CodeClientRateLimited}, rec.codes())

	// A refused request gave its reservation back: one second refills one
	// token, and exactly one more request gets through.
	ft.Advance(time.Second)
	_, err = autoscale(c, 5)
	require.NoError(t, err)
	_, err = autoscale(c, 4)
	require.ErrorIs(t, err, ErrRateLimited)
}

func TestRateLimiterWaitsWithinQueueAge(t *testing.T) {
	sim := startSim(t)
	c, ft := newClient(t, TransportGRPC, sim, func(c *Config) {
		c.Rate = 10
		c.Burst = 1
		c.MaxQueueAge = time.Second
	})
	for i := 0; i < 3; i++ {
		_, err := autoscale(c, 3)
		require.NoError(t, err)
	}
	// The first is the burst; each later one waits one refill (100 ms).
	require.Equal(t, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}, ft.Sleeps())
	require.Equal(t, 3, sim.Calls(fid, vid))
}

func TestRateLimiterWaitRespectsContext(t *testing.T) {
	sim := startSim(t)
	c, _ := newClient(t, TransportHTTP, sim, func(c *Config) {
		c.Rate = 0.001
		c.Burst = 1
		c.MaxQueueAge = time.Hour
	})
	c.sleep = sleepCtx // a real wait, ended by the context
	_, err := autoscale(c, 3)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Autoscale(ctx, Request{FunctionID: fid, FunctionVersionID: vid, Instances: 3})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, sim.Calls(fid, vid))
}

func TestDryRunMakesNoCall(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			var logs bytes.Buffer
			c, _ := newClient(t, tr, sim, func(c *Config) {
				c.DryRun = true
				c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			})
			res, err := autoscale(c, 4)
			require.NoError(t, err)
			require.True(t, res.DryRun)
			require.Equal(t, 4, res.Requested)
			require.Equal(t, ScalingStatusDryRun, res.ScalingStatus)
			require.Empty(t, sim.Writes())
			got, _ := sim.Desired(fid, vid)
			require.Equal(t, 2, got)

			var line map[string]any
			require.NoError(t, json.Unmarshal(logs.Bytes(), &line))
			require.Equal(t, fid, line["function_id"])
			require.Equal(t, vid, line["function_version_id"])
			require.EqualValues(t, 4, line["required_instances"])
		})
	}
}

func TestDryRunNeedsNoAddress(t *testing.T) {
	c, err := New(Config{DryRun: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	res, err := c.Autoscale(context.Background(), Request{FunctionID: fid, FunctionVersionID: vid, Instances: 2})
	require.NoError(t, err)
	require.True(t, res.DryRun)
	require.NoError(t, c.Close())
}

func TestDeploymentConfigurationOverGRPC(t *testing.T) {
	sim := startSim(t)
	sim.Register(nvcfsim.FunctionVersion{
		FunctionID: "custom", VersionID: vid,
		Specs: []nvcfsim.DeploymentSpec{{GPU: "L40", MinInstances: 1, MaxInstances: 4}},
		Autoscaling: map[string]*nvcfpb.AutoscalingConfiguration{
			"gpu-spec-L40": {
				ScaleUpDetails: &nvcfpb.ScalingDetails{Metric: "utilization", Factor: 1.5, Threshold: 80,
					Stickiness: &nvcfpb.StickinessWindow{Size: durationpb.New(10 * time.Minute), Threshold: durationpb.New(3 * time.Minute)}},
				ScaleDownDetails: &nvcfpb.ScalingDetails{Metric: "utilization", Factor: 0.7, Threshold: 20},
			},
		},
	})
	c, _ := newClient(t, TransportGRPC, sim, nil)

	got, err := c.DeploymentConfiguration(context.Background(), "custom", vid)
	require.NoError(t, err)
	require.Equal(t, map[string]AutoscalingConfig{
		"gpu-spec-L40": {
			ScaleUp: ScalingDetails{Metric: "utilization", Factor: 1.5, Threshold: 80,
				Stickiness: StickinessWindow{Size: 10 * time.Minute, Threshold: 3 * time.Minute}},
			ScaleDown: ScalingDetails{Metric: "utilization", Factor: 0.7, Threshold: 20},
		},
	}, got)

	empty, err := c.DeploymentConfiguration(context.Background(), fid, vid)
	require.NoError(t, err)
	require.Empty(t, empty)

	_, err = c.DeploymentConfiguration(context.Background(), "nope", vid)
	require.ErrorIs(t, err, ErrNotFound)

	h, _ := newClient(t, TransportHTTP, sim, nil)
	_, err = h.DeploymentConfiguration(context.Background(), "custom", vid)
	require.ErrorIs(t, err, ErrUnsupported)
	require.False(t, Retryable(err))
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("x: %w", ErrNotFound), false},
		{fmt.Errorf("x: %w", ErrBeyondLimits), false},
		{fmt.Errorf("x: %w", ErrUnauthorized), false},
		{fmt.Errorf("x: %w", ErrInvalidRequest), false},
		{fmt.Errorf("x: %w", ErrRateLimited), true},
		{&ExhaustedError{Endpoint: "e", Attempts: 4, Last: &APIError{Code: "503", class: ErrUnavailable, transient: true}}, true},
		{&APIError{Code: "409"}, false},
		{&APIError{Code: "Internal"}, false},
		{&APIError{Code: "408", transient: true}, true},
		{context.DeadlineExceeded, true},
		{errors.New("connection reset by peer"), true},
	} {
		require.Equal(t, tc.want, Retryable(tc.err), "%v", tc.err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad transport", Config{Transport: "smtp"}, `Transport "smtp"`},
		{"http without url", Config{Transport: TransportHTTP}, "BaseURL"},
		{"grpc without addr", Config{Transport: TransportGRPC}, "GRPCAddr"},
		{"account-scoped grpc", Config{Transport: TransportGRPC, GRPCAddr: "x:1", AccountScoped: true}, "AccountScoped"},
		{"both auth modes", Config{BaseURL: "http://x", TokenFile: "/t", OAuthTokenURL: "http://t", OAuthClientID: "a", OAuthClientSecretFile: "/s"}, "mutually exclusive"},
		{"oauth incomplete", Config{BaseURL: "http://x", OAuthTokenURL: "http://t"}, "OAuthClientID"},
	} {
		_, err := New(tc.cfg)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, 3*time.Second, parseRetryAfter("3", now))
	require.Zero(t, parseRetryAfter("", now))
	require.Zero(t, parseRetryAfter("-1", now))
	require.Zero(t, parseRetryAfter("soon", now))
	require.Equal(t, 90*time.Second, parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now))
}

func TestErrorMessageIsOneLine(t *testing.T) {
	require.Equal(t, "FUNCTION_NOT_FOUND: gone", errorMessage([]byte(`{"code":"FUNCTION_NOT_FOUND","message":"gone"}`)))
	require.Equal(t, "upstream connect error", errorMessage([]byte("upstream\nconnect   error\n")))
	require.False(t, strings.Contains(errorMessage([]byte("a\nb")), "\n"))
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			// Port 1 on loopback refuses connections.
			c, ft := newClient(t, tr, sim, func(c *Config) {
				c.BaseURL, c.GRPCAddr, c.MaxAttempts = "http://127.0.0.1:1", "127.0.0.1:1", 3
			})
			_, err := autoscale(c, 3)
			require.ErrorIs(t, err, ErrUnavailable)
			var ex *ExhaustedError
			require.ErrorAs(t, err, &ex)
			require.Equal(t, 3, ex.Attempts)
			require.Len(t, ft.Sleeps(), 2)
			require.Contains(t, err.Error(), "fn-1/ver-1")
		})
	}
}
