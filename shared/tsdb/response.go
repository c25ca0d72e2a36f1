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
// VictoriaMetrics, Thanos and Mimir, without its data (decodeStream reads
// that as a stream).
type apiResponse struct {
	Status    string   `json:"status"`
	ErrorType string   `json:"errorType"`
	Error     string   `json:"error"`
	Warnings  []string `json:"warnings"`
}

type apiSeries struct {
	Metric map[string]string `json:"metric"`
	Values []point           `json:"values"` // matrix
	Value  *point            `json:"value"`  // vector
}

// point is one [unix seconds, "value"] pair. Decoding the pairs as [2]any
// was most of the CPU both functions spent at 100,000 versions (an
// interface value and a string per sample); the usual shape is parsed in
// place, anything else goes the general way with the same result.
type point struct {
	s   Sample
	err error // kept so the caller can name the series and point
}

// UnmarshalJSON receives b already validated by encoding/json.
func (p *point) UnmarshalJSON(b []byte) error {
	if s, ok := fastPoint(b); ok {
		p.s, p.err = s, nil
		return nil
	}
	var a [2]any
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	p.s, p.err = parsePoint(a)
	return nil
}

// fastPoint parses exactly [<number>,"<value>"]: no spaces, escapes or
// extra elements (what Prometheus and VictoriaMetrics send). It declines
// everything else.
func fastPoint(b []byte) (Sample, bool) {
	n := len(b)
	if n < 6 || b[0] != '[' || b[n-1] != ']' || b[n-2] != '"' {
		return Sample{}, false
	}
	i := bytes.IndexByte(b, ',')
	if i < 2 || b[i+1] != '"' {
		return Sample{}, false
	}
	vs := b[i+2 : n-2]
	if bytes.IndexByte(vs, '"') >= 0 || bytes.IndexByte(vs, '\\') >= 0 {
		return Sample{}, false
	}
	return parseSample(b[1:i], vs)
}

// parseSample reads a point's timestamp, already known to be a JSON
// number, and its value string; it declines what parsePoint would refuse,
// so that the general way reports it.
func parseSample(ts, v []byte) (Sample, bool) {
	t, err := strconv.ParseFloat(string(ts), 64)
	if err != nil || math.IsNaN(t) || math.IsInf(t, 0) {
		return Sample{}, false
	}
	x, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return Sample{}, false
	}
	return sampleAt(t, x), true
}

// seriesFrom converts decoded matrix or vector element i, naming the
// element and point of the first bad sample.
func seriesFrom(resultType string, i int, s apiSeries) (Series, error) {
	ser := Series{Labels: s.Metric}
	if ser.Labels == nil {
		ser.Labels = map[string]string{}
	}
	points := s.Values
	if resultType == "vector" {
		if s.Value == nil {
			return Series{}, fmt.Errorf("vector element %d has no value", i)
		}
		points = []point{*s.Value}
	}
	ser.Samples = make([]Sample, 0, len(points))
	for j, p := range points {
		if p.err != nil {
			return Series{}, fmt.Errorf("%s element %d point %d: %w", resultType, i, j, p.err)
		}
		ser.Samples = append(ser.Samples, p.s)
	}
	return ser, nil
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
	return sampleAt(ts, v), nil
}

// sampleAt turns unix seconds (millisecond resolution, as the API sends
// them) into a Sample.
func sampleAt(ts, v float64) Sample {
	sec, frac := math.Modf(ts)
	return Sample{At: time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC(), Value: v}
}
