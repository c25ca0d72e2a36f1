package tsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFastSeriesTakesWhatServersSendAndDeclinesTheRest holds the fast path
// to encoding/json on the shapes it takes, and checks it takes the shape
// Prometheus and VictoriaMetrics send (so the fuzz tests' agreement is not
// the general way agreeing with itself) and declines the ones it leaves
// to encoding/json.
func TestFastSeriesTakesWhatServersSendAndDeclinesTheRest(t *testing.T) {
	for _, b := range []string{
		`{"metric":{"function_id":"f","function_version_id":"v","nca_id":"n"},"values":[[1700000000,"1"],[1700000060.5,"NaN"],[1700000120,"+Inf"]]}`,
		`{"metric":{"a":"b"},"value":[1700000000.123,"0.25"]}`,
		`{"values":[[1,"2"]],"metric":{}}`,
		`{"metric":{"a":"b","a":"c"},"values":[]}`,
		`{"metric":{"é":"ü]x"},"values":[[1,"2"]]}`,
		`{}`,
	} {
		got, ok := fastSeries([]byte(b))
		require.True(t, ok, "%s declined", b)
		var want apiSeries
		require.NoError(t, json.Unmarshal([]byte(b), &want))
		require.Equal(t, want.Value == nil, got.Value == nil, b)
		kind := "matrix"
		if want.Value != nil {
			kind = "vector"
		}
		ws, werr := seriesFrom(kind, 0, want)
		gs, gerr := seriesFrom(kind, 0, got)
		require.NoError(t, werr)
		require.NoError(t, gerr)
		sameSeries(t, []Series{ws}, []Series{gs})
	}
	for _, b := range []string{
		`{"metric": {"a":"b"},"values":[[1,"2"]]}`,      // a space
		`{"metric":{"a":"b\u0041"},"values":[[1,"2"]]}`, // an escape
		`{"Metric":{"a":"b"},"values":[[1,"2"]]}`,       // a name in other case
		`{"metric":{"a":"b"},"values":[[1,"2"]],"x":1}`, // another member
		`{"metric":{"a":"b"},"metric":{"c":"d"}}`,       // a repeated member (encoding/json merges)
		`{"metric":null,"values":[[1,"2"]]}`,            // null
		`{"metric":{"a":1},"values":[[1,"2"]]}`,         // a label that is no string
		`{"metric":{"a":"b"},"values":[[1,"2",3]]}`,     // a point fastPoint declines
		`{"metric":{"a":"b"},"values":[["1","2"]]}`,     // a quoted timestamp
		"{\"metric\":{\"a\":\"\xff\"},\"values\":[]}",   // invalid UTF-8, which encoding/json replaces
		`{"metric":{"a":"b"},"value":[1,"2"],"value":[2,"3"]}`,
	} {
		_, ok := fastSeries([]byte(b))
		require.False(t, ok, "%s taken", b)
	}
}

