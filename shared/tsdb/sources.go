package tsdb

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"function/shared/ids"
)

// Source names where a version's scaling inputs come from. NVCF exports
// three families of series, and a version is seen through exactly one.
type Source string

// The three metric sources, in the order a version is matched to them.
const (
	// SourceWorker: the version's workers export busy seconds and thread
	// counts (the default for NVCF-hosted containers).
	SourceWorker Source = "worker"
	// SourceGateway: LLM functions behind the API gateway, whose request
	// series carry only function_id; they are decided per function.
	SourceGateway Source = "gateway"
	// SourceControlPlane: bring-your-own-cluster functions, and any version
	// with neither of the above; utilization by Little's law from the
	// control plane's latency sums, instances and concurrency.
	SourceControlPlane Source = "control_plane"
)

// Sources lists every source, for metrics and dashboards.
var Sources = []Source{SourceWorker, SourceGateway, SourceControlPlane}

// Metric names of the gateway and control-plane sources (a contract with
// NVCF's API gateway and control plane).
const (
	MetricInstancesCurrent   = "nvcf_function_instances_current"
	MetricConcurrency        = "nvcf_function_concurrency"
	MetricFunctionInfo       = "nvcf_function_info"
	MetricRequestLatencySum  = "function_request_latency_sum"
	MetricGatewayRequests    = "llm_api_gateway_http_requests_total"
	MetricGatewayDurationSum = "llm_api_gateway_http_request_duration_seconds_sum"
)

// Environment selects the NVCF environment whose series are read. Each
// family of series spells it its own way (see matcher); the zero value
// reads every environment (the reference's ignore_env, for self-hosted
// installs whose series carry no environment label).
type Environment string

// The environments NVCF runs.
const (
	EnvProduction Environment = "production"
	EnvStaging    Environment = "staging"
)

// family is a group of series sharing one environment label convention.
type family int

const (
	familyWorker       family = iota // worker threads and request counters: environment=prod|stage
	familyControlPlane               // instances, concurrency, function info: environment=production|staging
	familyGateway                    // gateway requests and durations, request latency: aws_env=prd|stg
)

// Validate accepts production, staging or empty (no filter).
func (e Environment) Validate() error {
	switch e {
	case "", EnvProduction, EnvStaging:
		return nil
	}
	return fmt.Errorf("environment %q: want production or staging", string(e))
}

// matcher is the environment matcher for one family's selectors.
func (e Environment) matcher(f family) string {
	if e == "" {
		return ""
	}
	prod := e == EnvProduction
	pick := func(p, s string) string {
		if prod {
			return p
		}
		return s
	}
	switch f {
	case familyWorker:
		return `environment=` + quote(pick("prod", "stage"))
	case familyControlPlane:
		return `environment=` + quote(pick("production", "staging"))
	default:
		return `aws_env=` + quote(pick("prd", "stg"))
	}
}

// Filters narrow every selector: to one environment, and to one more
// label (a tenant, or a test run on a shared server).
type Filters struct {
	Env   Environment
	Extra LabelFilter
}

// matchers returns the matchers a selector of family f carries.
func (f Filters) matchers(fam family) ([]string, error) {
	if err := f.Env.Validate(); err != nil {
		return nil, err
	}
	extra, err := f.Extra.matcher()
	if err != nil {
		return nil, err
	}
	return []string{f.Env.matcher(fam), extra}, nil
}

// filters is the options' view as Filters.
func (o MetricsOptions) filters() Filters { return Filters{Env: o.Env, Extra: o.Filter} }

// window is the validated time grid of a batched query.
type window struct {
	start, end, settled time.Time
	step                time.Duration
	rate                string  // PromQL duration of the rate window
	seconds             float64 // the rate window in seconds
}

// grid is the step grid of the control-plane and gateway sources: it
// ends at now rounded down to the step, so every cycle of a step reads the
// same points and VictoriaMetrics may answer the older ones from its
// rollup result cache. Their newest point is the partial one.
func (o MetricsOptions) grid(now time.Time) (window, error) {
	return o.endingAt(now.Truncate(o.Step))
}

// endingAt is the grid of Lookback / Step points whose newest is end and
// whose settled point is the one before it.
func (o MetricsOptions) endingAt(end time.Time) (window, error) {
	if o.Step <= 0 || o.Window <= 0 || o.Lookback < o.Step {
		return window{}, fmt.Errorf("step %s, window %s, lookback %s: want positive step and window and lookback >= step", o.Step, o.Window, o.Lookback)
	}
	return window{
		start: end.Add(-o.Lookback + o.Step), end: end, settled: end.Add(-o.Step), step: o.Step,
		rate: promDuration(o.Window), seconds: o.Window.Seconds(),
	}, nil
}

