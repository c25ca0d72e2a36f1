package policy

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Sample is one utilization point, in percent busy, at the TSDB's 60 s
// step. NaN and ±Inf are allowed: they mean the point is unknown.
type Sample struct {
	At    time.Time
	Value float64
}

// Recommendation is a raw recommendation made by an earlier decision,
// stored by the caller for the scale-down stabilization window.
type Recommendation struct {
	At    time.Time
	Count int
}

// Input is everything Decide knows about one function version.
type Input struct {
	Now time.Time

	// Current is the instance count at the last settled minute. A query
	// that succeeded and found no workers is Current 0 with CurrentKnown
	// true; CurrentKnown false means the count could not be determined.
	Current      int
	CurrentKnown bool

	// LastRequested is the last count written for this version.
	LastRequested      int
	LastRequestedKnown bool

	// Utilization is oldest first; empty means no data.
	Utilization []Sample
	// MetricsOK is false when the TSDB query failed: the state is unknown.
	MetricsOK bool

	// LastInvokedAt is the newest invocation seen; zero means none was
	// found in the span the caller searched.
	LastInvokedAt time.Time
	// InvocationsSince is where that search started. Zero means the caller
	// searched exactly the span of Utilization. A version with no
	// invocation counts as idle only when the searched span is at least
	// IdleTimeout long: absence of evidence over a shorter span (or after a
	// TSDB restart) is not idleness.
	InvocationsSince time.Time

	// Recent are earlier raw recommendations (Decision.Recommendation),
	// oldest first; only those inside RecommendationWindow of Now are used.
	// The flap window reads each as in force until the next, in order (a
	// seed and the first recommendation may share a time), so a caller may
	// pass every recommendation or only the changes; the plain
	// stabilization window counts only those made inside it, as HPA does.
	Recent []Recommendation

	// Fresh is the newest, partial-window utilization sample (a rate
	// ending at Now, newer than the last settled minute). The zero value
	// (At zero) means none. Target mode lets it raise a recommendation
	// only: a partial minute may show a load step a minute early, but it
	// may also show a lull that the settled minute would not, so it never
	// lowers a count and never takes a version to zero. NVCF mode ignores
	// it: the reference reads settled minutes only.
	Fresh Sample
	// Demand is the caller's estimate of offered demand (see Demand).
	// Target mode sizes a saturated version from it; NVCF mode ignores it.
	Demand Demand
	// Backlog is the caller's estimate of queued requests (see Backlog).
	// Target mode uses it to tell a saturated version draining the queue
	// of a step from one whose learned cost went stale; NVCF mode ignores
	// it.
	Backlog Backlog
	// Idle is the version's learned idle-gap histogram and ColdStart its
	// learned cold-start time, both kept by the caller in the scaling
	// state; learned keep-alive (Policy.KeepAlive) reads them. The zero
	// values have learned nothing, and the fixed timeout applies.
	Idle      IdleHistogram
	ColdStart ColdStart
	// ReleasedAt is when the version was last written to zero; zero means
	// unknown. An invocation after it came while the version was down,
	// and brings it up at once whatever learned keep-alive predicted.
	ReleasedAt time.Time
	// Source names the metric source the inputs came from ("worker",
	// "gateway", "control_plane"); it only labels the detail.
	Source string
}

// freshUtilization is the usable fresh sample, if any.
func (in Input) freshUtilization() (float64, bool) {
	if in.Fresh.At.IsZero() || !finite(in.Fresh.Value) {
		return 0, false
	}
	return in.Fresh.Value, true
}

// Reason says which rule produced a decision. The final rule that changed
// the number wins: a clamp reports clamped_*, not the step before it.
type Reason string

