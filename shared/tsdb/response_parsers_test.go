package tsdb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// bufferedResponse is the envelope with its data kept whole, as the
// parsers before streaming read it.
type bufferedResponse struct {
	apiResponse
	Data json.RawMessage `json:"data"`
}

type apiData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

// parseReference is the parser before point learned its fast path: the
// pairs decoded as [2]any. The streaming decoder must agree with it on
// every matrix and vector answer.
func parseReference(body []byte) ([]Series, error) {
	var r bufferedResponse
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, nil
	}
	var d apiData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "matrix" && d.ResultType != "vector" {
		return nil, errNotSeries
	}
	var raw []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
		Value  *[2]any           `json:"value"`
	}
	if err := json.Unmarshal(d.Result, &raw); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(raw))
	for _, s := range raw {
		ser := Series{Labels: s.Metric}
		if ser.Labels == nil {
			ser.Labels = map[string]string{}
		}
		points := s.Values
		if d.ResultType == "vector" {
			if s.Value == nil {
				return nil, fmt.Errorf("no value")
			}
			points = [][2]any{*s.Value}
		}
		ser.Samples = make([]Sample, 0, len(points))
		for _, p := range points {
			smp, err := parsePoint(p)
			if err != nil {
				return nil, err
			}
			ser.Samples = append(ser.Samples, smp)
		}
		out = append(out, ser)
	}
	return out, nil
}

// errNotSeries is the reference declining a scalar or unknown result.
var errNotSeries = errors.New("not a series result")

// parseBuffered is the parser before streaming: the whole body in memory,
// decoded in one pass into every series (falling back to three passes for
// anything unusual). It is the streaming decoder's reference on every
// input and its baseline in the benchmark.
func parseBuffered(body []byte) ([]Series, Warnings, *apiResponse, error) {
	var fast struct {
		Status   string   `json:"status"`
		Warnings []string `json:"warnings"`
		Data     struct {
			ResultType string       `json:"resultType"`
			Result     *[]apiSeries `json:"result"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &fast) == nil && fast.Status == "success" && fast.Data.Result != nil &&
		(fast.Data.ResultType == "matrix" || fast.Data.ResultType == "vector") {
		if out, err := seriesOf(fast.Data.ResultType, *fast.Data.Result); err == nil {
			return out, fast.Warnings, nil, nil
		}
	}
	var r bufferedResponse
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
		return nil, nil, nil, fmt.Errorf("decode response: %w", err)
	}
	if r.Status != "success" {
		return nil, r.Warnings, &r.apiResponse, nil
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
		out, err := seriesOf(d.ResultType, raw)
		if err != nil {
			return nil, r.Warnings, nil, err
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

func seriesOf(resultType string, raw []apiSeries) ([]Series, error) {
	out := make([]Series, 0, len(raw))
	for i, s := range raw {
		ser, err := seriesFrom(resultType, i, s)
		if err != nil {
			return nil, err
		}
		out = append(out, ser)
	}
	return out, nil
}

// parseStream runs the streaming decoder over body and collects the series.
func parseStream(body []byte) ([]Series, Warnings, *apiResponse, error) {
	out := []Series{}
	w, apiErr, err := decodeStream(bytes.NewReader(body), func(s Series) error {
		out = append(out, s)
		return nil
	})
	if err != nil || apiErr != nil {
		return nil, w, apiErr, err
	}
	return out, w, nil, nil
}

// sameSeries compares with NaN equal to NaN.
func sameSeries(t *testing.T, want, got []Series) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	for i := range want {
		require.Equal(t, want[i].Labels, got[i].Labels)
		require.Equal(t, len(want[i].Samples), len(got[i].Samples))
		for j, w := range want[i].Samples {
			g := got[i].Samples[j]
			require.True(t, w.At.Equal(g.At), "series %d point %d: time %s vs %s", i, j, w.At, g.At)
			require.True(t, w.Value == g.Value || (math.IsNaN(w.Value) && math.IsNaN(g.Value)), "series %d point %d: %v vs %v", i, j, w.Value, g.Value)
		}
	}
}

func TestStreamAgreesWithTheReferenceOnEveryPointShape(t *testing.T) {
	for _, b := range []string{
		`[1,"2"]`, `[1.5,"NaN"]`, `[1700000000.123,"+Inf"]`, `[1,"-Inf"]`, `[1, "2"]`, `[1,"2",3]`,
		`["1","2"]`, `[1,2]`, `[1,"a,b"]`, `[1,"\u0032"]`, `[1e3,"1e-3"]`, `[-1,"0x1p3"]`, `null`, `[1]`, `[]`,
	} {
		body := []byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[` + b + `]}]}}`)
		want, werr := parseReference(body)
		got, _, _, gerr := parseStream(body)
		require.Equal(t, werr == nil, gerr == nil, "%s: reference error %v, stream error %v", b, werr, gerr)
		if werr == nil {
			sameSeries(t, want, got)
		}
	}
}