// ControlPlaneMetrics is what the control plane says about one version.
type ControlPlaneMetrics struct {
	// Utilization is 100 x requests in flight / (instances x concurrency)
	// per step, oldest first: Little's law, since the rate of a latency
	// sum is the mean number of requests being served. NaN where that is
	// 0/0 (no instances, no load), +Inf where load meets no instances.
	// Steps where any input is missing are left out: unknown, not idle.
	Utilization []Sample
	// Instances is the average reported instance count at the last settled
	// step; it may be fractional while instances come and go.
	Instances      float64
	InstancesKnown bool
	// Concurrency is requests one instance serves at once, at the last
	// settled step (0 when unknown).
	Concurrency float64
	// InFlight is the requests in flight at the newest step where both it
	// and the instances are known; InFlightKnown says there was one.
	InFlight      float64
	InFlightKnown bool
	// LastInvokedAt and RequestRate come from the request counters, as for
	// worker versions.
	LastInvokedAt time.Time
	RequestRate   float64
	// RequestRates (arrivals per second, queued ones included: the
	// invocation service counts a request when it routes it), InFlights
	// (the latency sum's rate) and InstanceCounts (the average reported
	// instances) are per step, oldest first, for learning the service time
	// and sizing from arrivals.
	RequestRates, InFlights, InstanceCounts []Sample
	// RequestCounts are the requests routed in the window ending at each
	// step (rate times window, as a worker version's), oldest first, and
	// SettledAt the last step whose scrapes are in (the one before the
	// newest): learned keep-alive reads bursts and gaps from them, as from
	// a worker version's.
	RequestCounts []Sample
	SettledAt     time.Time
}

// ControlPlaneMetrics fetches the control-plane source for a whole bucket:
// four range queries per TSDB_MAX_SELECTOR_BYTES of version ids, grouped by
// the identity labels, however many versions there are.
func (c *Client) ControlPlaneMetrics(ctx context.Context, versions []FunctionVersion, now time.Time, o MetricsOptions) (map[FunctionVersion]ControlPlaneMetrics, error) {
	out := make(map[FunctionVersion]ControlPlaneMetrics, len(versions))
	if len(versions) == 0 {
		return out, nil
	}
	g, err := o.grid(now)
	if err != nil {
		return nil, fmt.Errorf("control-plane metrics: %w", err)
	}
	f := o.filters()
	wm, err := f.matchers(familyWorker)
	if err != nil {
		return nil, err
	}
	cm, _ := f.matchers(familyControlPlane)
	gm, _ := f.matchers(familyGateway)
	byKey := map[[2]string]FunctionVersion{}
	for _, v := range versions {
		byKey[[2]string{v.FunctionID, v.FunctionVersionID}] = v
	}
	by := "by (function_id, function_version_id)"
	type perVersion struct {
		inflight, instances, concurrency map[int64]float64
	}
	acc := map[FunctionVersion]*perVersion{}
	get := func(v FunctionVersion) *perVersion {
		p, ok := acc[v]
		if !ok {
			p = &perVersion{map[int64]float64{}, map[int64]float64{}, map[int64]float64{}}
			acc[v] = p
		}
		return p
	}
	join := c.joiner(ctx)
	for _, chunk := range chunkIDs(versions, c.cfg.MaxSelectorBytes) {
		of := func(expr func(sel string) string) string { return chunk.union(labelFunctionVersion, join, expr) }
		queries := []struct {
			what, q string
			put     func(p *perVersion) map[int64]float64
		}{
			{"in-flight requests", of(func(sel string) string {
				return fmt.Sprintf(`sum %s (rate(%s[%s]))`, by, selector(MetricRequestLatencySum, append(gm, sel)...), g.rate)
			}), func(p *perVersion) map[int64]float64 { return p.inflight }},
			{"instances", of(func(sel string) string {
				return fmt.Sprintf(`avg %s (%s)`, by, selector(MetricInstancesCurrent, append(cm, sel)...))
			}), func(p *perVersion) map[int64]float64 { return p.instances }},
			{"concurrency", of(func(sel string) string {
				return fmt.Sprintf(`avg %s (%s)`, by, selector(MetricConcurrency, append(cm, sel)...))
			}), func(p *perVersion) map[int64]float64 { return p.concurrency }},
		}
		for _, q := range queries {
			series, _, err := c.QueryRange(ctx, q.q, g.start, g.end, g.step)
			if err != nil {
				return nil, fmt.Errorf("control-plane %s: %w", q.what, err)
			}
			for _, s := range series {
				v, ok := byKey[[2]string{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}]
				if !ok {
					continue // another function with the same version id
				}
				m := q.put(get(v))
				for _, p := range s.Samples {
					m[p.At.UnixMilli()] = p.Value
				}
			}
		}
		reqs, err := c.invocations(ctx, by, chunk, join, wm, g)
		if err != nil {
			return nil, fmt.Errorf("control-plane requests: %w", err)
		}
		for _, s := range reqs {
			v, ok := byKey[[2]string{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}]
			if !ok {
				continue
			}
			m := out[v]
			m.LastInvokedAt, m.RequestRate = invocationsOf(s.Samples)
			m.RequestRates, m.RequestCounts = s.Samples, windowCounts(s.Samples, g.seconds)
			out[v] = m
		}
	}
	for v, m := range out {
		m.SettledAt = g.settled
		out[v] = m
	}
	for v, p := range acc {
		m := out[v]
		m.SettledAt = g.settled
		if n, ok := p.instances[g.settled.UnixMilli()]; ok && !math.IsNaN(n) && n >= 0 {
			m.Instances, m.InstancesKnown = n, true
		}
		if cc, ok := p.concurrency[g.settled.UnixMilli()]; ok && cc > 0 && !math.IsInf(cc, 0) {
			m.Concurrency = cc
		}
		for t := g.start; !t.After(g.end); t = t.Add(g.step) {
			ms := t.UnixMilli()
			in, ok1 := p.inflight[ms]
			n, ok2 := p.instances[ms]
			cc, ok3 := p.concurrency[ms]
			if ok1 {
				m.InFlights = append(m.InFlights, Sample{At: t, Value: in})
			}
			if ok2 {
				m.InstanceCounts = append(m.InstanceCounts, Sample{At: t, Value: n})
			}
			if !ok1 || !ok2 {
				continue
			}
			m.InFlight, m.InFlightKnown = in, true
			if !ok3 {
				continue
			}
			m.Utilization = append(m.Utilization, Sample{At: t, Value: 100 * in / (n * cc)})
		}
		out[v] = m
	}
	return out, nil
}

