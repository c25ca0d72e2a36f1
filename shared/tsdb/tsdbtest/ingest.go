// Package tsdbtest puts samples into the real test TSDBs: VictoriaMetrics
// through its import API and Prometheus through its remote-write receiver,
// so the tsdb package's queries are tested against the servers users run,
// not against canned HTTP answers.
package tsdbtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Series is one labelled series; Labels must include __name__.
type Series struct {
	Labels  map[string]string
	Samples []Point
}

// ImportVM writes series through VictoriaMetrics' /api/v1/import (JSON
// lines) and drops its rollup cache so the data is queryable at once.
func ImportVM(ctx context.Context, baseURL string, series []Series) error {
	var buf bytes.Buffer
	for _, s := range series {
		line := struct {
			Metric     map[string]string `json:"metric"`
			Values     []float64         `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}{Metric: s.Labels}
		for _, p := range s.Samples {
			line.Values = append(line.Values, p.V)
			line.Timestamps = append(line.Timestamps, p.T.UnixMilli())
		}
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := post(ctx, baseURL+"/api/v1/import", "application/json", nil, buf.Bytes()); err != nil {
		return fmt.Errorf("import into victoria-metrics: %w", err)
	}
	// Imported rows reach search after an in-memory flush; the cache of
	// earlier answers must go too.
	_ = post(ctx, baseURL+"/internal/force_flush", "text/plain", nil, nil)
	_ = post(ctx, baseURL+"/internal/resetRollupResultCache", "text/plain", nil, nil)
	return nil
}

// RemoteWriteProm sends series with Prometheus' remote-write protocol: a
// snappy-compressed protobuf WriteRequest. It is encoded here field by
// field (WriteRequest 1: TimeSeries{1: Label{1 name, 2 value}, 2:
// Sample{1 value double, 2 timestamp int64}}) to avoid pulling the whole
// Prometheus module into the build for one message.
func RemoteWriteProm(ctx context.Context, baseURL string, series []Series) error {
	var req []byte
	for _, s := range series {
		var ts []byte
		names := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			var l []byte
			l = protowire.AppendTag(l, 1, protowire.BytesType)
			l = protowire.AppendString(l, k)
			l = protowire.AppendTag(l, 2, protowire.BytesType)
			l = protowire.AppendString(l, s.Labels[k])
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, l)
		}
		samples := append([]Point(nil), s.Samples...)
		sort.Slice(samples, func(i, j int) bool { return samples[i].T.Before(samples[j].T) })
		for _, p := range samples {
			var sm []byte
			sm = protowire.AppendTag(sm, 1, protowire.Fixed64Type)
			sm = protowire.AppendFixed64(sm, math.Float64bits(p.V))
			sm = protowire.AppendTag(sm, 2, protowire.VarintType)
			sm = protowire.AppendVarint(sm, uint64(p.T.UnixMilli()))
			ts = protowire.AppendTag(ts, 2, protowire.BytesType)
			ts = protowire.AppendBytes(ts, sm)
		}
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, ts)
	}
	hdr := map[string]string{"Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0"}
	if err := post(ctx, baseURL+"/api/v1/write", "application/x-protobuf", hdr, snappy.Encode(nil, req)); err != nil {
		return fmt.Errorf("remote-write into prometheus: %w", err)
	}
	return nil
}

func post(ctx context.Context, url, ctype string, hdr map[string]string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// Worker describes synthetic workers of one version for Generate.
type Worker struct {
	FunctionID, FunctionVersionID, NcaID string
	Instances                            int
	Utilization                          float64 // 0..1 busy fraction of each worker's one thread
	RequestsPerSecond                    float64 // 0 = no request counter
	Extra                                map[string]string
}

// Generate produces realistic worker and request series from start to end
// at a 15 s scrape interval: per worker a busy-seconds counter and a
// thread-count gauge, and per version a request counter.
func Generate(ws []Worker, start, end time.Time) []Series {
	const scrape = 15 * time.Second
	var out []Series
	for _, w := range ws {
		base := map[string]string{"function_id": w.FunctionID, "function_version_id": w.FunctionVersionID, "nca_id": w.NcaID}
		for k, v := range w.Extra {
			base[k] = v
		}
		with := func(name string, extra ...string) map[string]string {
			l := map[string]string{"__name__": name}
			for k, v := range base {
				l[k] = v
			}
			for i := 0; i+1 < len(extra); i += 2 {
				l[extra[i]] = extra[i+1]
			}
			return l
		}
		for i := 0; i < w.Instances; i++ {
			inst := fmt.Sprintf("%s-w%d", w.FunctionVersionID, i)
			busy := Series{Labels: with("nvcf_worker_service_worker_thread_busy_seconds_total", "instance_id", inst)}
			threads := Series{Labels: with("nvcf_worker_service_worker_thread_count_total", "instance_id", inst)}
			for t := start; !t.After(end); t = t.Add(scrape) {
				busy.Samples = append(busy.Samples, Point{T: t, V: w.Utilization * t.Sub(start).Seconds()})
				threads.Samples = append(threads.Samples, Point{T: t, V: 1})
			}
			out = append(out, busy, threads)
		}
		if w.RequestsPerSecond > 0 {
			req := Series{Labels: with("function_request_total")}
			for t := start; !t.After(end); t = t.Add(scrape) {
				req.Samples = append(req.Samples, Point{T: t, V: w.RequestsPerSecond * t.Sub(start).Seconds()})
			}
			out = append(out, req)
		}
	}
	return out
}