// FuzzFastParserMatchesReference holds the streaming decoder to the [2]any
// reference on every matrix and vector answer.
func FuzzFastParserMatchesReference(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"NaN"],[2.5,"3"]]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"+Inf"]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\\\"]"},"values":[[-0.5e-3,"1"]]},{"metric":{},"values":[]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := parseReference(b)
		got, _, apiErr, gerr := parseStream(b)
		if apiErr != nil || errors.Is(werr, errNotSeries) {
			return
		}
		if errors.Is(gerr, errDuplicateMember) {
			require.True(t, werr != nil || hasDuplicateMember(t, b), "duplicate member reported in %q", b)
			return
		}
		if werr != nil || gerr != nil {
			require.Equal(t, werr == nil, gerr == nil, "reference error %v, stream error %v", werr, gerr)
			return
		}
		sameSeries(t, want, got)
	})
}

// FuzzStreamMatchesBuffered holds the streaming decoder to the parser it
// replaced on every input: the same series, warnings, API error and
// whether it fails, except that a duplicated member is refused.
func FuzzStreamMatchesBuffered(f *testing.F) {
	f.Add([]byte(`{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"NaN"],[2.5,"3"]]}]}}`))
	f.Add([]byte(`{"data":{"result":[{"metric":{},"value":[1.5,"+Inf"]}],"resultType":"vector"},"status":"success"}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}`))
	f.Add([]byte(`{"status":"error","errorType":"timeout","error":"x","data":{"resultType":"matrix","result":5}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1}},{"values":[[1,"x"]]}]}}`))
	// The splitter's cases: escapes and brackets in strings, white space
	// between elements, the envelope going on after the result.
	f.Add([]byte(`{"data":{"resultType":"matrix","result":[ {"metric":{"a":"x\"]}\\"},"values":[[1,"2"]]} , {"metric":{"b":"é"},"values":[[1e3,"NaN"]]} ],"x":[{"y":"]"}]} ,"warnings":["w"],"status":"success"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wwarn, wapi, werr := parseBuffered(b)
		got, gwarn, gapi, gerr := parseStream(b)
		if errors.Is(gerr, errDuplicateMember) {
			// Malformed past the duplicate: both fail, for different reasons.
			require.True(t, werr != nil || hasDuplicateMember(t, b), "duplicate member reported in %q", b)
			return
		}
		require.Equal(t, werr == nil, gerr == nil, "buffered error %v, stream error %v", werr, gerr)
		require.Equal(t, wapi, gapi)
		if werr == nil && wapi == nil {
			require.Equal(t, wwarn, gwarn)
			sameSeries(t, want, got)
		}
	})
}

// hasDuplicateMember says whether the envelope names data twice or the
// data names resultType or result twice (names compare as encoding/json
// compares them, ignoring case).
func hasDuplicateMember(t *testing.T, b []byte) bool {
	names := func(raw []byte, watch ...string) (dup bool, values map[string]json.RawMessage) {
		seen := map[string]bool{}
		dec := json.NewDecoder(bytes.NewReader(raw))
		values = map[string]json.RawMessage{}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return false, values
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return false, values
			}
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				return false, values
			}
			name := tok.(string)
			for _, w := range watch {
				if !strings.EqualFold(name, w) {
					continue
				}
				dup = dup || seen[w]
				seen[w] = true
				values[w] = v
			}
		}
		return dup, values
	}
	dup, env := names(b, "data")
	if dup {
		return true
	}
	dup, _ = names(env["data"], "resultType", "result")
	return dup
}

// BenchmarkDecodeDiscoveryAnswer decodes what one of discovery's range
// queries returns at 10,000 versions (10,000 series of 6 points) into the
// set of versions, streaming and with the parser it replaced (the whole
// body read, then parsed) in the same run. retained-MiB is the heap still
// live when the set is complete and the answer not yet dropped: the
// buffered parser holds the body and every series there.
func BenchmarkDecodeDiscoveryAnswer(b *testing.B) {
	data := discoveryAnswer()
	type key struct{ f, v string }
	retained := func(b *testing.B, keep ...any) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "retained-MiB")
		runtime.KeepAlive(keep)
	}
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			set := map[key]bool{}
			_, apiErr, err := decodeStream(bytes.NewReader(data), func(s Series) error {
				set[key{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}] = hasPositive(s.Samples)
				return nil
			})
			if err != nil || apiErr != nil || len(set) != 10000 {
				b.Fatal(err, apiErr, len(set))
			}
			if i == b.N-1 {
				retained(b, set)
			}
		}
	})
	b.Run("buffered", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			raw, err := io.ReadAll(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			series, _, _, err := parseBuffered(raw)
			if err != nil {
				b.Fatal(err)
			}
			set := map[key]bool{}
			for _, s := range series {
				set[key{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}] = hasPositive(s.Samples)
			}
			if i == b.N-1 {
				retained(b, set, raw, series)
			}
		}
	})
}

// discoveryAnswer is what one of discovery's range queries returns at
// 10,000 versions: 10,000 series of 6 points.
func discoveryAnswer() []byte {
	body, _ := matrixAnswer(10000, 6, 2*time.Minute, func(e *bytes.Buffer, i int) {
		fmt.Fprintf(e, `"function_id":"3f6c2b1e-%08d","function_version_id":"9a1d4e7c-%08d","nca_id":"nca-%06d"`, i, i, i%500)
	}, func(i int) float64 { return float64(i % 3) })
	return body
}