// Reasons.
const (
	ReasonScaleUp                Reason = "scale_up"
	ReasonScaleUpSaturated       Reason = "scale_up_saturated"
	ReasonScaleUpDemand          Reason = "scale_up_demand"
	ReasonScaleDown              Reason = "scale_down"
	ReasonHoldInBand             Reason = "hold_in_band"
	ReasonHoldDraining           Reason = "hold_draining"
	ReasonHoldNotSticky          Reason = "hold_not_sticky"
	ReasonHoldNoMetrics          Reason = "hold_no_metrics"
	ReasonHoldMetricsError       Reason = "hold_metrics_error"
	ReasonHoldUtilizationUnknown Reason = "hold_utilization_unknown"
	ReasonHoldCurrentUnknown     Reason = "hold_current_unknown"
	ReasonHoldWaitingForWorkers  Reason = "hold_waiting_for_workers"
	ReasonHoldAtZero             Reason = "hold_at_zero"
	ReasonScaleFromZero          Reason = "scale_from_zero"
	ReasonScaleToZero            Reason = "scale_to_zero"
	ReasonScaleToZeroLearned     Reason = "scale_to_zero_learned"
	ReasonPrewarm                Reason = "prewarm"
	ReasonStabilized             Reason = "stabilized"
	ReasonStabilizedFlapping     Reason = "stabilized_flapping"
	ReasonRateLimitedUp          Reason = "rate_limited_up"
	ReasonRateLimitedDown        Reason = "rate_limited_down"
	ReasonClampedMin             Reason = "clamped_min"
	ReasonClampedMax             Reason = "clamped_max"
	ReasonInvalidPolicy          Reason = "invalid_policy"
)

// Decision is the policy's answer for one version.
type Decision struct {
	// Desired is the instance count to request. When Valid is false it is
	// only informative: the largest of current, last requested and min, so
	// a caller that ignores Valid still never scales down on bad data.
	Desired int
	// Valid is false when the inputs cannot be trusted; the caller should
	// hold and not record Recommendation.
	Valid  bool
	Reason Reason
	// Recommendation is the raw recommendation before stabilization, rate
	// bounds and clamping: store it and pass it back in Input.Recent.
	Recommendation int
	// Detail is short human text with the numbers behind the decision.
	Detail string
}

// floatSlack absorbs binary representation error so that, say, 5*1.2
// computed as 6.000000000000001 is still 6 instances, not 7.
const floatSlack = 1e-9

