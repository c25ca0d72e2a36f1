package harness

import (
	"context"
	"fmt"
	"math"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one reading of a process's /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// ScrapeMetrics reads and parses http://addr/metrics.
func ScrapeMetrics(ctx context.Context, addr string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse metrics of %s: %w", addr, err)
	}
	return Metrics(mfs), nil
}

// Find returns the first series of family name whose labels include the
// name/value pairs in want, or nil.
func (s Metrics) Find(name string, want ...string) *dto.Metric {
	for _, m := range s[name].GetMetric() {
		if hasLabels(m, want) {
			return m
		}
	}
	return nil
}

// Value reads a counter or gauge; a series that does not exist reads 0 (a
// counter that was never incremented), and any other kind NaN.
func (s Metrics) Value(name string, labels ...string) float64 {
	m := s.Find(name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return math.NaN()
}

// Count reads a histogram's sample count (0 when the series does not exist).
func (s Metrics) Count(name string, labels ...string) uint64 {
	m := s.Find(name, labels...)
	if m == nil || m.Histogram == nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

// Total sums a counter family over every series whose labels include want.
func (s Metrics) Total(name string, want ...string) float64 {
	var sum float64
	for _, m := range s[name].GetMetric() {
		if hasLabels(m, want) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want []string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(want); i += 2 {
		if have[want[i]] != want[i+1] {
			return false
		}
	}
	return true
}
