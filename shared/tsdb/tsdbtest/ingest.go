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

// envLabels spells an NVCF environment ("production", "staging" or "")
// the way each family of series carries it: worker series
// environment=prod|stage, control-plane series environment=production|staging,
// gateway and latency series aws_env=prd|stg. Written out here on purpose,
// independently of the tsdb package, so tests check its selectors.
func envLabels(env, fam string) map[string]string {
	if env == "" {
		return nil
	}
	prod := env == "production"
	switch fam {
	case "worker":
		if prod {
			return map[string]string{"environment": "prod"}
		}
		return map[string]string{"environment": "stage"}
	case "control_plane":
		if prod {
			return map[string]string{"environment": "production"}
		}
		return map[string]string{"environment": "staging"}
	}
	if prod {
		return map[string]string{"aws_env": "prd"}
	}
	return map[string]string{"aws_env": "stg"}
}

// series builds one series of name with labels, sampled every scrape
// interval from start to end by value(t - start).
func series(name string, labels []map[string]string, start, end time.Time, value func(elapsed time.Duration) float64) Series {
	const scrape = 15 * time.Second
	l := map[string]string{"__name__": name}
	for _, m := range labels {
		for k, v := range m {
			l[k] = v
		}
	}
	s := Series{Labels: l}
	for t := start; !t.After(end); t = t.Add(scrape) {
		s.Samples = append(s.Samples, Point{T: t, V: value(t.Sub(start))})
	}
	return s
}

// ControlPlaneVersion describes a bring-your-own-cluster version for
// GenerateControlPlane: only the control plane reports on it.
type ControlPlaneVersion struct {
	FunctionID, FunctionVersionID, NcaID string
	// Instances has one value per control-plane reporter (one series
	// each, told apart by a reporter label), so two reporters at 2 and 3
	// average to 2.5.
	Instances   []float64
	Concurrency float64
	// InFlight is the mean requests being served: the latency-seconds sum
	// grows by InFlight every second (Little's law).
	InFlight          float64
	RequestsPerSecond float64 // 0 = no request counter
	Env               string  // production, staging or "" (no env labels)
	Extra             map[string]string
}

// GenerateControlPlane produces instance, concurrency, latency-sum and
// request series for control-plane versions from start to end.
func GenerateControlPlane(vs []ControlPlaneVersion, start, end time.Time) []Series {
	var out []Series
	for _, v := range vs {
		id := map[string]string{"function_id": v.FunctionID, "function_version_id": v.FunctionVersionID, "nca_id": v.NcaID}
		cp := []map[string]string{id, envLabels(v.Env, "control_plane"), v.Extra}
		for i, n := range v.Instances {
			out = append(out, series("nvcf_function_instances_current", append(cp, map[string]string{"reporter": fmt.Sprint(i)}), start, end,
				func(time.Duration) float64 { return n }))
		}
		out = append(out, series("nvcf_function_concurrency", cp, start, end, func(time.Duration) float64 { return v.Concurrency }))
		out = append(out, series("function_request_latency_sum", []map[string]string{id, envLabels(v.Env, "gateway"), v.Extra}, start, end,
			func(e time.Duration) float64 { return v.InFlight * e.Seconds() }))
		if v.RequestsPerSecond > 0 {
			out = append(out, series("function_request_total", []map[string]string{id, envLabels(v.Env, "worker"), v.Extra}, start, end,
				func(e time.Duration) float64 { return v.RequestsPerSecond * e.Seconds() }))
		}
	}
	return out
}

// GatewayVersion is one version of a GatewayFunction.
type GatewayVersion struct {
	ID, NcaID   string
	Instances   float64
	Concurrency float64
	Unlisted    bool // absent from nvcf_function_info
}

// GatewayFunction describes an LLM function behind the API gateway for
// GenerateGateway.
type GatewayFunction struct {
	FunctionID        string
	Versions          []GatewayVersion
	RequestsPerSecond float64 // gateway requests; 0 = a counter that stays flat
	// InFlight is the mean requests being served: the gateway's
	// duration-seconds sum grows by InFlight every second.
	InFlight float64
	Env      string
	Extra    map[string]string
}

// GenerateGateway produces the gateway's function-level request and
// duration counters and the control plane's per-version instances,
// concurrency and info series from start to end.
func GenerateGateway(fs []GatewayFunction, start, end time.Time) []Series {
	var out []Series
	for _, f := range fs {
		fn := map[string]string{"function_id": f.FunctionID}
		gw := []map[string]string{fn, envLabels(f.Env, "gateway"), f.Extra}
		out = append(out,
			series("llm_api_gateway_http_requests_total", gw, start, end, func(e time.Duration) float64 { return f.RequestsPerSecond * e.Seconds() }),
			series("llm_api_gateway_http_request_duration_seconds_sum", gw, start, end, func(e time.Duration) float64 { return f.InFlight * e.Seconds() }))
		for _, v := range f.Versions {
			id := map[string]string{"function_id": f.FunctionID, "function_version_id": v.ID, "nca_id": v.NcaID}
			cp := []map[string]string{id, envLabels(f.Env, "control_plane"), f.Extra}
			out = append(out,
				series("nvcf_function_instances_current", cp, start, end, func(time.Duration) float64 { return v.Instances }),
				series("nvcf_function_concurrency", cp, start, end, func(time.Duration) float64 { return v.Concurrency }))
			if !v.Unlisted {
				out = append(out, series("nvcf_function_info", cp, start, end, func(time.Duration) float64 { return 1 }))
			}
		}
	}
	return out
}