// invocations is the request-counter query both per-version sources use:
// function_request_total, or function_request where only the invocation
// service exports it, as rates over the window (rate, not increase, for
// the reason BucketMetrics gives).
func (c *Client) invocations(ctx context.Context, by string, chunk idChunk, join func([]string) string, wm []string, g window) ([]Series, error) {
	q := chunk.union(labelFunctionVersion, join, func(sel string) string {
		return fmt.Sprintf(`sum %s (rate(%s[%s])) or sum %s (rate(%s[%s]))`,
			by, selector(MetricRequestsTotal, append(wm, sel)...), g.rate, by, selector(MetricRequests, append(wm, sel)...), g.rate)
	})
	s, _, err := c.QueryRange(ctx, q, g.start, g.end, g.step)
	return s, err
}

// invocationsOf reads the newest step with requests and the request rate
// at the newest step from one series of request rates.
func invocationsOf(ss []Sample) (last time.Time, rate float64) {
	for _, p := range ss {
		if p.Value > 0 && !math.IsInf(p.Value, 0) {
			last = p.At
		}
	}
	if n := len(ss); n > 0 && ss[n-1].Value >= 0 && !math.IsInf(ss[n-1].Value, 0) {
		rate = ss[n-1].Value
	}
	return last, rate
}

// windowCounts turns a series of per-second rates over the window into
// the counts in each window: rate times its length, which is what
// Prometheus' increase returns and what VictoriaMetrics' would if it
// extrapolated (BucketMetrics says why it matters).
func windowCounts(rates []Sample, windowSeconds float64) []Sample {
	out := make([]Sample, len(rates))
	for i, p := range rates {
		out[i] = Sample{At: p.At, Value: p.Value * windowSeconds}
	}
	return out
}

// GatewayVersion is one version of a gateway function.
type GatewayVersion struct {
	FunctionVersionID string
	NcaID             string
	// Listed: nvcf_function_info names the version (the only place its
	// nca_id comes from, and what makes it a valid write target).
	Listed bool
	// Instances and Concurrency at the last settled step (max over the
	// control plane's reports); InstancesKnown false when none reported.
	Instances      float64
	InstancesKnown bool
	Concurrency    float64
}

