package nvcfsim

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// predictionBody is the documented JSON body of the predictions PUT.
type predictionBody struct {
	RequiredNumberOfInstances *int   `json:"requiredNumberOfInstances"`
	PredictedAt               string `json:"predictedAt"`
	DeploymentID              string `json:"deploymentId,omitempty"`
}

// predictionResponse mirrors AutoscalerResponse; the legacy HTTP API's body
// is not documented, so the simulator answers with the gRPC fields.
type predictionResponse struct {
	ActiveInstances      int32  `json:"activeInstances"`
	PendingInstances     int32  `json:"pendingInstances"`
	AllocatingInstances  int32  `json:"allocatingInstances"`
	TerminatingInstances int32  `json:"terminatingInstances"`
	FunctionStatus       string `json:"functionStatus"`
	ScalingStatus        string `json:"scalingStatus"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Handler serves the HTTP predictions API and the token endpoint; Start mounts it on the HTTP
// listener, and tests may mount it elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v2/nvcf/predictions/functions/{functionId}/versions/{versionId}", s.handlePrediction)
	mux.HandleFunc("PUT /v2/nvcf/accounts/{ncaId}/predictions/functions/{functionId}/versions/{versionId}", s.handlePrediction)
	mux.HandleFunc("POST "+OAuthTokenPath, s.handleToken)
	return mux
}

func (s *Server) handlePrediction(w http.ResponseWriter, r *http.Request) {
	in := autoscaleCall{
		transport:     "http",
		authorization: r.Header.Get("Authorization"),
		ncaID:         r.PathValue("ncaId"),
		functionID:    r.PathValue("functionId"),
		versionID:     r.PathValue("versionId"),
	}
	var body predictionBody
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err == nil && body.RequiredNumberOfInstances == nil {
		err = fmt.Errorf("requiredNumberOfInstances is missing")
	}
	if err == nil && body.PredictedAt != "" {
		_, err = time.Parse(time.RFC3339, body.PredictedAt)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Code: "INVALID_REQUEST", Message: err.Error()})
		return
	}
	in.requested = *body.RequiredNumberOfInstances
	in.deploymentID = body.DeploymentID

	resp, cerr := s.autoscale(r.Context(), in)
	if cerr != nil {
		writeHTTPError(w, cerr)
		return
	}
	writeJSON(w, http.StatusOK, predictionResponse{
		ActiveInstances:      resp.ActiveInstances,
		PendingInstances:     resp.PendingInstances,
		AllocatingInstances:  resp.AllocatingInstances,
		TerminatingInstances: resp.TerminatingInstances,
		FunctionStatus:       resp.FunctionStatus,
		ScalingStatus:        resp.ScalingStatus,
	})
}

func writeHTTPError(w http.ResponseWriter, e *callError) {
	var status int
	var code string
	switch e.kind {
	case errUnauthorized:
		status, code = http.StatusUnauthorized, "UNAUTHORIZED"
		w.Header().Set("WWW-Authenticate", `Bearer realm="nvcf"`)
	case errNotFound:
		status, code = http.StatusNotFound, "FUNCTION_NOT_FOUND"
	case errBeyondLimits:
		status, code = http.StatusUnprocessableEntity, "INSTANCE_REQUEST_BEYOND_LIMITS"
	case errRateLimited:
		status, code = http.StatusTooManyRequests, "RATE_LIMITED"
		if e.retryAfter > 0 {
			// Retry-After counts whole seconds; round up so the client
			// never comes back early.
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
		}
	case errUnavailable:
		status, code = http.StatusServiceUnavailable, "UNAVAILABLE"
	default:
		status, code = http.StatusInternalServerError, "INTERNAL"
	}
	writeJSON(w, status, errorBody{Code: code, Message: e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
