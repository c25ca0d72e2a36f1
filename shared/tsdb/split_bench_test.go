package tsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// decoderResult is how result read a matrix or vector before the splitter,
// kept as the benchmark's baseline: the decoder read each element into a
// json.RawMessage (scanning it twice) before element parsed it.
func decoderResult(a *answerReader, resultType string) (dataErr, err error) {
	if open, dataErr, err := openArray(a.dec, resultType); !open {
		return dataErr, err
	}
	var raw json.RawMessage
	for i := 0; a.dec.More(); i++ {
		if err := a.dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("decode %s element %d: %w", resultType, i, err)
		}
		if dataErr != nil {
			continue
		}
		if dataErr, err = a.element(resultType, i, raw); err != nil {
			return nil, err
		}
	}
	if _, err := a.dec.Token(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", resultType, err)
	}
	return dataErr, nil
}

// BenchmarkDecodeResultSplitterVsDecoder reads the result arrays of the
// bucket and discovery answers the other benchmarks decode, with the
// splitter and with the decoder it replaced, one after the other in each
// iteration (so both see the same load on a shared machine), and reports
// each one's time and allocations per read and their ratio: new/old below
// 1 is faster. ns/op is the two reads together. The CPU is in go test's
// header. (testing.Benchmark cannot run inside a benchmark: it waits for
// the lock the running one holds.)
func BenchmarkDecodeResultSplitterVsDecoder(b *testing.B) {
	bucket, _ := bucketAnswer()
	for _, answer := range []struct {
		name   string
		body   []byte
		series int
	}{{"bucket", bucket, 1000}, {"discovery", discoveryAnswer(), 10000}} {
		result := answer.body[len(matrixHead) : len(answer.body)-len(`}}`)]
		read := func(b *testing.B, how func(*answerReader, string) (error, error)) {
			n := 0
			src := bytes.NewReader(result)
			a := &answerReader{dec: json.NewDecoder(src), src: src, each: func(Series) error { n++; return nil }}
			if dataErr, err := how(a, "matrix"); dataErr != nil || err != nil || n != answer.series {
				b.Fatal(dataErr, err, n)
			}
		}
		b.Run(answer.name, func(b *testing.B) {
			var old, split time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				read(b, decoderResult)
				mid := time.Now()
				read(b, (*answerReader).result)
				old, split = old+mid.Sub(start), split+time.Since(mid)
			}
			b.StopTimer()
			b.ReportMetric(float64(split.Nanoseconds())/float64(b.N), "new-ns/op")
			b.ReportMetric(float64(old.Nanoseconds())/float64(b.N), "old-ns/op")
			b.ReportMetric(float64(split)/float64(old), "new/old")
			b.ReportMetric(testing.AllocsPerRun(1, func() { read(b, (*answerReader).result) }), "new-allocs/op")
			b.ReportMetric(testing.AllocsPerRun(1, func() { read(b, decoderResult) }), "old-allocs/op")
		})
	}
}
