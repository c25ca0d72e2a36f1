package tsdb

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Metric names are a contract with NVCF's workers and invocation service.
const (
	MetricBusySeconds    = "nvcf_worker_service_worker_thread_busy_seconds_total"
	MetricThreadCount    = "nvcf_worker_service_worker_thread_count_total"
	MetricRequests       = "function_request"
	MetricRequestsTotal  = "function_request_total"
	labelFunctionID      = "function_id"
	labelFunctionVersion = "function_version_id"
	labelNcaID           = "nca_id"
)

// FunctionVersion identifies one deployed version of a function.
type FunctionVersion struct {
	FunctionID        string
	FunctionVersionID string
	NcaID             string
}

// ActiveVersion is a version discovery found: Invoked when its request
// counters grew in the lookback, otherwise it only has running workers.
type ActiveVersion struct {
	FunctionVersion
	Invoked bool
}

// LabelFilter narrows every selector to one environment (the reference's
// aws_env / environment label); the zero value filters nothing.
type LabelFilter struct{ Name, Value string }

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func (f LabelFilter) matcher() (string, error) {
	if f.Name == "" {
		return "", nil
	}
	if !labelNameRE.MatchString(f.Name) {
		return "", fmt.Errorf("label filter name %q is not a Prometheus label name", f.Name)
	}
	return f.Name + "=" + quote(f.Value), nil
}

// quote renders a PromQL double-quoted string literal.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// idRE is what a function, version or NCA id may look like: NVCF uses
// UUIDs; anything else here could break a selector or a lock name.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// Skipped counts series discovery ignored, by reason.
type Skipped map[string]int

// Reasons returns the counts (nil when nothing was skipped).
func (s Skipped) Reasons() map[string]int {
	if len(s) == 0 {
		return nil
	}
	return s
}

func selector(metric string, matchers ...string) string {
	var ms []string
	for _, m := range matchers {
		if m != "" {
			ms = append(ms, m)
		}
	}
	return metric + "{" + strings.Join(ms, ",") + "}"
}

func promDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}

// ActiveVersions finds every version with requests (function_request or
// function_request_total increasing) or with worker series during the
// lookback before now. It costs two range queries, however many versions
// exist. Series whose ids are not valid are skipped and counted, never
// fatal.
func (c *Client) ActiveVersions(ctx context.Context, now time.Time, lookback time.Duration, filter LabelFilter) ([]ActiveVersion, Skipped, error) {
	fm, err := filter.matcher()
	if err != nil {
		return nil, nil, err
	}
	// Five windows tile the lookback; each point's increase covers one
	// step and a half, so a scrape falling on a boundary is not lost.
	step := max(lookback/5, time.Second)
	window := promDuration(step + step/2)
	by := "by (function_id, function_version_id, nca_id)"
	invoked := fmt.Sprintf(`(sum %s (increase(%s[%s])) > 0) or (sum %s (increase(%s[%s])) > 0)`,
		by, selector(MetricRequests, fm), window, by, selector(MetricRequestsTotal, fm), window)
	running := fmt.Sprintf(`count %s (%s)`, by, selector(MetricThreadCount, fm))
	start := now.Add(-lookback)

	inv, _, err := c.QueryRange(ctx, invoked, start, now, step)
	if err != nil {
		return nil, nil, fmt.Errorf("invoked versions: %w", err)
	}
	run, _, err := c.QueryRange(ctx, running, start, now, step)
	if err != nil {
		return nil, nil, fmt.Errorf("running versions: %w", err)
	}
	skipped := Skipped{}
	found := map[[2]string]*ActiveVersion{}
	add := func(series []Series, invoked bool) {
		for _, s := range series {
			if !hasPositive(s.Samples) && invoked {
				continue
			}
			fid, vid, nca := s.Labels[labelFunctionID], s.Labels[labelFunctionVersion], s.Labels[labelNcaID]
			switch {
			case !idRE.MatchString(fid):
				skipped["invalid function_id"]++
				continue
			case !idRE.MatchString(vid):
				skipped["invalid function_version_id"]++
				continue
			case nca != "" && !idRE.MatchString(nca):
				skipped["invalid nca_id"]++
				continue
			}
			k := [2]string{fid, vid}
			v, ok := found[k]
			if !ok {
				v = &ActiveVersion{FunctionVersion: FunctionVersion{FunctionID: fid, FunctionVersionID: vid}}
				found[k] = v
			}
			v.Invoked = v.Invoked || invoked
			if v.NcaID == "" {
				v.NcaID = nca
			}
		}
	}
	add(inv, true)
	add(run, false)
	out := make([]ActiveVersion, 0, len(found))
	for _, v := range found {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FunctionID != out[j].FunctionID {
			return out[i].FunctionID < out[j].FunctionID
		}
		return out[i].FunctionVersionID < out[j].FunctionVersionID
	})
	return out, skipped, nil
}

func hasPositive(ss []Sample) bool {
	for _, s := range ss {
		if s.Value > 0 && !math.IsInf(s.Value, 0) {
			return true
		}
	}
	return false
}

// MetricsOptions shape the batched per-bucket queries.
type MetricsOptions struct {
	Window   time.Duration // rate window (reference: 70 s)
	Step     time.Duration // sample step (reference: 60 s)
	Lookback time.Duration // samples span (reference: 600 s)
	Filter   LabelFilter
}

