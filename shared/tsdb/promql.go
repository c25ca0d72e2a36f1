// Package tsdb reads the autoscaler's inputs from any Prometheus-compatible
// store (Prometheus, VictoriaMetrics, Thanos, Mimir) with PromQL over the
// HTTP API, and only that: it never scrapes and never writes samples.
//
// Every query is a POST form body, so a bucket's long selector never hits
// URL length limits; failures are retried only where a retry can help
// (5xx, 429, connection errors, but not a TLS handshake refused over
// certificates), with bounded, jittered back-off.
package tsdb

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"function/shared/tlsfiles"
	"function/shared/watchfile"
)

// Config says how to reach the TSDB.
type Config struct {
	URL       string // base URL, may include a path prefix (e.g. /prometheus, /select/0/prometheus)
	Auth      string // none, token or mtls
	TokenFile string // bearer token (auth=token), re-read when it changes
	// TLS is used for https URLs: the CA (empty: the system roots) and,
	// for auth=mtls, the client certificate. Errors name its settings.
	TLS tlsfiles.Files
	// APIPrefix is the API path under URL; "/api/v1" unless a gateway
	// exposes another (the reference's token mode uses "/v1").
	APIPrefix   string
	Timeout     time.Duration // one HTTP request
	MaxAttempts int           // per query, including the first
	MaxBackoff  time.Duration // cap of the back-off between attempts
	// MaxSelectorBytes bounds the id list in one batched selector; a larger
	// bucket is split into several queries. VictoriaMetrics limits a whole
	// query to -search.maxQueryLen (16 KiB by default): raise that on the
	// server and this with it, or keep DefaultMaxSelectorBytes.
	MaxSelectorBytes int
	// Observer, if set, sees every HTTP attempt: endpoint (query,
	// query_range), status (the HTTP status, transport_error or error) and
	// how long it took.
	Observer func(endpoint, status string, d time.Duration)
	// OnQuery, if set, is told once per PromQL query issued (however many
	// attempts it takes), with the caller named by WithCaller ("other"
	// when the context names none).
	OnQuery func(caller string)
}

type callerKey struct{}

// WithCaller names who issues the queries made under ctx (discovery,
// scale ...), for Config.OnQuery.
func WithCaller(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

type countKey struct{}

// WithQueryCount counts into n every PromQL query issued under ctx (once per
// query, however many attempts it takes), so a caller can report its own
// share of a client other goroutines use at the same time.
func WithQueryCount(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, countKey{}, n)
}

// CallerOf returns the caller named by WithCaller, or "other".
func CallerOf(ctx context.Context) string {
	if c, ok := ctx.Value(callerKey{}).(string); ok && c != "" {
		return c
	}
	return "other"
}

// Client issues PromQL queries.
type Client struct {
	cfg     Config
	base    *url.URL
	http    *http.Client
	token   *watchfile.Value[string] // nil without auth=token
	queries atomic.Int64
	// tlsConfig is the transport's, kept to probe a failed connection.
	tlsConfig *tls.Config
	// union is what the server said about union(...): unionUnknown
	// until a probe got an answer (see groupJoin).
	union atomic.Int32
	// unionRetryAt (Unix nanoseconds) is when a probe that got no answer
	// may be asked again, unionProbeRetry after it.
	unionRetryAt atomic.Int64
}

// New validates cfg and builds a client; it does not contact the server.
// DefaultMaxSelectorBytes is the id-list bound whose queries a stock
// VictoriaMetrics accepts (-search.maxQueryLen 16 KiB). The longest
// queries of a chunk, the requests and the fresh utilization, list the
// ids twice and repeat their expression once per group of lookupGroup
// ids, so they are about 2.5 times the id list: 12 KiB of ids made a
// 30,782-byte query, refused with 422;
// 5 KiB makes about 13 KB, with room for the environment and extra label
// filters (TestDefaultSelectorFitsAStockVictoriaMetrics).
const DefaultMaxSelectorBytes = 5120