// GatewayMetrics is what the LLM gateway and the control plane say about
// one function: the gateway knows only function_id, so utilization and
// invocations are per function, instances per version.
type GatewayMetrics struct {
	// Versions are every version listed by nvcf_function_info or reporting
	// instances, by version id.
	Versions []GatewayVersion
	// Utilization is 100 x requests in flight at the gateway / max(1, sum
	// over versions of instances x concurrency) per step, oldest first.
	Utilization []Sample
	// InFlight is the newest step's requests in flight (rate of the
	// duration sum), for Little's-law demand; InFlightKnown says it exists.
	InFlight      float64
	InFlightKnown bool
	LastInvokedAt time.Time
	RequestRate   float64
	// RequestRates (completions per second: the gateway counts a request
	// when it answers it), InFlights (the duration sum's rate) and
	// InstanceCounts (the sum of the versions' instances) are per step,
	// oldest first, for learning the service time and estimating arrivals.
	RequestRates, InFlights, InstanceCounts []Sample
	// RequestCounts are the requests the gateway answered in the window
	// ending at each step, oldest first, and SettledAt the last step whose
	// scrapes are in: learned keep-alive reads the function's bursts and
	// gaps from them.
	RequestCounts []Sample
	SettledAt     time.Time
	// Completions are the gateway's scrape intervals over the last
	// CompletionSpan before the query: for each series of its request
	// counter, what completed between two consecutive raw samples and the
	// latencies they summed (the duration-sum series of the same labels,
	// at the same times), ordered by end. They give the gateway's
	// arrivals where rates over windows over-read them
	// (policy.ArrivalsFromCurve).
	Completions []CompletionInterval
}

// CompletionInterval is one scrape interval of one series of the
// gateway's counters: the requests that completed in (From, To] and the
// sum of their latencies in seconds.
type CompletionInterval struct {
	From, To   time.Time
	Completed  float64
	LatencySum float64
}

// CompletionSpan is how far back GatewayMetrics reads the raw samples of
// the gateway's counters: the newest pair of rate windows (one window and
// a step) and one more step, as the newest step may be a repeat that the
// caller drops.
func (o MetricsOptions) CompletionSpan() time.Duration {
	return o.Window + 2*o.Step
}

// Current is the sum of the versions' instances at the last settled step,
// rounded; known when any version reported.
func (m GatewayMetrics) Current() (total float64, known bool) {
	for _, v := range m.Versions {
		if v.InstancesKnown {
			total, known = total+v.Instances, true
		}
	}
	return total, known
}

// Concurrency is the mean concurrency per instance over the running
// versions (weighted by instances), or over all reporting versions when
// none runs; 0 when no version reported one.
func (m GatewayMetrics) Concurrency() float64 {
	var num, den, any, n float64
	for _, v := range m.Versions {
		if v.Concurrency <= 0 {
			continue
		}
		any += v.Concurrency
		n++
		if v.Instances > 0 {
			num += v.Instances * v.Concurrency
			den += v.Instances
		}
	}
	switch {
	case den > 0:
		return num / den
	case n > 0:
		return any / n
	}
	return 0
}

