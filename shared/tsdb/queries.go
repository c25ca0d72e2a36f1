package tsdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"function/shared/ids"
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
// counters (or, for a gateway function, the gateway's) grew in the
// lookback, otherwise it only has running instances.
type ActiveVersion struct {
	FunctionVersion
	Invoked bool
	// Evidence is the source this cycle's series point to: worker when the
	// version has worker series, else gateway when its function has gateway
	// request series, else control_plane when the control plane reports its
	// instances; empty when only its request counters were seen (a version
	// at zero). The scale function combines it with the source it
	// remembers (see the scale package).
	Evidence Source
	// StillInvoked is true when its requests (or its gateway function's)
	// grew in the newest step of the lookback too, not only before: the
	// scale function's own TSDB read then shows a recent invocation, and
	// discovery need not renew the invoked row's time every cycle (it does
	// once invocations stop, when the row is the evidence that counts).
	StillInvoked bool
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

// ActiveVersions finds every version active during the lookback before
// now, through all three sources: request counters that grew, worker
// series, gateway request counters that grew (function level; the versions
// and their nca_id come from nvcf_function_info), and control-plane
// instance counts above zero. It costs five range queries, however many
// functions and versions exist. Series whose ids are not valid are skipped
// and counted, never fatal.
func (c *Client) ActiveVersions(ctx context.Context, now time.Time, lookback time.Duration, f Filters) ([]ActiveVersion, Skipped, error) {
	wm, err := f.matchers(familyWorker)
	if err != nil {
		return nil, nil, err
	}
	cm, _ := f.matchers(familyControlPlane)
	gm, _ := f.matchers(familyGateway)
	// Five windows tile the lookback; each point's increase covers one
	// step and a half, so a scrape falling on a boundary is not lost.
	step := max(lookback/5, time.Second)
	window := promDuration(step + step/2)
	by := "by (function_id, function_version_id, nca_id)"
	start := now.Add(-lookback)
	queries := []struct{ what, q string }{
		{"invoked versions", fmt.Sprintf(`(sum %s (increase(%s[%s])) > 0) or (sum %s (increase(%s[%s])) > 0)`,
			by, selector(MetricRequests, wm...), window, by, selector(MetricRequestsTotal, wm...), window)},
		{"running versions", fmt.Sprintf(`count %s (%s)`, by, selector(MetricThreadCount, wm...))},
		{"gateway functions", fmt.Sprintf(`sum by (function_id) (increase(%s[%s]))`, selector(MetricGatewayRequests, gm...), window)},
		{"gateway versions", fmt.Sprintf(`max %s (%s) and on (function_id) group by (function_id) (%s)`,
			by, selector(MetricFunctionInfo, cm...), selector(MetricGatewayRequests, gm...))},
		{"control-plane versions", fmt.Sprintf(`avg %s (%s)`, by, selector(MetricInstancesCurrent, cm...))},
	}
	// Each answer is folded into the version set as it streams in: at
	// 100,000 versions the five answers held whole were most of
	// discovery's memory.
	skipped := Skipped{}
	// Gateway functions: any series means the function is served by the
	// gateway; a positive increase means it was invoked.
	gateway := map[string]bool{}
	// The newest step each invoked version or gateway function grew in,
	// and the newest step of each answer, for StillInvoked.
	var newestInvoked, newestGateway newest
	gatewayFunctions := func(s Series) error {
		fid := s.Labels[labelFunctionID]
		if !ids.Valid(fid) {
			skipped["invalid function_id"]++
			return nil
		}
		gateway[fid] = gateway[fid] || hasPositive(s.Samples)
		newestGateway.see([2]string{fid}, s.Samples)
		return nil
	}
	found := map[[2]string]*ActiveVersion{}
	workers := map[[2]string]bool{}
	instances := map[[2]string]bool{}
	versions := func(keep func(s Series) bool, invoked func(fid string) bool, mark map[[2]string]bool) func(Series) error {
		return func(s Series) error {
			fid, vid, nca := s.Labels[labelFunctionID], s.Labels[labelFunctionVersion], s.Labels[labelNcaID]
			switch {
			case !ids.Valid(fid):
				skipped["invalid function_id"]++
				return nil
			case !ids.Valid(vid):
				skipped["invalid function_version_id"]++
				return nil
			case nca != "" && !ids.Valid(nca):
				skipped["invalid nca_id"]++
				return nil
			}
			k := [2]string{fid, vid}
			if mark != nil {
				mark[k] = true
			}
			if !keep(s) {
				return nil
			}
			v, ok := found[k]
			if !ok {
				v = &ActiveVersion{FunctionVersion: FunctionVersion{FunctionID: fid, FunctionVersionID: vid}}
				found[k] = v
			}
			v.Invoked = v.Invoked || invoked(fid)
			if v.NcaID == "" {
				v.NcaID = nca
			}
			return nil
		}
	}
	all := func(Series) bool { return true }
	positive := func(s Series) bool { return hasPositive(s.Samples) }
	no := func(string) bool { return false }
	invokedVersions := versions(positive, func(string) bool { return true }, nil)
	folds := []func(Series) error{
		func(s Series) error {
			newestInvoked.see([2]string{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}, s.Samples)
			return invokedVersions(s)
		},
		versions(all, no, workers),
		gatewayFunctions,
		// Every listed version of an invoked gateway function: the one at
		// zero may become the write target. An idle gateway function's
		// running versions are found by the instance counts below. The
		// gateway functions' answer comes first, so gateway is complete.
		versions(func(s Series) bool { return gateway[s.Labels[labelFunctionID]] }, func(fid string) bool { return gateway[fid] }, nil),
		versions(positive, no, instances),
	}
	// The newest step any answer has: the invoked query keeps only the
	// steps that grew, so its own newest step says nothing when every
	// version stopped at once.
	var end time.Time
	// One query at a time. Running four at once (2026-12-01, make bench at
	// 100,000 versions) cost VictoriaMetrics 7.9-9.4 CPU-s where one at a
	// time cost 6.1-6.7, and discovery 3.8-4.3 CPU-s where it cost
	// 3.2-3.6, for no shorter a discovery on two cores.
	for i, q := range queries {
		fold := folds[i]
		each := func(s Series) error {
			if n := len(s.Samples); n > 0 && s.Samples[n-1].At.After(end) {
				end = s.Samples[n-1].At
			}
			return fold(s)
		}
		if _, err := c.QueryRangeEach(ctx, q.q, start, now, step, each); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", q.what, err)
		}
	}

	out := make([]ActiveVersion, 0, len(found))
	for k, v := range found {
		_, gw := gateway[k[0]]
		switch {
		case workers[k]:
			v.Evidence = SourceWorker
		case gw:
			v.Evidence = SourceGateway
		case instances[k]:
			v.Evidence = SourceControlPlane
		}
		v.StillInvoked = newestInvoked.atEnd(k, end) || (v.Invoked && newestGateway.atEnd([2]string{k[0]}, end))
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

// newest tracks, per version (or function: the version id empty), the
// newest step whose value was positive.
type newest map[[2]string]time.Time

func (n *newest) see(key [2]string, ss []Sample) {
	if *n == nil {
		*n = newest{}
	}
	for _, s := range ss {
		if s.Value > 0 && !math.IsInf(s.Value, 0) && s.At.After((*n)[key]) {
			(*n)[key] = s.At
		}
	}
}

// atEnd says whether key grew in the newest step, end.
func (n newest) atEnd(key [2]string, end time.Time) bool {
	at, ok := n[key]
	return ok && !at.Before(end)
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
	// Env narrows each family of series to one NVCF environment; empty
	// reads all (ignore_env).
	Env Environment
}

// VersionMetrics is what the TSDB says about one version.
type VersionMetrics struct {
	// Utilization is percent busy per step, oldest first, up to the
	// settled step (the fresh window is FreshUtilization), NaN/Inf kept.
	// Empty means unknown, not idle.
	Utilization []Sample
	// Instances is the count of worker series at the settled step (now
	// minus one step: the newest point, now, is partial). InstancesKnown
	// is false when the version had no worker series there, which the
	// policy treats as unknown.
	Instances      int
	InstancesKnown bool
	// InstanceCounts is the count of worker series per step, oldest
	// first, the fresh step (now) included.
	InstanceCounts []Sample
	// LastInvokedAt is the newest step whose request rate was > 0.
	LastInvokedAt time.Time
	// RequestRate is requests per second over the window at the newest
	// step the TSDB answered for (the fresh one, now, when it has it).
	RequestRate float64
	// RequestCounts is the requests routed in the window ending at each
	// step (the rate over it times its length, see BucketMetrics), oldest
	// first, the fresh step (now) included.
	RequestCounts []Sample

	// SettledAt is the end of the settled window, now minus one step (the
	// step before the newest, whose scrapes may still be arriving): as
	// settled as the worst case of a grid rounded down to the step, and,
	// as the grid moves with now, not on any fixed grid. It is the window a
	// version's busy seconds per request are learned from. BusySeconds
	// (all worker threads), Requests (every request routed to the
	// version, queued ones included) and SettledUtilization (percent)
	// are measured over it. NaN means unknown.
	SettledAt          time.Time
	SettledUtilization float64
	BusySeconds        float64
	Requests           float64
	// BusyCounts is the busy seconds of all worker threads in the window
	// ending at each step (the rate over it times its length), oldest
	// first, the fresh step included: the cost is learned from a window
	// whose neighbours have settled too, not only the newest settled one.
	BusyCounts []Sample
	// ThreadsPerInstance is the mean worker thread count at the settled
	// step: the sum of thread_count over the number of worker series.
	// NaN means unknown.
	ThreadsPerInstance float64

	// FreshAt is the query time (to the millisecond) and the end of the
	// fresh window, the grid's newest point: the newest, partial data.
	// FreshUtilization (percent) and FreshRequestRate (requests per
	// second, queued included) are measured over the rate window ending
	// there; NaN means unknown. Only scale-up may act on them.
	FreshAt          time.Time
	FreshUtilization float64
	FreshRequestRate float64
}

// unknownMetrics is a version's metrics before any query answered: every
// measured number unknown (NaN), never zero.
func unknownMetrics() VersionMetrics {
	nan := math.NaN()
	return VersionMetrics{SettledUtilization: nan, BusySeconds: nan, Requests: nan, ThreadsPerInstance: nan,
		FreshUtilization: nan, FreshRequestRate: nan}
}

// BucketMetrics fetches utilization, instances and invocations for a whole
// bucket: the busy seconds' rate over the window, the worker thread counts
// and the request rate, each as one range query whose newest point is now
// (the fresh window) and whose point before it, now - Step, is the settled
// window: three queries per MaxSelectorBytes of version ids, so TSDB load
// grows with buckets, not functions.
//
// Utilization per version and step is
//
//	100 * sum(rate(busy_seconds[W])) / sum(thread_count)
//
// by function_id and function_version_id: the busy seconds per second of
// all of the version's worker threads over the window, divided by the
// threads. Summing before dividing weights workers by their threads, which
// is what "percent of capacity in use" means. The reference writes it
// 100 * increase(busy_seconds[W]) / W / sum(thread_count), which on
// Prometheus is the same number (its increase is its rate times W), but
// VictoriaMetrics' increase does not extrapolate: it counts from the last
// sample before the window to the last one in it, so with 30 s scrapes a
// 70 s window holds 60 or 90 s of counter and a steady 85 % read 73 % or
// 109 % by where now fell among the scrapes, flapping between hold and
// scale-up from cycle to cycle (README, "the rate window and the scrape
// phase"). Its rate divides by the span of the samples it used, which
// no phase changes. The window quantities (BusySeconds, Requests,
// RequestCounts) are that rate times W: what Prometheus' increase says,
// and the units every consumer had.
//
// Each series is read once and the rest is worked out here: the division,
// the instance count (the worker series at a step), the threads per
// instance, the settled and the fresh windows' values, which are points of
// the grid. Asking the TSDB for each of those as an expression of its own
// read the busy series three times and the thread counts four times, and
// the division itself cost VictoriaMetrics half a read to a whole one
// more: at 100,000 versions that was most of its work (README, issue 17).
//
// The grid ends at now, not at now rounded down to the step as the other
// sources' do, so that its newest point is the fresh window: reading it
// with an instant query of its own read every series twice, and on a
// VictoriaMetrics 1.79 holding 10,000 versions the three reads cost 0.14
// CPU-s per bucket of 1,000 where the six cost 0.29 (bench -read-shapes,
// README). A grid that moves with now is never in the server's rollup
// result cache, which the same run found saved nothing (0.16 CPU-s for
// the rounded grid alone). So consecutive cycles' grids are not aligned to
// each other: what is folded from the settled window (cost, backlog, idle
// gaps) is keyed on window ends and allows for that.
func (c *Client) BucketMetrics(ctx context.Context, versions []FunctionVersion, now time.Time, o MetricsOptions) (map[FunctionVersion]VersionMetrics, error) {
	out := make(map[FunctionVersion]VersionMetrics, len(versions))
	if len(versions) == 0 {
		return out, nil
	}
	// Whole milliseconds: the answer's timestamps have no finer ones, and
	// the fresh and settled points are found by their time.
	g, err := o.endingAt(now.Truncate(time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("bucket metrics: %w", err)
	}
	wm, err := o.filters().matchers(familyWorker)
	if err != nil {
		return nil, err
	}
	byKey := map[[2]string]FunctionVersion{}
	for _, v := range versions {
		byKey[[2]string{v.FunctionID, v.FunctionVersionID}] = v
	}
	by := "by (function_id, function_version_id)"
	// Per version, the components, until every chunk is in.
	var w workerSeries
	// metrics is the version's metrics, every number unknown until a
	// query says otherwise. A version is in the answer when the TSDB knows
	// it: worker series, requests, busy seconds at the settled step, or a
	// fresh utilization (what the server's own expressions returned
	// before they were taken apart), never only for an empty answer.
	metrics := func(v FunctionVersion) VersionMetrics {
		m, seen := out[v]
		if !seen {
			m = unknownMetrics()
			m.SettledAt, m.FreshAt = g.settled, g.end
		}
		return m
	}
	// invocations folds a version's request rates over the grid in.
	invocations := func(v FunctionVersion, s Series) error {
		m := metrics(v)
		m.LastInvokedAt, m.RequestRate = invocationsOf(s.Samples)
		m.Requests = ValueAt(s.Samples, g.settled) * g.seconds
		m.FreshRequestRate = ValueAt(s.Samples, g.end)
		m.RequestCounts = windowCounts(s.Samples, g.seconds)
		out[v] = m
		return nil
	}

	join := c.joiner(ctx)
	for _, chunk := range chunkIDs(versions, c.cfg.MaxSelectorBytes) {
		// Each query is the union of one expression per group of ids.
		of := func(expr func(ms []string) string) string {
			return chunk.union(labelFunctionVersion, join, func(m string) string { return expr(append([]string{m}, wm...)) })
		}
		busy := of(func(ms []string) string {
			return fmt.Sprintf(`sum %s (rate(%s[%s]))`, by, selector(MetricBusySeconds, ms...), g.rate)
		})
		// The sum and the count of the workers' thread counts are both
		// needed, and one read gives both: how many workers report each
		// thread count. VictoriaMetrics spends on it what it spends on
		// the workers' own series, about a fifth more than on a count
		// by alone (which it aggregates as it reads) and far less than
		// on a sum and a count (bench -query-costs); the answer is as
		// small as a sum's, as a version's workers mostly run alike.
		threads := of(func(ms []string) string {
			return fmt.Sprintf(`count_values %s (%s, %s)`, by, quote(labelThreadCount), selector(MetricThreadCount, ms...))
		})
		reqs := of(func(ms []string) string {
			return fmt.Sprintf(`sum %s (rate(%s[%s])) or sum %s (rate(%s[%s]))`,
				by, selector(MetricRequestsTotal, ms...), g.rate, by, selector(MetricRequests, ms...), g.rate)
		})
		for _, q := range []struct {
			what, q string
			fold    func(v FunctionVersion, s Series) error
		}{
			{"busy seconds", busy, w.busy},
			{"thread counts", threads, w.threads},
			{"requests", reqs, invocations},
		} {
			series, _, err := c.QueryRange(ctx, q.q, g.start, g.end, g.step)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", q.what, err)
			}
			for _, s := range series {
				v, ok := byKey[[2]string{s.Labels[labelFunctionID], s.Labels[labelFunctionVersion]}]
				if !ok {
					continue // another function with the same version id
				}
				if err := q.fold(v, s); err != nil {
					return nil, fmt.Errorf("%s: %w", q.what, err)
				}
			}
		}
	}
	for v, t := range w.threadsOf {
		m := metrics(v)
		m.InstanceCounts = t.counts()
		if n, ok := t[g.settled.UnixMilli()]; ok {
			m.Instances, m.InstancesKnown = n.workers, true
			m.ThreadsPerInstance = n.sum / float64(n.workers)
		}
		out[v] = m
	}
	for v, b := range w.busyOf {
		m := metrics(v)
		u := utilization(b, w.threadsOf[v])
		m.BusySeconds = ValueAt(b, g.settled) * g.seconds
		m.BusyCounts = windowCounts(b, g.seconds)
		m.SettledUtilization = ValueAt(u, g.settled)
		// The fresh window is partial (its newest scrapes may still be
		// on their way) and only scale-up may act on it, so it is not
		// one of the samples the policy reads as settled.
		fresh := len(u) > 0 && u[len(u)-1].At.Equal(g.end)
		if fresh {
			m.FreshUtilization, u = u[len(u)-1].Value, u[:len(u)-1]
		}
		m.Utilization = u
		if _, known := out[v]; known || fresh || !math.IsNaN(m.BusySeconds) {
			out[v] = m
		}
	}
	return out, nil
}

// workerSeries gathers the worker components of a bucket's versions: the
// busy seconds' rate over the window and the thread counts, per version.
type workerSeries struct {
	busyOf    map[FunctionVersion][]Sample
	threadsOf map[FunctionVersion]workerThreads
}

func (w *workerSeries) busy(v FunctionVersion, s Series) error {
	if w.busyOf == nil {
		w.busyOf = map[FunctionVersion][]Sample{}
	}
	w.busyOf[v] = s.Samples
	return nil
}

// threads folds in one series of count_values: per step, how many of the
// version's workers reported the thread count its label holds.
func (w *workerSeries) threads(v FunctionVersion, s Series) error {
	n, err := strconv.ParseFloat(s.Labels[labelThreadCount], 64)
	if err != nil {
		return fmt.Errorf("version %s: thread count %q: %w", v.FunctionVersionID, s.Labels[labelThreadCount], err)
	}
	if w.threadsOf == nil {
		w.threadsOf = map[FunctionVersion]workerThreads{}
	}
	if w.threadsOf[v] == nil {
		w.threadsOf[v] = workerThreads{}
	}
	w.threadsOf[v].add(n, s.Samples)
	return nil
}

// labelThreadCount is the label count_values puts each thread count in;
// the answer is grouped by the version's ids, so no label of the
// workers' own can collide with it.
const labelThreadCount = "thread_count"

// workerThreads is a version's worker thread counts per step (by Unix
// milliseconds): their sum and how many worker series reported, which
// is the instance count.
type workerThreads map[int64]*stepThreads

type stepThreads struct {
	at      time.Time
	sum     float64
	workers int
}

// add folds in workers that reported threads each: samples are how
// many, per step.
func (w workerThreads) add(threads float64, samples []Sample) {
	for _, p := range samples {
		k := p.At.UnixMilli()
		st := w[k]
		if st == nil {
			st = &stepThreads{at: p.At}
			w[k] = st
		}
		st.sum += threads * p.Value
		st.workers += int(p.Value)
	}
}

// counts is the worker series per step, oldest first.
func (w workerThreads) counts() []Sample {
	out := make([]Sample, 0, len(w))
	for _, st := range w {
		out = append(out, Sample{At: st.at, Value: float64(st.workers)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// utilization is 100 x busy rate / threads at every step both have, in
// the order PromQL evaluates it, so the numbers are the server's to the
// bit: a step without threads (no worker series) has no utilization, a
// step with zero threads has +Inf or NaN, as the division in the server
// would.
func utilization(busy []Sample, threads workerThreads) []Sample {
	var out []Sample
	for _, p := range busy {
		if t, ok := threads[p.At.UnixMilli()]; ok {
			out = append(out, Sample{At: p.At, Value: 100 * p.Value / t.sum})
		}
	}
	return out
}

// ValueAt is the value of the sample at exactly t, NaN when the series has
// none there: a step of a query's grid is either answered or unknown.
func ValueAt(samples []Sample, t time.Time) float64 {
	for _, p := range samples {
		if p.At.Equal(t) {
			return p.Value
		}
	}
	return math.NaN()
}

// chunkIDs splits the versions' ids into chunks of at most limit bytes.
func chunkIDs(versions []FunctionVersion, limit int) []idChunk {
	ids := make([]string, len(versions))
	for i, v := range versions {
		ids[i] = v.FunctionVersionID
	}
	return chunkValues(ids, limit)
}

// lookupGroup is the most ids one label matcher holds. VictoriaMetrics
// looks the values of an alternation up in its index one by one only up
// to 20 of them (1.79; 100 in later releases); a longer one it matches, as
// a regex, against every value of the label it holds, a cost that grows
// with the fleet rather than with the bucket. On a VictoriaMetrics 1.79
// holding 100,000 versions (two loaded cores) the first utilization query
// over 1,000 ids took 12-13 s with one matcher in Cassandra's token order,
// 1-2 s with the ids sorted (Go's regexp then factors their prefixes) and
// 0.65-0.9 s after the first as a union of groups of 20; make bench
// ARGS=-probe-selectors measures the three. Repeats hit its tag-filter
// cache, but every new series (a worker starting) empties that cache, so
// in a live fleet the first query is the usual one.
const lookupGroup = 20

// idChunk is one query's worth of label values, regex-escaped and sorted,
// in groups of at most lookupGroup.
type idChunk [][]string

// union renders expr once per group, with the group's matcher on label,
// joined by join: the groups hold disjoint values, so the union is the
// whole chunk's answer, and still one query. A chunk of one group renders
// expr alone.
func (c idChunk) union(label string, join func(parts []string) string, expr func(matcher string) string) string {
	parts := make([]string, len(c))
	for i, g := range c {
		parts[i] = expr(label + `=~` + quote(strings.Join(g, "|")))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return join(parts)
}

// What a server said about union(...).
const (
	unionUnknown int32 = iota
	unionYes
	unionNo
)

// unionProbe is the query that asks whether the server has union: two
// series with the same (empty) label set, of which union keeps the first.
const unionProbe = "union(vector(1), vector(2))"

// unionProbeRetry is how long after a probe that got no answer the
// server is asked again. Asking at every bucket would add a query to each
// while a server fails only that one (a proxy that refuses instant
// queries with a 5xx, say); or costs VictoriaMetrics a few percent more
// CPU meanwhile, and answers the same.
const unionProbeRetry = time.Minute

// groupJoin returns how this server's queries join their groups:
// union(...) where it evaluates it (VictoriaMetrics), a balanced tree of
// or where it does not (Prometheus, Thanos, Mimir: PromQL has no union).
// The first call asks the server with an instant query, once per client
// unless it could not answer: a refusal of the query (400 or 422: an
// unknown function) means no union, and a server that could not be
// reached, or failed, is asked again once unionProbeRetry has passed, the
// chunks meanwhile joined by or, which every server evaluates. The probe
// is counted under the caller "probe", not the context's.
func (c *Client) groupJoin(ctx context.Context) func(parts []string) string {
	switch c.union.Load() {
	case unionYes:
		return unionOf
	case unionNo:
		return balancedOr
	}
	if time.Now().UnixNano() < c.unionRetryAt.Load() {
		return balancedOr
	}
	series, _, err := c.Query(WithCaller(ctx, "probe"), unionProbe, time.Now())
	var qe *QueryError
	switch {
	case err == nil && len(series) == 1 && len(series[0].Samples) == 1 && series[0].Samples[0].Value == 1:
		c.union.Store(unionYes)
		return unionOf
	case err == nil, errors.As(err, &qe) && (qe.Status == http.StatusBadRequest || qe.Status == http.StatusUnprocessableEntity):
		// An answer that is not union's is no union either.
		c.union.Store(unionNo)
	default:
		c.unionRetryAt.Store(time.Now().Add(unionProbeRetry).UnixNano())
	}
	return balancedOr
}

// joiner is groupJoin deferred to the first query with more than one
// group (a bucket of up to lookupGroup ids needs no join, and no probe),
// and asked once for the call's queries. It is for one goroutine.
func (c *Client) joiner(ctx context.Context) func(parts []string) string {
	var join func(parts []string) string
	return func(parts []string) string {
		if join == nil {
			join = c.groupJoin(ctx)
		}
		return join(parts)
	}
}

// unionOf joins expressions with MetricsQL's union(q1, ..., qN), which
// VictoriaMetrics evaluates in one pass over the series. A balanced tree
// of or costs it a map of both operands' series at every level: at 100,000
// versions (groups of 20, a bucket of 1,000 in one query) its or spent 8 %
// of the TSDB's CPU in warm cycles (profile of make bench, 2026-12-01).
// Each query returns series with distinct label sets, so union, which
// keeps the first of equal ones, returns what or does.
func unionOf(parts []string) string {
	return "union(" + strings.Join(parts, ", ") + ")"
}

// balancedOr joins expressions with or as a balanced tree: the TSDB builds
// a map of the left operand's series for each or, so a chain of g groups
// would re-index the growing left side g times, a tree only log2(g).
func balancedOr(parts []string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	h := len(parts) / 2
	return "(" + balancedOr(parts[:h]) + ") or (" + balancedOr(parts[h:]) + ")"
}

// chunkValues splits label values into chunks whose alternations (the
// values joined by |) are at most limit bytes each, each value once, in
// sorted order, so that groups of neighbours share prefixes. Values are
// regex-escaped: an id is data, never a pattern.
func chunkValues(values []string, limit int) []idChunk {
	values = slices.Clone(values)
	slices.Sort(values)
	values = slices.Compact(values)
	var chunks []idChunk
	var chunk idChunk
	size := 0
	for _, v := range values {
		id := regexp.QuoteMeta(v)
		if size > 0 && size+1+len(id) > limit {
			chunks = append(chunks, chunk)
			chunk, size = nil, 0
		}
		if n := len(chunk); n == 0 || len(chunk[n-1]) == lookupGroup {
			chunk = append(chunk, nil)
		}
		chunk[len(chunk)-1] = append(chunk[len(chunk)-1], id)
		if size > 0 {
			size++
		}
		size += len(id)
	}
	if len(chunk) > 0 {
		chunks = append(chunks, chunk)
	}
	return chunks
}