// VersionMetrics is what the TSDB says about one version.
type VersionMetrics struct {
	// Utilization is percent busy per step, oldest first, NaN/Inf kept.
	// Empty means unknown, not idle.
	Utilization []Sample
	// Instances is the count of worker series at the last settled step
	// (now rounded down to the step, minus one step: the newest point is
	// often partial). InstancesKnown is false when the version had no
	// worker series there, which the policy treats as unknown.
	Instances      int
	InstancesKnown bool
	// LastInvokedAt is the newest step whose request increase was > 0.
	LastInvokedAt time.Time
	// RequestRate is requests per second over the window at the newest step.
	RequestRate float64
}

// BucketMetrics fetches utilization, instances and invocations for a whole
// bucket with three range queries (more only when the id list exceeds
// MaxSelectorBytes), so TSDB load grows with buckets, not functions.
//
// Utilization per version and step is
//
//	100 * sum(increase(busy_seconds[W])) / W / sum(thread_count)
//
// by function_id and function_version_id: the busy seconds of all of the
// version's worker threads over the window, divided by the thread-seconds
// the window offered. Summing before dividing weights workers by their
// threads, which is what "percent of capacity in use" means.
func (c *Client) BucketMetrics(ctx context.Context, versions []FunctionVersion, now time.Time, o MetricsOptions) (map[FunctionVersion]VersionMetrics, error) {
	out := make(map[FunctionVersion]VersionMetrics, len(versions))
	if len(versions) == 0 {
		return out, nil
	}
	if o.Step <= 0 || o.Window <= 0 || o.Lookback < o.Step {
		return nil, fmt.Errorf("bucket metrics: step %s, window %s, lookback %s: want positive step and window and lookback >= step", o.Step, o.Window, o.Lookback)
	}
	fm, err := o.Filter.matcher()
	if err != nil {
		return nil, err
	}
	end := now.Truncate(o.Step)
	start := end.Add(-o.Lookback + o.Step)
	settled := end.Add(-o.Step)
	byKey := map[[2]string]FunctionVersion{}
	for _, v := range versions {
		byKey[[2]string{v.FunctionID, v.FunctionVersionID}] = v
	}
	w := promDuration(o.Window)
	ws := o.Window.Seconds()
	by := "by (function_id, function_version_id)"

	for _, chunk := range chunkIDs(versions, c.cfg.MaxSelectorBytes) {
		sel := labelFunctionVersion + `=~` + quote(chunk)
		util := fmt.Sprintf(`100 * sum %s (increase(%s[%s])) / %g / sum %s (%s)`,
			by, selector(MetricBusySeconds, sel, fm), w, ws, by, selector(MetricThreadCount, sel, fm))
		count := fmt.Sprintf(`count %s (%s)`, by, selector(MetricThreadCount, sel, fm))
		reqs := fmt.Sprintf(`sum %s (increase(%s[%s])) or sum %s (increase(%s[%s]))`,
			by, selector(MetricRequestsTotal, sel, fm), w, by, selector(MetricRequests, sel, fm), w)

		us, _, err := c.QueryRange(ctx, util, start, end, o.Step)
		if err != nil {
			return nil, fmt.Errorf("utilization: %w", err)
		}
		cs, _, err := c.QueryRange(ctx, count, start, end, o.Step)
		if err != nil {
			return nil, fmt.Errorf("instances: %w", err)
		}
		rs, _, err := c.QueryRange(ctx, reqs, start, end, o.Step)
		if err != nil {
			return nil, fmt.Errorf("requests: %w", err)
		}
		update := func(series []Series, f func(m *VersionMetrics, s Series)) {
			for _, s := range series {
				v, ok := byKey[[2]string{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}]
				if !ok {
					continue // another function with the same version id
				}
				m := out[v]
				f(&m, s)
				out[v] = m
			}
		}
		update(us, func(m *VersionMetrics, s Series) { m.Utilization = s.Samples })
		update(cs, func(m *VersionMetrics, s Series) {
			for _, p := range s.Samples {
				if p.At.Equal(settled) && !math.IsNaN(p.Value) {
					m.Instances, m.InstancesKnown = int(p.Value), true
				}
			}
		})
		update(rs, func(m *VersionMetrics, s Series) {
			for _, p := range s.Samples {
				if p.Value > 0 && !math.IsInf(p.Value, 0) {
					m.LastInvokedAt = p.At
				}
			}
			if n := len(s.Samples); n > 0 && s.Samples[n-1].Value >= 0 {
				m.RequestRate = s.Samples[n-1].Value / ws
			}
		})
	}
	return out, nil
}

// chunkIDs renders the versions' ids as regex alternations of at most
// limit bytes each. Ids are regex-escaped: a version id is data, never a
// pattern.
func chunkIDs(versions []FunctionVersion, limit int) []string {
	seen := map[string]bool{}
	var chunks []string
	var b strings.Builder
	for _, v := range versions {
		if seen[v.FunctionVersionID] {
			continue
		}
		seen[v.FunctionVersionID] = true
		id := regexp.QuoteMeta(v.FunctionVersionID)
		if b.Len() > 0 && b.Len()+1+len(id) > limit {
			chunks = append(chunks, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString(id)
	}
	if b.Len() > 0 {
		chunks = append(chunks, b.String())
	}
	return chunks
}