// GatewayMetrics fetches the gateway source for a bucket's functions: five
// range queries per TSDB_MAX_SELECTOR_BYTES of function ids, however many
// functions and versions there are, and one instant query of raw samples
// per 20 functions (Completions). A function with no series at all is
// absent from the answer.
func (c *Client) GatewayMetrics(ctx context.Context, functionIDs []string, now time.Time, o MetricsOptions) (map[string]GatewayMetrics, error) {
	out := make(map[string]GatewayMetrics, len(functionIDs))
	if len(functionIDs) == 0 {
		return out, nil
	}
	g, err := o.grid(now)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	f := o.filters()
	cm, err := f.matchers(familyControlPlane)
	if err != nil {
		return nil, err
	}
	gm, _ := f.matchers(familyGateway)
	want := map[string]bool{}
	for _, id := range functionIDs {
		want[id] = true
	}
	type perFunction struct {
		inflight               map[int64]float64
		instances, concurrency map[string]map[int64]float64
		versions               map[string]*GatewayVersion
		lastInvoked            time.Time
		rate                   float64
		rates, counts          []Sample
		completions            []CompletionInterval
	}
	acc := map[string]*perFunction{}
	get := func(fid string) *perFunction {
		p, ok := acc[fid]
		if !ok {
			p = &perFunction{inflight: map[int64]float64{}, instances: map[string]map[int64]float64{},
				concurrency: map[string]map[int64]float64{}, versions: map[string]*GatewayVersion{}}
			acc[fid] = p
		}
		return p
	}
	version := func(p *perFunction, vid string) *GatewayVersion {
		v, ok := p.versions[vid]
		if !ok {
			v = &GatewayVersion{FunctionVersionID: vid}
			p.versions[vid] = v
		}
		return v
	}
	byFn := "by (function_id)"
	byVersion := "by (function_id, function_version_id)"
	join := c.joiner(ctx)
	for _, chunk := range chunkValues(functionIDs, c.cfg.MaxSelectorBytes) {
		run := func(what string, expr func(sel string) string, each func(p *perFunction, s Series)) error {
			q := chunk.union(labelFunctionID, join, expr)
			series, _, err := c.QueryRange(ctx, q, g.start, g.end, g.step)
			if err != nil {
				return fmt.Errorf("gateway %s: %w", what, err)
			}
			for _, s := range series {
				fid := s.Labels[labelFunctionID]
				if !want[fid] {
					continue
				}
				each(get(fid), s)
			}
			return nil
		}
		perVersion := func(m func(p *perFunction) map[string]map[int64]float64) func(p *perFunction, s Series) {
			return func(p *perFunction, s Series) {
				vid := s.Labels[labelFunctionVersion]
				if !ids.Valid(vid) {
					return
				}
				version(p, vid)
				byV := m(p)
				if byV[vid] == nil {
					byV[vid] = map[int64]float64{}
				}
				for _, pt := range s.Samples {
					byV[vid][pt.At.UnixMilli()] = pt.Value
				}
			}
		}
		err := errorsFirst(
			func() error {
				return run("in-flight requests", func(sel string) string {
					return fmt.Sprintf(`sum %s (rate(%s[%s]))`, byFn, selector(MetricGatewayDurationSum, append(gm, sel)...), g.rate)
				},
					func(p *perFunction, s Series) {
						for _, pt := range s.Samples {
							p.inflight[pt.At.UnixMilli()] = pt.Value
						}
					})
			},
			func() error {
				return run("instances", func(sel string) string {
					return fmt.Sprintf(`max %s (%s)`, byVersion, selector(MetricInstancesCurrent, append(cm, sel)...))
				},
					perVersion(func(p *perFunction) map[string]map[int64]float64 { return p.instances }))
			},
			func() error {
				return run("concurrency", func(sel string) string {
					return fmt.Sprintf(`max %s (%s)`, byVersion, selector(MetricConcurrency, append(cm, sel)...))
				},
					perVersion(func(p *perFunction) map[string]map[int64]float64 { return p.concurrency }))
			},
			func() error {
				return run("function info", func(sel string) string {
					return fmt.Sprintf(`max by (function_id, function_version_id, nca_id) (%s)`, selector(MetricFunctionInfo, append(cm, sel)...))
				},
					func(p *perFunction, s Series) {
						vid, nca := s.Labels[labelFunctionVersion], s.Labels[labelNcaID]
						if !ids.Valid(vid) || (nca != "" && !ids.Valid(nca)) {
							return
						}
						v := version(p, vid)
						v.Listed = true
						if nca != "" {
							v.NcaID = nca
						}
					})
			},
			func() error {
				return run("requests", func(sel string) string {
					return fmt.Sprintf(`sum %s (rate(%s[%s]))`, byFn, selector(MetricGatewayRequests, append(gm, sel)...), g.rate)
				},
					func(p *perFunction, s Series) {
						p.lastInvoked, p.rate = invocationsOf(s.Samples)
						p.rates, p.counts = s.Samples, windowCounts(s.Samples, g.seconds)
					})
			},
		)
		if err != nil {
			return nil, err
		}
		// The raw samples, one group at a time: a range selector cannot
		// be joined by union or or, and a group is at most lookupGroup
		// ids, which VictoriaMetrics looks up one by one.
		for _, group := range chunk {
			q := selector("", append(gm, `__name__=~"`+MetricGatewayRequests+`|`+MetricGatewayDurationSum+`"`,
				labelFunctionID+`=~`+quote(strings.Join(group, "|")))...) + "[" + promDuration(o.CompletionSpan()) + "]"
			series, _, err := c.Query(ctx, q, g.end)
			if err != nil {
				return nil, fmt.Errorf("gateway completions: %w", err)
			}
			for fid, ivs := range completionIntervals(series) {
				if want[fid] {
					p := get(fid)
					p.completions = append(p.completions, ivs...)
				}
			}
		}
	}
	settled := g.settled.UnixMilli()
	for fid, p := range acc {
		slices.SortFunc(p.completions, func(a, b CompletionInterval) int { return a.To.Compare(b.To) })
		m := GatewayMetrics{LastInvokedAt: p.lastInvoked, RequestRate: p.rate, RequestRates: p.rates, RequestCounts: p.counts, SettledAt: g.settled,
			Completions: p.completions}
		for vid, v := range p.versions {
			if n, ok := p.instances[vid][settled]; ok && !math.IsNaN(n) && n >= 0 {
				v.Instances, v.InstancesKnown = n, true
			}
			if cc, ok := p.concurrency[vid][settled]; ok && cc > 0 && !math.IsInf(cc, 0) {
				v.Concurrency = cc
			}
			m.Versions = append(m.Versions, *v)
		}
		sort.Slice(m.Versions, func(i, j int) bool { return m.Versions[i].FunctionVersionID < m.Versions[j].FunctionVersionID })
		for t := g.start; !t.After(g.end); t = t.Add(g.step) {
			ms := t.UnixMilli()
			in, ok := p.inflight[ms]
			if !ok {
				continue
			}
			// Capacity is what the reporting versions offer at this step;
			// at least 1, as the reference divides, so an idle function at
			// zero reads 0 % rather than NaN.
			capacity, instances, reported := 0.0, 0.0, false
			for vid := range p.versions {
				n, ok1 := p.instances[vid][ms]
				cc, ok2 := p.concurrency[vid][ms]
				if ok1 && ok2 && n > 0 && cc > 0 {
					capacity += n * cc
				}
				if ok1 && !math.IsNaN(n) {
					instances, reported = instances+n, true
				}
			}
			if reported {
				m.InstanceCounts = append(m.InstanceCounts, Sample{At: t, Value: instances})
			}
			m.InFlight, m.InFlightKnown = in, true
			m.InFlights = append(m.InFlights, Sample{At: t, Value: in})
			m.Utilization = append(m.Utilization, Sample{At: t, Value: 100 * in / max(1, capacity)})
		}
		out[fid] = m
	}
	return out, nil
}