func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tsdb url %q: want an absolute http(s) URL", cfg.URL)
	}
	if cfg.APIPrefix == "" {
		cfg.APIPrefix = "/api/v1"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.MaxSelectorBytes <= 0 {
		cfg.MaxSelectorBytes = 1 << 20
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	c := &Client{cfg: cfg, base: u, http: &http.Client{Transport: tr, Timeout: cfg.Timeout}}
	tlsCfg, err := cfg.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("tsdb tls: %w", err)
	}
	switch cfg.Auth {
	case "", "none":
	case "token":
		if cfg.TokenFile == "" {
			return nil, errors.New("tsdb auth token needs a token file")
		}
		if c.token, err = newTokenFile(cfg.TokenFile); err != nil {
			return nil, fmt.Errorf("tsdb auth token: %w", err)
		}
	case "mtls":
		if !cfg.TLS.HasClientCert() {
			return nil, fmt.Errorf("tsdb auth mtls needs a client certificate: set %s and %s", cfg.TLS.CertSetting, cfg.TLS.KeySetting)
		}
	default:
		return nil, fmt.Errorf("tsdb auth %q: want none, token or mtls", cfg.Auth)
	}
	// An IP address in the URL sends no server name: it is bound for
	// host verification.
	tlsCfg = tlsfiles.ForURLHost(tlsCfg, u.Hostname())
	tr.TLSClientConfig, c.tlsConfig = tlsCfg, tlsCfg
	return c, nil
}

// Queries returns how many PromQL queries this client has issued (one per
// logical query, however many attempts it took).
func (c *Client) Queries() int64 { return c.queries.Load() }

// Ping proves the query API answers; readiness depends on it.
func (c *Client) Ping(ctx context.Context) error {
	if _, named := ctx.Value(callerKey{}).(string); !named {
		ctx = WithCaller(ctx, "readiness")
	}
	_, _, err := c.Query(ctx, "vector(1)", time.Now())
	return err
}

// Query runs an instant query at time at.
func (c *Client) Query(ctx context.Context, query string, at time.Time) ([]Series, Warnings, error) {
	form := url.Values{"query": {query}, "time": {formatTime(at)}}
	return c.collect(ctx, "query", query, form)
}

// QueryRange runs a range query from start to end at step.
func (c *Client) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]Series, Warnings, error) {
	form, err := rangeForm(query, start, end, step)
	if err != nil {
		return nil, nil, err
	}
	return c.collect(ctx, "query_range", query, form)
}

// QueryRangeEach runs a range query and hands each series to each as it is
// decoded, so a large answer is never held whole. An attempt that fails
// before each has seen a series is retried as usual; one that fails after
// is not (each cannot unsee what it got), and neither is an error of each,
// which QueryRangeEach returns as it is. On any error the caller must drop
// what each gathered.
func (c *Client) QueryRangeEach(ctx context.Context, query string, start, end time.Time, step time.Duration, each func(Series) error) (Warnings, error) {
	form, err := rangeForm(query, start, end, step)
	if err != nil {
		return nil, err
	}
	return c.do(ctx, "query_range", query, form, sink{each: each})
}

func rangeForm(query string, start, end time.Time, step time.Duration) (url.Values, error) {
	if step <= 0 {
		return nil, fmt.Errorf("query_range: step %s must be positive", step)
	}
	return url.Values{
		"query": {query}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}, nil
}

// collect gathers a whole answer; each attempt starts from nothing, so a
// retry never duplicates a series.
func (c *Client) collect(ctx context.Context, endpoint, query string, form url.Values) ([]Series, Warnings, error) {
	var out []Series
	warns, err := c.do(ctx, endpoint, query, form, sink{
		begin: func() { out = out[:0] },
		each:  func(s Series) error { out = append(out, s); return nil },
	})
	if err != nil {
		return nil, nil, err
	}
	if out == nil {
		// A success with no series is an empty answer, not a missing one.
		out = []Series{}
	}
	return out, warns, nil
}

