package tsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// parseReference is the parser before point learned its fast path: the
// pairs decoded as [2]any. The fast parser must agree with it on every
// input, and the benchmark measures against it.
func parseReference(body []byte) ([]Series, error) {
	var r apiResponse
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
		return nil, fmt.Errorf("not a series result")
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

func TestFastPointAgreesWithTheGeneralWay(t *testing.T) {
	for _, b := range []string{
		`[1,"2"]`, `[1.5,"NaN"]`, `[1700000000.123,"+Inf"]`, `[1,"-Inf"]`, `[1, "2"]`, `[1,"2",3]`,
		`["1","2"]`, `[1,2]`, `[1,"a,b"]`, `[1,"\u0032"]`, `[1e3,"1e-3"]`, `[-1,"0x1p3"]`, `null`, `[1]`, `[]`,
	} {
		body := []byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[` + b + `]}]}}`)
		want, werr := parseReference(body)
		got, _, _, gerr := parseResponse(body)
		require.Equal(t, werr == nil, gerr == nil, "%s: reference error %v, fast error %v", b, werr, gerr)
		if werr == nil {
			sameSeries(t, want, got)
		}
	}
}

func FuzzFastParserMatchesReference(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"NaN"],[2.5,"3"]]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"+Inf"]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := parseReference(b)
		got, _, apiErr, gerr := parseResponse(b)
		if apiErr != nil {
			return
		}
		if werr != nil || gerr != nil {
			require.Equal(t, werr == nil, gerr == nil, "reference error %v, fast error %v", werr, gerr)
			return
		}
		sameSeries(t, want, got)
	})
}

// BenchmarkParseBucketResponse parses what one bucket's utilization query
// returns (1,000 series of 10 points) with the fast path and with the
// reference in the same process, and reports the ratio.
func BenchmarkParseBucketResponse(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	start := time.Unix(1795600000, 0)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"metric":{"function_id":"f-%06d","function_version_id":"v-%06d"},"values":[`, i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `[%d,"%g"]`, start.Add(time.Duration(j)*time.Minute).Unix(), 42.5+float64(i%7))
		}
		body.WriteString(`]}`)
	}
	body.WriteString(`]}}`)
	data := body.Bytes()
	var fast, ref time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, _, _, err := parseResponse(data); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := parseReference(data); err != nil {
			b.Fatal(err)
		}
		fast, ref = fast+t1.Sub(t0), ref+time.Since(t1)
	}
	b.ReportMetric(float64(fast.Microseconds())/float64(b.N), "fast-us/op")
	b.ReportMetric(float64(ref.Microseconds())/float64(b.N), "reference-us/op")
	b.ReportMetric(ref.Seconds()/fast.Seconds(), "x-faster")
}