// errorsFirst runs fns in order and returns the first error.
func errorsFirst(fns ...func() error) error {
	for _, f := range fns {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// completionIntervals pairs the raw samples of the gateway's request
// counter and duration sum by their other labels and returns, per
// function, the intervals between consecutive samples of each pair, at
// the times both were scraped. A counter that went down was reset (the
// gateway restarted): what it counts since is what completed in the
// interval.
func completionIntervals(series []Series) map[string][]CompletionInterval {
	type pair struct{ requests, durations []Sample }
	pairs := map[string]*pair{}
	fids := map[string]string{}
	for _, s := range series {
		name := s.Labels["__name__"]
		if name != MetricGatewayRequests && name != MetricGatewayDurationSum {
			continue
		}
		keys := make([]string, 0, len(s.Labels))
		for k, v := range s.Labels {
			if k != "__name__" {
				keys = append(keys, k+"\x00"+v)
			}
		}
		slices.Sort(keys)
		key := strings.Join(keys, "\x01")
		p := pairs[key]
		if p == nil {
			p = &pair{}
			pairs[key] = p
			fids[key] = s.Labels[labelFunctionID]
		}
		if name == MetricGatewayRequests {
			p.requests = s.Samples
		} else {
			p.durations = s.Samples
		}
	}
	increase := func(from, to float64) float64 {
		if to < from {
			return to
		}
		return to - from
	}
	out := map[string][]CompletionInterval{}
	for key, p := range pairs {
		sums := make(map[int64]float64, len(p.durations))
		for _, d := range p.durations {
			sums[d.At.UnixMilli()] = d.Value
		}
		var prev *Sample
		var prevSum float64
		for i := range p.requests {
			r := &p.requests[i]
			sum, ok := sums[r.At.UnixMilli()]
			if !ok || !finiteValue(r.Value) || !finiteValue(sum) {
				prev = nil
				continue
			}
			if prev != nil {
				out[fids[key]] = append(out[fids[key]], CompletionInterval{From: prev.At, To: r.At,
					Completed: increase(prev.Value, r.Value), LatencySum: increase(prevSum, sum)})
			}
			prev, prevSum = r, sum
		}
	}
	return out
}

func finiteValue(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