// sink receives one query's series.
type sink struct {
	// begin, if set, is called before every attempt and forgets what an
	// earlier one delivered; without it a partly delivered answer is not
	// retried.
	begin func()
	each  func(Series) error
}

// consumerError marks an error of the caller's each, which ends the query
// without a retry and reaches the caller unwrapped.
type consumerError struct{ err error }

func (e consumerError) Error() string { return e.err.Error() }

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1e3, 'f', 3, 64)
}

// QueryError is a failed query: what was asked, what the server said, and
// whether asking again can help.
type QueryError struct {
	Query     string
	Status    int // HTTP status; 0 for transport errors
	Type      string
	Message   string
	Attempts  int
	retryable bool
	Err       error
}

func (e *QueryError) Error() string {
	q := e.Query
	if len(q) > 200 {
		q = q[:200] + fmt.Sprintf("... (%d bytes)", len(e.Query))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "promql %q", q)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": status %d", e.Status)
	}
	if e.Type != "" {
		fmt.Fprintf(&b, " %s", e.Type)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

func (e *QueryError) Unwrap() error { return e.Err }

// Retryable reports whether a later attempt at the same query may succeed.
// A refused TLS handshake (tlsfiles.ErrRefused) is retryable though the
// query did not try it again: the CA and client certificate files are read
// again when they change, so a later query, after the fix, can succeed.
func Retryable(err error) bool {
	var qe *QueryError
	if errors.As(err, &qe) {
		return qe.retryable
	}
	return false
}

func (c *Client) do(ctx context.Context, endpoint, query string, form url.Values, to sink) (Warnings, error) {
	c.queries.Add(1)
	if n, ok := ctx.Value(countKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	if c.cfg.OnQuery != nil {
		c.cfg.OnQuery(CallerOf(ctx))
	}
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + c.cfg.APIPrefix + "/" + endpoint
	body := form.Encode()
	backoff := 200 * time.Millisecond
	var last *QueryError
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if to.begin != nil {
			to.begin()
		}
		delivered := 0
		each := func(s Series) error {
			delivered++
			if err := to.each(s); err != nil {
				return consumerError{err}
			}
			return nil
		}
		warns, err := c.attempt(ctx, endpoint, u.String(), query, body, each)
		if err == nil {
			return warns, nil
		}
		var ce consumerError
		if errors.As(err, &ce) {
			return nil, ce.err
		}
		qe := err.(*QueryError)
		qe.Attempts = attempt
		last = qe
		if !qe.retryable || attempt == c.cfg.MaxAttempts || (delivered > 0 && to.begin == nil) {
			break
		}
		if errors.Is(qe.Err, tlsfiles.ErrRefused) {
			// The same files and the same server refuse the handshake
			// again at once: backing off only delays the answer.
			break
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			last.Err = errors.Join(last.Err, ctx.Err())
			last.retryable = false
			return nil, last
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
	return nil, last
}

// errorBodyLimit bounds what is read of an answer that is not a 2xx: an
// error's JSON is small, and only its first 300 bytes are reported when it
// is not JSON.
const errorBodyLimit = 1 << 20

// attempt sends the query once. A 2xx answer is decoded as it arrives
// (each sees its series); it returns a *QueryError, or the consumerError of
// each.
func (c *Client) attempt(ctx context.Context, endpoint, u, query, body string, each func(Series) error) (Warnings, error) {
	start := time.Now()
	status := "error"
	defer func() {
		if c.cfg.Observer != nil {
			c.cfg.Observer(endpoint, status, time.Since(start))
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewBufferString(body))
	if err != nil {
		return nil, &QueryError{Query: query, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.token != nil {
		req.Header.Set("Authorization", "Bearer "+c.token.Current())
	}
	resp, err := c.http.Do(req)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The caller gave up, not the TSDB: a status of its own keeps
		// cancelled requests out of TSDB error alerts.
		status = "cancelled"
		return nil, &QueryError{Query: query, Err: scrubURL(err)}
	}
	if err != nil {
		status = "transport_error"
		// Connection refused, reset or timed out: the server may be back
		// shortly. A cancelled caller is not.
		return nil, &QueryError{Query: query, Err: c.explainTLS(ctx, scrubURL(err)), retryable: ctx.Err() == nil && isTransient(err)}
	}
	defer resp.Body.Close()
	status = strconv.Itoa(resp.StatusCode)
	retryable := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	if resp.StatusCode/100 != 2 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
		if err != nil {
			return nil, &QueryError{Query: query, Status: resp.StatusCode, Err: err, retryable: true}
		}
		warns, apiErr, _ := decodeStream(bytes.NewReader(b), func(Series) error { return nil })
		if apiErr != nil {
			return warns, &QueryError{Query: query, Status: resp.StatusCode, Type: apiErr.ErrorType, Message: apiErr.Error, retryable: retryable}
		}
		msg := strings.TrimSpace(string(b))
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return warns, &QueryError{Query: query, Status: resp.StatusCode, Message: msg, retryable: retryable}
	}
	in := &readRecorder{r: resp.Body}
	warns, apiErr, err := decodeStream(in, each)
	var ce consumerError
	switch {
	case errors.As(err, &ce):
		return nil, ce
	case in.err != nil:
		// The body broke off (a reset, the client timeout): asking again
		// may get it whole.
		return nil, &QueryError{Query: query, Status: resp.StatusCode, Err: in.err, retryable: ctx.Err() == nil}
	case apiErr != nil:
		return warns, &QueryError{Query: query, Status: resp.StatusCode, Type: apiErr.ErrorType, Message: apiErr.Error, retryable: retryable}
	case err != nil:
		return warns, &QueryError{Query: query, Status: resp.StatusCode, Err: err}
	}
	return warns, nil
}

// readRecorder remembers the first read error other than EOF, to tell a
// body that broke off from one that is malformed.
type readRecorder struct {
	r   io.Reader
	err error
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// explainTLS names the TLS setting behind a transport error of an https
// TSDB (see tlsfiles.Files.Diagnose); plain http errors pass unchanged.
func (c *Client) explainTLS(ctx context.Context, err error) error {
	if c.base.Scheme != "https" {
		return err
	}
	addr := c.base.Host
	if c.base.Port() == "" {
		addr = net.JoinHostPort(c.base.Hostname(), "443")
	}
	return c.cfg.TLS.Diagnose(ctx, addr, c.tlsConfig, err)
}

func isTransient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// scrubURL drops the URL from transport errors: it can carry credentials
// in userinfo, and the query is reported separately anyway.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// tokenSetting is the variable that names the token file, for messages.
const tokenSetting = "TSDB_TOKEN_FILE"

// newTokenFile reads the bearer token once, so that a wrong setting fails
// at start with the setting named, and again whenever the file changes, so
// a rotated Kubernetes secret takes effect at the next query without a
// restart. A swapped symlink is a change even when the new token has the
// old one's length and modification time.
//
// A rewrite caught empty, or the file gone for a moment during a swap,
// leaves the last good token in use: the TSDB may still accept it, and a
// query that fails for want of a token would fail for nothing. Each
// outcome is logged once per change of the file, never once per query;
// the lines and errors name the setting and the path, never the token.
func newTokenFile(path string) (*watchfile.Value[string], error) {
	f := watchfile.File{Path: path, Setting: tokenSetting, What: "token file"}
	return watchfile.New(watchfile.Spec[string]{
		Files: []watchfile.File{f},
		Parse: watchfile.NonEmptyText(f),
		Failed: func(_ string, err error) {
			slog.Warn("TSDB token file did not load; the token read before is still sent",
				"token_setting", tokenSetting, "token_file", path, "error", err.Error())
		},
		Reloaded: func(string) {
			slog.Info("TSDB token file read again", "token_setting", tokenSetting, "token_file", path)
		},
	})
}
