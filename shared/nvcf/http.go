package nvcf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
)

// httpTransport speaks the legacy predictions API.
type httpTransport struct {
	base          string // without trailing slash
	client        *httpsClient
	accountScoped bool
}

func newHTTPTransport(cfg Config, client *httpsClient) *httpTransport {
	return &httpTransport{
		base:          strings.TrimRight(cfg.BaseURL, "/"),
		client:        client,
		accountScoped: cfg.AccountScoped,
	}
}

// predictionBody is the documented PUT body; deploymentId is sent by the
// account-scoped variant only.
type predictionBody struct {
	RequiredNumberOfInstances int    `json:"requiredNumberOfInstances"`
	PredictedAt               string `json:"predictedAt"`
	DeploymentID              string `json:"deploymentId,omitempty"`
}

// predictionAnswer is read leniently: the legacy response body is not
// documented, so whatever of these fields is present is used.
type predictionAnswer struct {
	ActiveInstances      int    `json:"activeInstances"`
	PendingInstances     int    `json:"pendingInstances"`
	AllocatingInstances  int    `json:"allocatingInstances"`
	TerminatingInstances int    `json:"terminatingInstances"`
	FunctionStatus       string `json:"functionStatus"`
	ScalingStatus        string `json:"scalingStatus"`
}

func (h *httpTransport) autoscaleEndpoint() string { return EndpointHTTPPredictions }

func (h *httpTransport) predictionURL(r Request) string {
	path := "/v2/nvcf/predictions/functions/" + url.PathEscape(r.FunctionID) +
		"/versions/" + url.PathEscape(r.FunctionVersionID)
	if h.accountScoped {
		path = "/v2/nvcf/accounts/" + url.PathEscape(r.NcaID) +
			"/predictions/functions/" + url.PathEscape(r.FunctionID) +
			"/versions/" + url.PathEscape(r.FunctionVersionID)
	}
	return h.base + path
}

func (h *httpTransport) autoscale(ctx context.Context, r Request, token string) (Result, string, error) {
	body := predictionBody{
		RequiredNumberOfInstances: r.Instances,
		PredictedAt:               time.Now().UTC().Format(time.RFC3339),
	}
	if h.accountScoped {
		body.DeploymentID = r.DeploymentID
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Result{}, CodeTransportError, fmt.Errorf("put prediction: encode body: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, h.predictionURL(r), bytes.NewReader(raw))
	if err != nil {
		return Result{}, CodeTransportError, fmt.Errorf("put prediction: %w: %w", ErrInvalidRequest, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	injectHeaders(ctx, propagation.HeaderCarrier(req.Header))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.client.http.Do(req)
	if err != nil {
		// *url.Error names the URL and the cause; the token lives in a
		// header, which it does not print.
		return Result{}, CodeTransportError, fmt.Errorf("put prediction: %w", h.client.explain(ctx, h.base, err))
	}
	defer resp.Body.Close()
	code := strconv.Itoa(resp.StatusCode)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Result{}, code, httpError(resp)
	}
	// Read the whole (small) body so the connection is reused.
	payload, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ans predictionAnswer
	if len(bytes.TrimSpace(payload)) > 0 {
		// A body we cannot read does not undo a write the server accepted.
		_ = json.Unmarshal(payload, &ans)
	}
	return Result{
		ActiveInstances:      ans.ActiveInstances,
		PendingInstances:     ans.PendingInstances,
		AllocatingInstances:  ans.AllocatingInstances,
		TerminatingInstances: ans.TerminatingInstances,
		FunctionStatus:       ans.FunctionStatus,
		ScalingStatus:        ans.ScalingStatus,
	}, code, nil
}

func (h *httpTransport) deploymentConfiguration(context.Context, string, string, string) (map[string]AutoscalingConfig, string, error) {
	return nil, "", ErrUnsupported
}

func (h *httpTransport) close() error {
	h.client.closeIdle()
	return nil
}

// httpError classifies a non-2xx answer.
func httpError(resp *http.Response) *APIError {
	payload, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	ae := &APIError{
		Endpoint: EndpointHTTPPredictions,
		Code:     strconv.Itoa(resp.StatusCode),
		Message:  errorMessage(payload),
	}
	switch s := resp.StatusCode; {
	case s == http.StatusNotFound:
		ae.class = ErrNotFound
	case s == http.StatusBadRequest || s == http.StatusUnprocessableEntity:
		ae.class = ErrBeyondLimits
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		ae.class = ErrUnauthorized
	case s == http.StatusTooManyRequests:
		ae.class, ae.transient = ErrRateLimited, true
		ae.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	case s == http.StatusRequestTimeout:
		ae.transient = true
	case s >= 500:
		ae.class, ae.transient = ErrUnavailable, true
		// 503 may carry Retry-After too.
		ae.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return ae
}

// maxErrorBody bounds how much of an error body we read and quote.
const maxErrorBody = 512

// errorMessage prefers a JSON {"code", "message"} body and falls back to the
// raw text, on one line.
func errorMessage(payload []byte) string {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  string `json:"detail"`
	}
	if json.Unmarshal(payload, &e) == nil {
		msg := strings.TrimSpace(strings.Join(nonEmpty(e.Code, e.Message, e.Detail), ": "))
		if msg != "" {
			return msg
		}
	}
	return strings.Join(strings.Fields(string(payload)), " ")
}

func nonEmpty(ss ...string) []string {
	out := ss[:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