// TestFastSeriesTakesOnlyJSON checks fastSeries declines every element that
// is not valid JSON, now that nothing checks an element's syntax before it:
// what it declines goes to encoding/json, which refuses it. strconv takes
// timestamps JSON does not, and a string may not hold a control character.
func TestFastSeriesTakesOnlyJSON(t *testing.T) {
	for _, ts := range []string{"Inf", "+Inf", "0x1p3", "+1", ".5", "1.", "01", "-01", "1e", "1e+", "1_0", "-", "1.5.5", "1ee3", "infinity", "NaN"} {
		b := `{"metric":{"a":"b"},"values":[[` + ts + `,"2"]]}`
		require.False(t, json.Valid([]byte(b)), b)
		_, ok := fastSeries([]byte(b))
		require.False(t, ok, "%s taken", b)
	}
	for _, b := range []string{
		"{\"metric\":{\"a\x01\":\"b\"},\"values\":[[1,\"2\"]]}",
		"{\"metric\":{\"a\":\"b\tc\"},\"values\":[[1,\"2\"]]}",
		"{\"metric\":{\"a\":\"b\"},\"values\":[[1,\"2\n\"]]}",
		"{\"metric\":{\"a\":\"b\"},\"value\":[1,\"\x00\"]}",
		`{"metric":{"a":"b"},"values":[[1,"2"]]}}`,
		`{"metric":{"a":"b"},"values":[[1,"2"]],}`,
		`{"metric":{"a":"b",},"values":[]}`,
		`{"metric":{"a":"b"},"values":[[1,"2"],]}`,
		`{"metric":{"a":"b"},"values":[[1,"2"]}`,
		`{"metric":{"a":"b"}"values":[]}`,
		`{"metric":{"a""b"}}`,
	} {
		require.False(t, json.Valid([]byte(b)), b)
		_, ok := fastSeries([]byte(b))
		require.False(t, ok, "%q taken", b)
	}
	// The numbers JSON does allow are still taken, with encoding/json's values.
	b := []byte(`{"metric":{},"values":[[-0,"1"],[0.5,"2"],[1E+3,"3"],[1.5e-3,"4"],[17e2,"5"],[10,"6"]]}`)
	got, ok := fastSeries(b)
	require.True(t, ok)
	var want apiSeries
	require.NoError(t, json.Unmarshal(b, &want))
	ws, _ := seriesFrom("matrix", 0, want)
	gs, _ := seriesFrom("matrix", 0, got)
	sameSeries(t, []Series{ws}, []Series{gs})
	require.True(t, bytes.Contains(b, []byte("1E+3")))
}

// BenchmarkDecodeBucketAnswer decodes one of the scale function's range
// answers for a bucket of 1,000 versions (1,000 series of 11 points), and
// its elements alone through fastSeries and through encoding/json in the
// same run: what the fast path saves per answer.
func BenchmarkDecodeBucketAnswer(b *testing.B) {
	data, elems := bucketAnswer()
	b.Run("answer", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			n := 0
			_, apiErr, err := decodeStream(bytes.NewReader(data), func(s Series) error { n += len(s.Samples); return nil })
			if err != nil || apiErr != nil || n != 11000 {
				b.Fatal(err, apiErr, n)
			}
		}
	})
	b.Run("elements/fast", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			for _, e := range elems {
				if s, ok := fastSeries(e); !ok || len(s.Values) != 11 {
					b.Fatal("declined")
				}
			}
		}
	})
	b.Run("elements/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			for _, e := range elems {
				var s apiSeries
				if err := json.Unmarshal(e, &s); err != nil || len(s.Values) != 11 {
					b.Fatal(err)
				}
			}
		}
	})
}

// matrixHead is how the benchmarks' answers start, up to their result.
const matrixHead = `{"status":"success","data":{"resultType":"matrix","result":`

// bucketAnswer is one of the scale function's range answers for a bucket
// of 1,000 versions (1,000 series of 11 points), and its elements.
func bucketAnswer() (body []byte, elems [][]byte) {
	return matrixAnswer(1000, 11, time.Minute, func(e *bytes.Buffer, i int) {
		fmt.Fprintf(e, `"function_id":"3f6c2b1e-%08d","function_version_id":"9a1d4e7c-%08d"`, i, i)
	}, func(i int) float64 { return float64(i%7) * 1.25 })
}

// matrixAnswer is a matrix answer of n series of points points step apart,
// series i with the labels labels writes and the value value gives, and
// its elements.
func matrixAnswer(n, points int, step time.Duration, labels func(e *bytes.Buffer, i int), value func(i int) float64) (body []byte, elems [][]byte) {
	var buf bytes.Buffer
	buf.WriteString(matrixHead + `[`)
	start := time.Unix(1795600000, 0)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		var e bytes.Buffer
		e.WriteString(`{"metric":{`)
		labels(&e, i)
		e.WriteString(`},"values":[`)
		for j := 0; j < points; j++ {
			if j > 0 {
				e.WriteByte(',')
			}
			fmt.Fprintf(&e, `[%d,"%g"]`, start.Add(time.Duration(j)*step).Unix(), value(i))
		}
		e.WriteString(`]}`)
		elems = append(elems, e.Bytes())
		buf.Write(e.Bytes())
	}
	buf.WriteString(`]}}`)
	return buf.Bytes(), elems
}
