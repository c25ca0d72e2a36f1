package scale

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"function/shared/policy"
)

// BenchmarkDecisionLineUnchanged is what a version whose count stays as
// asked costs in decision-line logging, each way in the same iteration so
// the ratios compare like with like on one machine: before (the bucket's
// logger With the source, then With the version, and the line at info),
// one With (the version and source at once) and the line at info
// (DECISION_LOG_UNCHANGED=true), and one With with the line at debug under
// a handler at info (false). A bucket's logger carries its bucket, cycle
// and event id, as in handleBucket. It reports ns a version each way and
// the ratios to before.
func BenchmarkDecisionLineUnchanged(b *testing.B) {
	bucket := slog.New(slog.NewJSONHandler(io.Discard, nil)).With("bucket", 7, "cycle", int64(1764622800000), "event_id", "1764622800000-7-128")
	now := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	in := policy.Input{Now: now, Source: "worker", LastInvokedAt: now.Add(-time.Minute),
		Utilization: []policy.Sample{{At: now.Add(-30 * time.Second), Value: 41.5}}}
	o := Outcome{Current: 3, Desired: 3, LastRequested: 3, Utilization: 41.5, Valid: true, Reason: "within_tolerance", Action: "unchanged",
		Detail: "utilization 41.5 % (target 75 %), 3 instances; within tolerance"}
	p := policy.Policy{KeepAlive: policy.KeepAliveFixed, KeepAlivePercentile: 99, PrewarmPercentile: 5}
	obs := observation{cost: policy.Cost{}.Learn(now, 93, 100, 50)}
	d := policy.Decision{Desired: 3, Recommendation: 3, Valid: true}
	const fid, vid, src = "3fa85f64-5717-4562-b3fc-2c963f66afa6", "9b2c1e0a-7d4f-4e6b-8a1c-5f3e2d1c0b9a", "worker"
	ctx := context.Background()
	var before, oneWith, quiet time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		log := bucket.With("source", src).With("function_id", fid, "function_version_id", vid)
		logDecision(log, o, in, d, append(keepAliveFields(p, in), learnedFields(obs)...)...)
		t1 := time.Now()
		log = bucket.With("source", src, "function_id", fid, "function_version_id", vid)
		if level := decisionLevel(o, true); log.Enabled(ctx, level) {
			logDecisionAt(log, level, o, in, d, append(keepAliveFields(p, in), learnedFields(obs)...)...)
		}
		t2 := time.Now()
		log = bucket.With("source", src, "function_id", fid, "function_version_id", vid)
		if level := decisionLevel(o, false); log.Enabled(ctx, level) {
			logDecisionAt(log, level, o, in, d, append(keepAliveFields(p, in), learnedFields(obs)...)...)
		}
		t3 := time.Now()
		before, oneWith, quiet = before+t1.Sub(t0), oneWith+t2.Sub(t1), quiet+t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(before.Nanoseconds())/n, "ns-before/version")
	b.ReportMetric(float64(oneWith.Nanoseconds())/n, "ns-onewith/version")
	b.ReportMetric(float64(quiet.Nanoseconds())/n, "ns-quiet/version")
	b.ReportMetric(float64(oneWith)/float64(before), "onewith/before")
	b.ReportMetric(float64(quiet)/float64(before), "quiet/before")
}