func ceilCount(x float64) int  { return int(math.Ceil(x - floatSlack)) }
func floorCount(x float64) int { return int(math.Floor(x + floatSlack)) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Decide returns the desired instance count for one version. Rules, in
// order:
//
//  1. An invalid policy, a failed metrics query or an unknown current count
//     hold (Valid false). So does a version at 0 whose last request was
//     above 0: its new workers have not reported yet.
//  2. At 0 instances: stay there while idle (with scale to zero on), else
//     come up to max(1, MinInstances). The activation event is the fast
//     path; this is the backstop when it was lost.
//  3. No samples, or a latest sample that is NaN/Inf, hold. The reference
//     reads such points as 0 and would scale down; we treat them as
//     unknown, because a TSDB outage read as zero load is the classic way
//     to drop a service at peak (KEDA #3065, faas-idler #33). In target
//     mode a known Fresh sample may still scale up, and only up.
//  4. Scale to zero (the only path to 0): enabled, idle for IdleTimeout,
//     and both the average and the latest utilization below DownThreshold.
//     The latest check is stricter than the reference: a version that is
//     busy right now is not idle whatever the invocation metric says. In
//     target mode a Fresh sample at or above DownThreshold blocks it too.
//  5. The mode's raw recommendation (see ModeNVCF, ModeTarget). Target
//     mode takes the larger of the settled and the Fresh recommendation,
//     and sizes a saturated version from Demand when it is known.
//  6. Scale-down stabilization, then step-rate bounds, then [Min, Max].
//
// Scale to zero skips 6's stabilization and rate bounds: the idle timeout
// already demands a far longer and stricter quiet period than either.
func Decide(p Policy, in Input) Decision {
	if err := p.Validate(); err != nil {
		return hold(p, in, ReasonInvalidPolicy, err.Error())
	}
	if !in.MetricsOK {
		return hold(p, in, ReasonHoldMetricsError, "utilization query failed; keeping the current size")
	}
	if !in.CurrentKnown || in.Current < 0 {
		return hold(p, in, ReasonHoldCurrentUnknown, "instance count unknown")
	}
	cur := in.Current
	lastReq := lastRequested(in)
	if cur == 0 && lastReq > 0 {
		return hold(p, in, ReasonHoldWaitingForWorkers,
			fmt.Sprintf("requested %d, no worker reported yet", lastReq))
	}
	if cur == 0 {
		return p.atZero(in)
	}

	source := ""
	if in.Source != "" {
		source = "source=" + in.Source + " "
	}
	fresh, freshOK := in.freshUtilization()
	freshOK = freshOK && p.Mode == ModeTarget

	n := len(in.Utilization)
	if n == 0 || !finite(in.Utilization[n-1].Value) {
		// Missing settled data holds, except that a fresh sample may scale
		// up: right after a version comes up from zero, its first settled
		// minute is a minute away while the fresh one may already show it
		// saturated. Nothing else may act on it.
		if freshOK {
			if d, ok := p.freshOnly(in, cur, fresh, source); ok {
				return d
			}
		}
		if n == 0 {
			return hold(p, in, ReasonHoldNoMetrics, fmt.Sprintf("%scur=%d, no utilization samples", source, cur))
		}
		return hold(p, in, ReasonHoldUtilizationUnknown, fmt.Sprintf("%scur=%d, latest sample is %v", source, cur, in.Utilization[n-1].Value))
	}
	latest := in.Utilization[n-1].Value
	avg := weightedAverage(in.Utilization, p.Decay)

	// A fresh sample at or above the down threshold says the version is not
	// idle now; it may only keep instances, so it blocks scale to zero.
	freshBusy := freshOK && fresh >= p.DownThreshold
	if p.ScaleToZero && avg < p.DownThreshold && latest < p.DownThreshold && !freshBusy {
		quiet := fmt.Sprintf("%scur=%d latest=%.1f avg=%.1f < %g, ", source, cur, latest, avg, p.DownThreshold)
		if pl, plan, learned := p.learnedPlan(in); learned {
			if release, why := pl.learnedRelease(in.Now.Sub(in.LastInvokedAt), plan); release {
				d := p.toZero(cur, quiet+why)
				if d.Reason == ReasonScaleToZero {
					d.Reason = ReasonScaleToZeroLearned
				}
				return d
			}
		} else if idle, why := p.idle(in); idle {
			if plan != "" {
				why += "; " + plan
			}
			return p.toZero(cur, quiet+why)
		}
	}

	var rec int
	var reason Reason
	var detail string
	switch p.Mode {
	case ModeTarget:
		// The settled window before the latest one, and the latest one
		// before the fresh one: see target's afterSaturated.
		before := n >= 2 && finite(in.Utilization[n-2].Value) && in.Utilization[n-2].Value >= SaturatedUtilization
		rec, reason, detail = p.target(cur, latest, before, in.Demand, in.Backlog)
		if freshOK {
			// Fresh only raises: max of the two, never the fresh one alone
			// when it is lower.
			// The fresh window overlaps the latest settled one, so it is
			// after a saturated window when that one was or followed one
			// (a fresh-clone CI run: the settled window held at the
			// demand size of 8, the fresh one, the same 86.2 %, raised
			// it to 10).
			afterSaturated := before || latest >= SaturatedUtilization
			if frec, freason, fdetail := p.target(freshCount(in, cur), fresh, afterSaturated, in.Demand, in.Backlog); frec > rec {
				rec, reason = frec, freason
				detail += fmt.Sprintf("; fresh=%.1f raises to %d: %s", fresh, frec, fdetail)
			}
		}
	default:
		rec, reason, detail = p.nvcf(cur, in.Utilization)
	}
	detail = fmt.Sprintf("%scur=%d latest=%.1f avg=%.1f %s", source, cur, latest, avg, detail)
	return p.finish(in, cur, rec, reason, detail)
}

// freshOnly decides from the fresh sample alone, when there is no settled
// one: only a scale-up above both the running and the requested count is
// acted on (ok true); anything else leaves the caller to hold. The test is
// on the final count, not only the recommendation: a MaxInstances below
// the running count would otherwise turn it into a scale-down on no
// settled data.
func (p Policy) freshOnly(in Input, cur int, fresh float64, source string) (Decision, bool) {
	rec, reason, detail := p.target(freshCount(in, cur), fresh, false, in.Demand, in.Backlog)
	detail = fmt.Sprintf("%scur=%d no settled sample, fresh=%.1f %s", source, cur, fresh, detail)
	d := p.finish(in, cur, rec, reason, detail)
	return d, d.Desired > max(cur, lastRequested(in))
}

// freshCount is the instance count the fresh sample's utilization is read
// against: the fewest workers its window can have had. The count at the
// settled minute is older than the fresh window; after a scale-down was
// requested the fresh window may have fewer workers, and its utilization
// times the settled count then overstates the busy work (54.9 % of the 9
// left read as 54.9 % of 11: 6.04 busy instances for 4.94). The fresh
// sample may only raise a count, so overstating is the error to avoid:
// a version shrinking from 11 to 9 was raised back to 11 by it, every
// other cycle.
func freshCount(in Input, cur int) int {
	if lr := lastRequested(in); lr > 0 {
		return min(cur, lr)
	}
	return cur
}

// hold builds a decision the caller must not act on. Desired never goes
// below what is running or was last asked for, so bad data cannot shrink a
// version or take it to zero.
func hold(p Policy, in Input, reason Reason, detail string) Decision {
	d := max(p.MinInstances, lastRequested(in), 0)
	if in.CurrentKnown {
		d = max(d, in.Current)
	}
	return Decision{Desired: d, Valid: false, Reason: reason, Recommendation: d, Detail: detail}
}

func lastRequested(in Input) int {
	if !in.LastRequestedKnown {
		return 0
	}
	return max(in.LastRequested, 0)
}

// atZero decides for a version with no workers and nothing pending.
func (p Policy) atZero(in Input) Decision {
	pl, why, learned := p.learnedPlan(in)
	if learned {
		return p.learnedAtZero(in, pl, why)
	}
	if why != "" {
		why = "; " + why
	}
	if p.ScaleToZero && !p.recentlyInvoked(in) {
		d := Decision{Desired: 0, Valid: true, Reason: ReasonHoldAtZero, Detail: "at zero, no invocation within the idle timeout" + why}
		if p.MinInstances > 0 {
			d.Desired, d.Reason = p.MinInstances, ReasonClampedMin
			d.Detail += fmt.Sprintf("; raised to min %d", p.MinInstances)
		}
		return d
	}
	// From zero there is nothing to multiply and no utilization to read:
	// jump straight to the floor, as Ray Serve does, and let the next
	// cycles size it from real samples.
	d := Decision{Desired: max(1, p.MinInstances), Valid: true, Reason: ReasonScaleFromZero, Recommendation: 1,
		Detail: "at zero and recently invoked" + why}
	if !p.ScaleToZero {
		d.Detail = "at zero with scale to zero off"
	}
	return d
}

// recentlyInvoked is positive evidence of use inside the idle timeout.
func (p Policy) recentlyInvoked(in Input) bool {
	return !in.LastInvokedAt.IsZero() && in.Now.Sub(in.LastInvokedAt) < p.IdleTimeout
}

// idle reports whether the version has gone IdleTimeout without an
// invocation, and why, with evidence covering the whole timeout.
func (p Policy) idle(in Input) (bool, string) {
	if !in.LastInvokedAt.IsZero() {
		since := in.Now.Sub(in.LastInvokedAt)
		return since >= p.IdleTimeout, fmt.Sprintf("last invoked %s ago", since.Truncate(time.Second))
	}
	from := in.InvocationsSince
	if from.IsZero() {
		for _, s := range in.Utilization {
			if !s.At.IsZero() {
				from = s.At
				break
			}
		}
	}
	if from.IsZero() {
		return false, "no invocation data"
	}
	span := in.Now.Sub(from)
	return span >= p.IdleTimeout, fmt.Sprintf("no invocation in %s", span.Truncate(time.Second))
}

func (p Policy) toZero(cur int, detail string) Decision {
	d := Decision{Desired: 0, Valid: true, Reason: ReasonScaleToZero, Recommendation: 0, Detail: detail}
	if p.MinInstances > 0 {
		d.Desired, d.Reason = p.MinInstances, ReasonClampedMin
		d.Detail += fmt.Sprintf("; held at min %d", p.MinInstances)
	}
	return d
}

// weightedAverage skips unknown points rather than reading them as 0 (the
// reference's choice), which only ever makes scale to zero harder.
func weightedAverage(samples []Sample, decay float64) float64 {
	n := len(samples)
	var sum, weights float64
	for i, s := range samples {
		if !finite(s.Value) {
			continue
		}
		// The newest point weighs exactly 1 (exp(0), also with decay 0),
		// so however large the decay the weights cannot all underflow.
		w := math.Exp(-decay * float64(n-1-i))
		sum += w * s.Value
		weights += w
	}
	if weights == 0 {
		return math.NaN()
	}
	return sum / weights
}

// nvcf is the reference's static policy. A direction steps when at least
// Required of its last Window samples breach its threshold (without a
// stickiness rule: the latest sample, a window of one), and that count
// replaces the latest-sample rule: with a rule the latest sample need not
// breach. Up is tested first and wins when both would fire. Unknown points
// (NaN, ±Inf) never count as breaching; the reference reads them as 0,
// which would count a TSDB gap as a down breach.
func (p Policy) nvcf(cur int, samples []Sample) (int, Reason, string) {
	band := fmt.Sprintf("band=[%g,%g]", p.DownThreshold, p.UpThreshold)
	up := breaches(p.UpStickiness, samples, func(v float64) bool { return v > p.UpThreshold })
	if up.fires() {
		return ceilCount(float64(cur) * p.UpFactor), ReasonScaleUp, fmt.Sprintf("%s x%g%s", band, p.UpFactor, up)
	}
	down := breaches(p.DownStickiness, samples, func(v float64) bool { return v < p.DownThreshold })
	if down.fires() {
		return max(floorCount(float64(cur)*p.DownFactor), 1), ReasonScaleDown, fmt.Sprintf("%s x%g%s", band, p.DownFactor, down)
	}
	// Some breaches that a rule did not count as enough are a sticky hold,
	// so the detail says how far the version is from a step.
	var held []string
	if up.rule && up.got > 0 {
		held = append(held, "up held:"+up.String())
	}
	if down.rule && down.got > 0 {
		held = append(held, "down held:"+down.String())
	}
	if len(held) > 0 {
		return cur, ReasonHoldNotSticky, band + " " + strings.Join(held, ",")
	}
	return cur, ReasonHoldInBand, band
}

// breachCount is one direction's count over its window.
type breachCount struct {
	rule                bool // a stickiness rule is on
	got, window, needed int
}

func (b breachCount) fires() bool { return b.got >= b.needed }

// String reads " (3 of last 5 breach, 3 needed)" for a rule, "" without.
func (b breachCount) String() string {
	if !b.rule {
		return ""
	}
	return fmt.Sprintf(" (%d of last %d breach, %d needed)", b.got, b.window, b.needed)
}

// breaches counts breaching samples among the last Window ones (the last
// one only without a rule). The reference takes the last samples of the
// series, not a time span, so this does too.
func breaches(s Stickiness, samples []Sample, breach func(float64) bool) breachCount {
	b := breachCount{window: 1, needed: 1}
	if s.Enabled() {
		b = breachCount{rule: true, window: s.Window(), needed: s.Required()}
	}
	for _, smp := range samples[max(len(samples)-b.window, 0):] {
		if finite(smp.Value) && breach(smp.Value) {
			b.got++
		}
	}
	return b
}

// target sizes the version so that its busy work (utilization x
// instances) lands on TargetUtilization. The tolerance is on the metric
// ratio, as in HPA, not on desired/current: at one instance the latter
// rounds any change to 100 % and flaps between 1 and 2.
//
// A saturated sample only says demand is at least the current capacity.
// With a known Demand the version is sized for it in one step (see
// below). Without one the step doubles (KPA's panic and HPA's default 100 % policy),
// never less than the proportional or UpFactor step, and never more than
// MaxScaleUpRate. Doubling rather than the largest allowed step keeps the
// overshoot under 2x: with GPU instances, ten times the capacity for one
// saturated minute costs more than one extra cycle of climbing. It cannot
// run away because each decision multiplies the settled Current (cycles
// before new workers report recompute the same number instead of
// compounding) and is bounded by MaxInstances and the NVCF spec.
//
// The backlog (see Backlog) decides what busy work above the known demand
// means: while the newest window served requests estimated queued
// (Backlog.Serving) it is the queue draining, and the version is held at
// its demand size; once a window began with the estimate run out and the
// version is still saturated, it is a stale cost, and the version doubles.
//
// afterSaturated says the window before this one read saturated. The
// utilization window is longer than the step (70 s every 60 s by
// default, 8 s every 4 s in the closed loop), so the window after the one
// a queue drained in still averages in the end of that drain, and at a
// saturated window's end every worker thread is in the middle of a
// request whose remaining busy seconds fall into the next window. Such a
// window reads busier than its demand with no queue left: in the closed
// loop 86-89 % of 8 instances, 6.9-7.1 busy for a demand of 5, while the
// simulator's queue had emptied at the end of the window before, and
// utilization took the version sized for its demand from 8 to 10 and 11.
// So an unsaturated window right after a saturated one that is busier
// than the demand is the drain's end and holds at the demand size too.
// It cannot hide a stale cost for more than that window: the next one is
// not after a saturated one, and a saturated one is judged on the
// estimate alone.
func (p Policy) target(cur int, latest float64, afterSaturated bool, demand Demand, backlog Backlog) (int, Reason, string) {
	ratio := math.Max(latest, 0) / p.TargetUtilization
	busy := math.Max(latest, 0) * float64(cur) / 100
	detail := fmt.Sprintf("target=%g busy=%.2f ratio=%.2f", p.TargetUtilization, busy, ratio)
	proportional := max(ceilCount(float64(cur)*ratio), 1)
	need := 0
	if demand.Known() {
		need = ceilCount(demand.Instances * 100 / p.TargetUtilization)
	}
	// Draining: the workers are busier than the demand explains and the
	// backlog says the window served requests queued from before. The demand size
	// serves the arrivals at the target and drains the queue with the
	// rest; more instances would come up as the queue empties and then sit
	// idle, which is how a 10x step used to end at twice its demand size.
	drainEnd := afterSaturated && latest < SaturatedUtilization && backlog.Known()
	draining := demand.Known() && demand.Instances < busy && (backlog.Serving() || drainEnd)
	drain := func() (int, Reason, string) {
		rec, reason := max(cur, need), ReasonHoldDraining
		if rec > cur {
			reason = ReasonScaleUpDemand
		}
		queue := backlog.String()
		if !backlog.Serving() {
			queue = "end of the drain in the saturated window before (" + queue + ")"
		}
		return rec, reason, fmt.Sprintf("%s draining: busy above %s is the %s; demand needs %d at target", detail, demand, queue, need)
	}
	if latest >= SaturatedUtilization {
		floor := max(proportional, ceilCount(float64(cur)*p.UpFactor))
		// A known demand replaces the doubling: it sees the queue that
		// utilization cannot, so one step sizes the version for it at the
		// target. It must be at least what the workers are measurably busy
		// with, unless the backlog explains the difference: a saturated
		// version has at least that much demand, and an estimate below it
		// with no queue left to serve is wrong (a stale cost after the
		// workload got heavier), so it is ignored rather than trusted to
		// under-size.
		var ignored string
		if demand.Known() {
			if demand.Instances >= busy {
				return max(floor, need), ReasonScaleUpDemand,
					fmt.Sprintf("%s saturated, %s needs %d at target", detail, demand, need)
			}
			if draining {
				return drain()
			}
			ignored = fmt.Sprintf(", %s ignored: below the measured busy %.2f with %s", demand, busy, backlog)
		}
		growth := math.Max(2, p.UpFactor)
		if p.MaxScaleUpRate > 0 {
			growth = math.Min(growth, p.MaxScaleUpRate)
		}
		rec := max(floor, ceilCount(float64(cur)*growth))
		return rec, ReasonScaleUpSaturated, fmt.Sprintf("%s saturated x%g%s", detail, growth, ignored)
	}
	if math.Abs(ratio-1) <= p.Tolerance {
		return cur, ReasonHoldInBand, fmt.Sprintf("%s within ±%g", detail, p.Tolerance)
	}
	switch {
	case proportional > cur:
		// Below saturation demand only shapes an up move that utilization
		// already calls for. What an unsaturated version's workers are
		// busy with is its load, give or take a queue: a demand above it
		// is a queue building (the load stepped up inside the window, and
		// the next window will read saturated), so the step goes to the
		// demand size now instead of a cycle later; a demand below it with
		// a backlog queued is the drain, and the step stops at the demand
		// size. Demand never starts a move or lowers one below the
		// current count: a stale cost above the truth must not hold
		// instances that utilization says are idle.
		if draining {
			return drain()
		}
		// need above proportional is demand above busy, both at the target.
		if demand.Known() && need > proportional {
			return need, ReasonScaleUpDemand, fmt.Sprintf("%s, %s needs %d at target", detail, demand, need)
		}
		return proportional, ReasonScaleUp, detail
	case proportional < cur:
		return proportional, ReasonScaleDown, detail
	}
	return cur, ReasonHoldInBand, detail
}

// finish applies stabilization, rate bounds and the [Min, Max] clamp to a
// raw recommendation for a running version.
//
// Moves are measured from the larger of the running count and the last
// request, as HPA measures from the spec rather than the ready pods: while
// requested instances are still provisioning, the measured count lags, and
// a recommendation between the two is a scale-down of the request, not a
// hold. Measuring from the running count alone let a cycle undo the
// previous cycle's scale-up before its instances had even reported.
func (p Policy) finish(in Input, cur, rec int, reason Reason, detail string) Decision {
	desired := rec
	base := max(cur, lastRequested(in))
	// HPA's rule: a downward move goes only as far as the highest
	// recommendation in the window, and never above the current size (an
	// old up recommendation must not cause an up move now), so this only
	// ever changes a move below base. No window holds nothing, not even a
	// recommendation dated after Now by a clock ahead.
	held := func(window time.Duration) int {
		if window <= 0 {
			return desired
		}
		return min(max(desired, highestAfter(in.Recent, in.Now.Add(-window))), base)
	}
	plain, hi := held(p.ScaleDownStabilization), 0
	if p.flapping(in) {
		hi = held(p.ScaleDownFlapWindow)
	}
	switch {
	case hi > plain:
		// Held by the flap window alone: said apart, in the reason too,
		// so that a dashboard shows what the flap window holds.
		desired, reason = hi, ReasonStabilizedFlapping
		detail += fmt.Sprintf("; stabilized at %d (highest in %s, flapping; %s alone: %d)", hi, p.ScaleDownFlapWindow, p.ScaleDownStabilization, plain)
	case plain > desired:
		desired, reason = plain, ReasonStabilized
		detail += fmt.Sprintf("; stabilized at %d (highest in %s)", plain, p.ScaleDownStabilization)
	}
	// The rate limits are at least base (up, rate > 1) and at most base
	// (down, never below 1), so each binds only on a move its way.
	if p.MaxScaleUpRate > 0 {
		if limit := ceilCount(float64(base) * p.MaxScaleUpRate); desired > limit {
			desired, reason = limit, ReasonRateLimitedUp
			detail += fmt.Sprintf("; up rate x%g allows %d", p.MaxScaleUpRate, limit)
		}
	}
	if p.MaxScaleDownRate > 0 {
		if limit := max(floorCount(float64(base)/p.MaxScaleDownRate), 1); desired < limit {
			desired, reason = limit, ReasonRateLimitedDown
			detail += fmt.Sprintf("; down rate /%g allows %d", p.MaxScaleDownRate, limit)
		}
	}
	if floor := max(p.MinInstances, 1); desired < floor {
		desired, reason = floor, ReasonClampedMin
		detail += fmt.Sprintf("; min %d", floor)
	}
	if p.MaxInstances > 0 && desired > p.MaxInstances {
		desired, reason = p.MaxInstances, ReasonClampedMax
		detail += fmt.Sprintf("; max %d", p.MaxInstances)
	}
	return Decision{Desired: desired, Valid: true, Reason: reason, Recommendation: rec, Detail: detail}
}

// highestAfter is the highest recommendation made after from, 0 if none.
func highestAfter(recent []Recommendation, from time.Time) int {
	hi := 0
	for _, r := range recent {
		if r.At.After(from) {
			hi = max(hi, r.Count)
		}
	}
	return hi
}

// RecommendationWindow is how far back Input.Recent must reach: the wider
// of the two scale-down windows.
func (p Policy) RecommendationWindow() time.Duration {
	return max(p.ScaleDownStabilization, p.ScaleDownFlapWindow)
}

// flapDrop is how far below their peak the recommendations must fall to
// count as a low phase: the ±10 % noise of a steady load (up to a fifth
// from top to bottom) stays above it, the bench's oscillating load (a
// third of its high phase) falls well below it.
const flapDrop = 0.25

// flapMinStep is the least fall, in instances, that counts as a low
// phase: at one or two instances a step of one is the rounding of a
// single worker's busy share around the target, not a load that flipped,
// and holding it for the flap window cost the bench's bursty invocation
// traces a fifth more idle instance-minutes for nothing.
const flapMinStep = 2

// flapping is whether the flap window is wider than the plain one and
// the recommendations inside it flapped (see ScaleDownFlapWindow).
func (p Policy) flapping(in Input) bool {
	return p.ScaleDownFlapWindow > p.ScaleDownStabilization && flapped(in.Recent, in.Now.Add(-p.ScaleDownFlapWindow), p.ScaleDownStabilization)
}

// flapped reports whether the recommendations after from (oldest first,
// each in force until the next) rose back to their peak after a low phase
// below it by flapDrop and flapMinStep that lasted at least minLow. The
// low phase must last minLow because a shorter one never got past the
// plain stabilization window: a one-cycle dip (a drain misread, a lost
// scrape) moved nothing and must not hold a spike's peak for the whole
// flap window. With no plain window (minLow 0) every dip moved the count,
// and every dip and return is a flap. The return may come in steps (a
// fresh reading sees part of a rise: 2, 3, 4 on the real servers): once a
// long enough low phase has ended, reaching the peak at any later point
// is the return.
func flapped(recent []Recommendation, from time.Time, minLow time.Duration) bool {
	peak := -1
	var lowSince time.Time
	low, fell := false, false
	for _, r := range recent {
		if !r.At.After(from) {
			continue
		}
		line := min(float64(peak)*(1-flapDrop), float64(peak-flapMinStep))
		switch {
		case r.Count == 0:
			// Going to zero and back is keep-alive's cycle of release
			// and cold start, which has its own rules; a flap is
			// measured from the first recommendation after it.
			peak, low, fell = -1, false, false
		case peak < 0:
			peak = r.Count
		case float64(r.Count) <= line:
			if !low {
				low, lowSince = true, r.At
			}
		default:
			if low {
				low = false
				fell = fell || r.At.Sub(lowSince) >= minLow
			}
			if fell && r.Count >= peak {
				return true
			}
			// A short dip's return or a new high: the peak stays the
			// highest seen.
			peak = max(peak, r.Count)
		}
	}
	return false
}
