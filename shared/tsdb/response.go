package tsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Sample is one point of a series. Value may be NaN or ±Inf: the TSDB
// reports them, and what they mean is the policy's call, not the parser's.
type Sample struct {
	At    time.Time
	Value float64
}

// Series is one labelled time series of a result.
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

// Warnings are the TSDB's non-fatal remarks (for example a partial answer).
type Warnings []string

// apiResponse is the Prometheus HTTP API envelope, shared by Prometheus,
// VictoriaMetrics, Thanos and Mimir.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type apiData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type apiSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"` // matrix
	Value  *[2]any           `json:"value"`  // vector
}

// parseResponse decodes an API answer into series. A "success" with an
// empty result is an empty slice, never an error: missing series and a
// failed query must stay distinguishable.
func parseResponse(body []byte) ([]Series, Warnings, *apiResponse, error) {
	var r apiResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return nil, nil, nil, fmt.Errorf("decode response: %w", err)
	}
	if r.Status != "success" {
		return nil, r.Warnings, &r, nil
	}
	var d apiData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return nil, r.Warnings, nil, fmt.Errorf("decode data: %w", err)
	}
	switch d.ResultType {
	case "matrix", "vector":
		var raw []apiSeries
		if err := json.Unmarshal(d.Result, &raw); err != nil {
			return nil, r.Warnings, nil, fmt.Errorf("decode %s: %w", d.ResultType, err)
		}
		out := make([]Series, 0, len(raw))
		for i, s := range raw {
			ser := Series{Labels: s.Metric}
			if ser.Labels == nil {
				ser.Labels = map[string]string{}
			}
			points := s.Values
			if d.ResultType == "vector" {
				if s.Value == nil {
					return nil, r.Warnings, nil, fmt.Errorf("vector element %d has no value", i)
				}
				points = [][2]any{*s.Value}
			}
			ser.Samples = make([]Sample, 0, len(points))
			for j, p := range points {
				smp, err := parsePoint(p)
				if err != nil {
					return nil, r.Warnings, nil, fmt.Errorf("%s element %d point %d: %w", d.ResultType, i, j, err)
				}
				ser.Samples = append(ser.Samples, smp)
			}
			out = append(out, ser)
		}
		return out, r.Warnings, nil, nil
	case "scalar":
		var p [2]any
		if err := json.Unmarshal(d.Result, &p); err != nil {
			return nil, r.Warnings, nil, fmt.Errorf("decode scalar: %w", err)
		}
		smp, err := parsePoint(p)
		if err != nil {
			return nil, r.Warnings, nil, fmt.Errorf("scalar: %w", err)
		}
		return []Series{{Labels: map[string]string{}, Samples: []Sample{smp}}}, r.Warnings, nil, nil
	}
	return nil, r.Warnings, nil, fmt.Errorf("unsupported resultType %q", d.ResultType)
}

// parsePoint reads [unix seconds (number), "value" (string)]. Go's
// ParseFloat accepts the API's "NaN", "+Inf" and "-Inf".
func parsePoint(p [2]any) (Sample, error) {
	ts, ok := p[0].(float64)
	if !ok || math.IsNaN(ts) || math.IsInf(ts, 0) {
		return Sample{}, fmt.Errorf("timestamp %v is not a number", p[0])
	}
	vs, ok := p[1].(string)
	if !ok {
		return Sample{}, fmt.Errorf("value %v is not a string", p[1])
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("value %q: %w", vs, err)
	}
	sec, frac := math.Modf(ts)
	return Sample{At: time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC(), Value: v}, nil
}
