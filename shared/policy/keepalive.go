package policy

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Learned keep-alive follows the hybrid histogram policy of "Serverless in
// the Wild" (Shahrad et al., USENIX ATC 2020): learn each version's
// distribution of idle gaps, keep an idle version up until a high
// percentile of it, release it early and pre-warm it shortly before a low
// percentile when the pattern is clear, and fall back to the fixed timeout
// when the histogram is not representative. The constants below are the
// paper's where it gives one (1-minute bins over 4 hours, a 10 % margin on
// both percentiles); the decay is ours, because the scaling state keeps
// one histogram forever and it must follow a pattern that changes, and so
// is the test for a clear pattern (see plan).

// KeepAliveMode selects how long an idle version stays up.
type KeepAliveMode string

const (
	// KeepAliveFixed scales to zero after IdleTimeout without an
	// invocation: the reference's rule.
	KeepAliveFixed KeepAliveMode = "fixed"
	// KeepAliveLearned scales to zero and pre-warms from the version's
	// idle-gap histogram when it is representative, and behaves as
	// KeepAliveFixed when it is not.
	KeepAliveLearned KeepAliveMode = "learned"
)

const (
	// IdleBinWidth is one histogram bin. The scale function sees
	// invocations at the TSDB's 60 s step, so a finer bin would only
	// spread the same evidence thinner.
	IdleBinWidth = time.Minute
	// IdleBins covers gaps up to 4 hours; longer ones are counted in the
	// overflow. Four hours holds the periods that pre-warming can exploit
	// (hourly jobs and their multiples) while keeping the state small.
	IdleBins = 240
	// IdleHalfLife is how many observed gaps (not wall time) it takes for
	// an old gap's weight to halve. Counting gaps rather than time lets a
	// function called twice a day and one called every ten minutes both
	// keep about the same evidence (the weight levels off near 17.8), and
	// a pattern that changes is followed within a dozen of its gaps.
	IdleHalfLife = 12.0
	// IdleMinGaps is the decayed number of gaps a histogram needs before
	// it is representative: fewer and one odd gap moves every percentile.
	IdleMinGaps = 6.0
	// IdleMaxOverflow is the largest share of gaps beyond the range a
	// representative histogram may have: past it the percentiles say more
	// about the range than about the function.
	IdleMaxOverflow = 0.5
	// IdleMargin widens both learned windows by 10 % (pre-warm earlier,
	// keep alive longer), the paper's margin against jitter.
	IdleMargin = 0.1
	// idlePrune drops a bin whose weight decayed below it, so the encoded
	// state stays small: 0.001 of a gap cannot move a percentile.
	idlePrune = 1e-3
)

// idleDecay multiplies the old evidence at every new gap.
var idleDecay = math.Pow(0.5, 1/IdleHalfLife)

// IdleHistogram is one version's learned distribution of idle gaps: the
// time from the end of one invocation burst to the start of the next, in
// IdleBins bins of its bin width (IdleBinWidth unless made with
// NewIdleHistogram) plus an overflow weight, decayed per gap. It is a
// value: Observe returns a new one. The zero value has learned nothing.
// Its size is fixed whatever the history.
type IdleHistogram struct {
	bins      [IdleBins]float64
	overflow  float64
	updatedAt time.Time
	// bin is the bin width; zero means IdleBinWidth.
	bin time.Duration
}

// NewIdleHistogram is an empty histogram of bins `bin` wide (IdleBinWidth
// when not positive): the resolution its gaps are measured at, the
// scale function's UTILIZATION_STEP. Every time the plan reads in bins
// scales with it (the quiet time before a release, the least lead of a
// pre-warm, the replay's step), so an accelerated loop with a 4 s step
// learns and acts as production does with 60 s, fifteen times faster.
func NewIdleHistogram(bin time.Duration) IdleHistogram {
	if bin <= 0 || bin == IdleBinWidth {
		return IdleHistogram{}
	}
	return IdleHistogram{bin: bin}
}

// Bin is the histogram's bin width.
func (h IdleHistogram) Bin() time.Duration {
	if h.bin <= 0 {
		return IdleBinWidth
	}
	return h.bin
}

// Range is the longest gap the bins hold; longer ones are overflow.
func (h IdleHistogram) Range() time.Duration { return IdleBins * h.Bin() }

// Observe folds one gap that ended at `at` into the histogram. A gap that
// is not positive is left out, and so is one that does not end after the
// last one folded in: a replayed or out-of-order observation would count
// the same gap twice.
func (h IdleHistogram) Observe(at time.Time, gap time.Duration) IdleHistogram {
	if gap <= 0 || at.IsZero() || (!h.updatedAt.IsZero() && !at.After(h.updatedAt)) {
		return h
	}
	for i := range h.bins {
		if h.bins[i] *= idleDecay; h.bins[i] < idlePrune {
			h.bins[i] = 0
		}
	}
	if h.overflow *= idleDecay; h.overflow < idlePrune {
		h.overflow = 0
	}
	if b := int(gap / h.Bin()); b < IdleBins {
		h.bins[b]++
	} else {
		h.overflow++
	}
	h.updatedAt = at
	return h
}

// UpdatedAt is when the last gap folded in ended (zero: none).
func (h IdleHistogram) UpdatedAt() time.Time { return h.updatedAt }

// Gaps is the decayed number of gaps behind the histogram, overflow
// included.
func (h IdleHistogram) Gaps() float64 { return h.inRange() + h.overflow }

// Overflow is the decayed number of gaps longer than the range.
func (h IdleHistogram) Overflow() float64 { return h.overflow }

func (h IdleHistogram) inRange() float64 {
	var sum float64
	for _, w := range h.bins {
		sum += w
	}
	return sum
}

// Representative reports whether the histogram holds enough evidence for
// learned keep-alive to read: at least IdleMinGaps gaps, at most
// IdleMaxOverflow of them beyond the range. Whether the pattern is clear
// enough to act on is the policy's test (see Policy.KeepAlive).
func (h IdleHistogram) Representative() bool {
	n := h.Gaps()
	return n >= IdleMinGaps && h.overflow <= IdleMaxOverflow*n
}

// Percentile returns the gap below which fraction q (0..1) of the decayed
// gaps fall, interpolated linearly inside its bin. ok is false when
// nothing is learned, q is out of (0, 1), or the percentile lies in the
// overflow (beyond the range, where the histogram cannot say how far).
func (h IdleHistogram) Percentile(q float64) (time.Duration, bool) {
	return h.percentileAfter(q, 0)
}

// percentileAfter is Percentile among the gaps longer than after: given
// that the current gap has lasted `after`, the gap below which fraction q
// of the gaps that lasted that long end. Gaps inside bursts (short ones)
// then stop hiding the gap between bursts. The bin holding `after` counts
// only its part above it, assuming gaps spread evenly inside a bin.
func (h IdleHistogram) percentileAfter(q float64, after time.Duration) (time.Duration, bool) {
	// Most versions never learned a gap, and without weights the answer
	// is "none" (weights are never negative). The suffix sums over 240
	// bins, and the frame that holds them growing a fresh goroutine's
	// stack, were 6 % of the scale function's CPU at 100,000 versions:
	// its decision log reads two percentiles of every idle version.
	if h.Gaps() == 0 {
		return 0, false
	}
	return h.cumulative().percentileAfter(q, after)
}

// idleCDF is a histogram with its suffix sums, so that a percentile is a
// binary search: learned keep-alive reads dozens of them per decision.
type idleCDF struct {
	h *IdleHistogram
	// above[i] is the weight of bins i and up (overflow excluded).
	above [IdleBins + 1]float64
}

func (h *IdleHistogram) cumulative() *idleCDF {
	c := &idleCDF{h: h}
	for i := range IdleBins {
		b := IdleBins - 1 - i
		c.above[b] = c.above[b+1] + h.bins[b]
	}
	return c
}

func (c *idleCDF) percentileAfter(q float64, after time.Duration) (time.Duration, bool) {
	if !(q > 0 && q < 1) || after < 0 {
		return 0, false
	}
	width := float64(c.h.Bin())
	from := float64(after) / width // in bins
	if from >= IdleBins {
		return 0, false
	}
	b := int(from)
	// The part of bin b above `after`, then every bin above it.
	partial := c.h.bins[b] * (float64(b) + 1 - from)
	total := partial + c.above[b+1] + c.h.overflow
	if total <= 0 {
		return 0, false
	}
	want := q * total
	if want <= partial {
		return time.Duration((from + (float64(b)+1-from)*want/partial) * width), true
	}
	rest := want - partial
	if rest > c.above[b+1] {
		return 0, false // in the overflow
	}
	// The first bin j above b whose cumulative weight from b+1 reaches
	// rest: above[j+1] <= above[b+1] - rest, searched over the
	// non-increasing suffix sums. It exists (0 < rest <= above[b+1] and
	// above[IdleBins] is 0) and is not empty: above[j] > limit >= above[j+1],
	// and an empty bin's suffix sum equals the next one exactly.
	limit := c.above[b+1] - rest
	j := b + 1 + sort.Search(IdleBins-b-1, func(k int) bool { return c.above[b+1+k+1] <= limit })
	before := c.above[b+1] - c.above[j]
	return time.Duration((float64(j) + min(1, (rest-before)/c.h.bins[j])) * width), true
}

// Encode is compact text for one Cassandra column: the version, the time
// of the last gap, the overflow weight and the non-empty bins, e.g.
// "v1 t=1764500000 o=0 55=3.21 56=1.05", with "b=<seconds>" after the
// overflow when the bin is not IdleBinWidth. A histogram that learned
// nothing is "".
func (h IdleHistogram) Encode() string {
	if h.updatedAt.IsZero() {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v1 t=%d o=%s", h.updatedAt.Unix(), formatWeight(h.overflow))
	if h.Bin() != IdleBinWidth {
		fmt.Fprintf(&b, " b=%s", strconv.FormatFloat(h.Bin().Seconds(), 'g', -1, 64))
	}
	for i, w := range h.bins {
		if w > 0 {
			fmt.Fprintf(&b, " %d=%s", i, formatWeight(w))
		}
	}
	return b.String()
}

// formatWeight keeps 6 significant digits: a weight off by a millionth
// cannot move a percentile by a second.
func formatWeight(w float64) string { return strconv.FormatFloat(w, 'g', 6, 64) }

// DecodeIdleHistogram reads what Encode wrote; "" is the zero histogram.
// Malformed text is refused with an error saying what is wrong, never
// read as a partial histogram: a half-read row would pre-warm or release
// a version on evidence it does not have.
func DecodeIdleHistogram(s string) (IdleHistogram, error) {
	var h IdleHistogram
	if strings.TrimSpace(s) == "" {
		return h, nil
	}
	fields := strings.Fields(s)
	if fields[0] != "v1" {
		return IdleHistogram{}, fmt.Errorf("idle histogram: unknown version %q, want v1", fields[0])
	}
	if len(fields) < 3 {
		return IdleHistogram{}, errors.New("idle histogram: want \"v1 t=<unix seconds> o=<weight>\" before the bins")
	}
	ts, ok := strings.CutPrefix(fields[1], "t=")
	secs, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || secs <= 0 {
		return IdleHistogram{}, fmt.Errorf("idle histogram: %q: want t=<unix seconds above 0>", fields[1])
	}
	h.updatedAt = time.Unix(secs, 0).UTC()
	ov, ok := strings.CutPrefix(fields[2], "o=")
	if !ok {
		return IdleHistogram{}, fmt.Errorf("idle histogram: %q: want o=<overflow weight>", fields[2])
	}
	if h.overflow, err = parseWeight(ov); err != nil {
		return IdleHistogram{}, fmt.Errorf("idle histogram: overflow %w", err)
	}
	rest := fields[3:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], "b=") {
		secs, err := strconv.ParseFloat(strings.TrimPrefix(rest[0], "b="), 64)
		if err != nil || !finite(secs) || secs < 0.001 || secs > 86400 {
			return IdleHistogram{}, fmt.Errorf("idle histogram: %q: want b=<bin width in seconds, 0.001 to 86400>", rest[0])
		}
		h = IdleHistogram{updatedAt: h.updatedAt, overflow: h.overflow, bin: time.Duration(secs * float64(time.Second))}
		if h.bin == IdleBinWidth {
			h.bin = 0
		}
		rest = rest[1:]
	}
	last := -1
	for _, f := range rest {
		k, v, ok := strings.Cut(f, "=")
		bin, err := strconv.Atoi(k)
		if !ok || err != nil || bin < 0 || bin >= IdleBins {
			return IdleHistogram{}, fmt.Errorf("idle histogram: %q: want <bin 0..%d>=<weight>", f, IdleBins-1)
		}
		if bin <= last {
			return IdleHistogram{}, fmt.Errorf("idle histogram: bin %d after bin %d: bins must be in increasing order, each once", bin, last)
		}
		last = bin
		if h.bins[bin], err = parseWeight(v); err != nil {
			return IdleHistogram{}, fmt.Errorf("idle histogram: bin %d %w", bin, err)
		}
	}
	return h, nil
}

func parseWeight(s string) (float64, error) {
	w, err := strconv.ParseFloat(s, 64)
	if err != nil || !finite(w) || w < 0 {
		return 0, fmt.Errorf("weight %q: want a finite number >= 0", s)
	}
	return w, nil
}

// ColdStartHalfLife is how many cold starts it takes for an old one's
// weight to halve: provisioning time varies with the GPU pool, so the
// last few matter most.
const ColdStartHalfLife = 4.0

var coldStartDecay = math.Pow(0.5, 1/ColdStartHalfLife)

// ColdStart is a version's learned cold-start time: from a write above
// zero while at zero to the first worker reporting, a decayed average
// kept by the caller in the version's scaling state like Cost.
type ColdStart struct {
	// Seconds is the estimate.
	Seconds float64
	// Weight is the decayed number of cold starts behind it.
	Weight float64
	// UpdatedAt is when the last cold start folded in ended.
	UpdatedAt time.Time
}

// Known reports whether at least one cold start was measured. One is
// enough: unlike a request's cost it is measured directly, not as a ratio
// of two noisy rates.
func (c ColdStart) Known() bool {
	return finite(c.Seconds) && c.Seconds > 0 && finite(c.Weight) && c.Weight >= 1-floatSlack
}

// Duration is the estimate as a duration (0 when unknown).
func (c ColdStart) Duration() time.Duration {
	if !c.Known() {
		return 0
	}
	return time.Duration(c.Seconds * float64(time.Second))
}

// Learn folds one cold start of length d that ended at `at`. One that is
// not positive, or not after the last one folded in (a replay), is left
// out; a corrupt state (NaN, negative) is dropped rather than let it
// poison every later estimate.
func (c ColdStart) Learn(at time.Time, d time.Duration) ColdStart {
	if d <= 0 || at.IsZero() || (!c.UpdatedAt.IsZero() && !at.After(c.UpdatedAt)) {
		return c
	}
	oldWeight, oldSum := 0.0, 0.0
	if finite(c.Weight) && c.Weight > 0 && finite(c.Seconds) && c.Seconds > 0 {
		oldWeight = c.Weight * coldStartDecay
		oldSum = oldWeight * c.Seconds
	}
	weight := oldWeight + 1
	return ColdStart{Seconds: (oldSum + d.Seconds()) / weight, Weight: weight, UpdatedAt: at}
}

// learnedMinQuietBins is the shortest quiet time, in bins, after which
// learned keep-alive may release a version early: invocations are seen at
// the TSDB's step (the bin), so one quiet step may be a window edge inside
// a burst, two are not.
const learnedMinQuietBins = 2

// minQuiet is learnedMinQuietBins of the histogram's bins: 2 minutes in
// production.
func (pl keepAlivePlan) minQuiet() time.Duration { return learnedMinQuietBins * pl.idle.h.Bin() }

// keepAlivePlan is learned keep-alive applied to one version's histogram
// and cold start: when to pre-warm, when to release, when to give up.
type keepAlivePlan struct {
	idle *idleCDF
	// prewarmQ is PrewarmPercentile as a fraction.
	prewarmQ float64
	// keepUntil is the gap past which the version goes to zero.
	keepUntil time.Duration
	// coldStart is the learned cold start; 0 (unknown) means no pre-warm
	// and no early release: the plan only keeps the version up to
	// keepUntil.
	coldStart time.Duration
}

// prewarmAt is when a version whose current gap has lasted `since` should
// start coming up: a cold start before PrewarmPercentile of the gaps that
// lasted that long, less IdleMargin. ok is false without a cold start or
// when no gap in range lasted that long.
func (pl keepAlivePlan) prewarmAt(since time.Duration) (time.Duration, bool) {
	if pl.coldStart <= 0 {
		return 0, false
	}
	head, ok := pl.idle.percentileAfter(pl.prewarmQ, since)
	if !ok {
		return 0, false
	}
	return scale(head, 1-IdleMargin) - pl.coldStart, true
}

// releases reports whether a running, quiet version goes to zero at
// `since`: past keepUntil, or early when the pre-warm is far enough ahead.
// Releasing pays only when the version stays down longer than its cold
// start: the pre-warmed instance provisions that long without work, so a
// shorter release costs more GPU time than it saves.
func (pl keepAlivePlan) releases(since time.Duration) bool {
	if since >= pl.keepUntil {
		return true
	}
	at, ok := pl.prewarmAt(since)
	return ok && since >= pl.minQuiet() && at-since >= max(pl.coldStart, pl.idle.h.Bin())
}

// prewarms reports whether a version at zero comes up at `since`.
func (pl keepAlivePlan) prewarms(since time.Duration) bool {
	at, ok := pl.prewarmAt(since)
	return ok && since >= at && since < pl.keepUntil
}

// replayCost is what a keep-alive rule costs per gap, on average over a
// histogram's gaps: instance-minutes up without work, and cold starts.
type replayCost struct{ idle, cold float64 }

// replay runs the plan and the fixed timeout over the histogram's own gaps
// at the scale function's cycle, one bin: each gap starts with the
// version up after its burst; a pre-warm is ready a cold start after it
// is written, and a gap ending before that is a cold start. Overflow gaps
// count as longer than either rule keeps a version up.
func (pl keepAlivePlan) replay(fixed time.Duration) (learned, fixedCost replayCost) {
	h := pl.idle.h
	bin := h.Bin()
	csSteps := int(math.Ceil(float64(pl.coldStart) / float64(bin)))
	fixedBins := float64(fixed) / float64(bin)
	total := h.Gaps()
	up, readyFrom := true, 0 // the burst's instance is ready
	var upMinutes float64    // in bins: minutes in production
	for s, n := range h.bins {
		since := time.Duration(s) * bin
		if up && pl.releases(since) {
			up = false
		} else if !up && pl.prewarms(since) {
			up, readyFrom = true, s+csSteps
		}
		// Gaps ending in this minute, on average half way through it.
		w := n / total
		if up {
			learned.idle += w * (upMinutes + 0.5)
			upMinutes++
		} else {
			learned.idle += w * upMinutes
		}
		if !up || s < readyFrom {
			learned.cold += w
		}
		if since < fixed {
			fixedCost.idle += w * (float64(s) + 0.5)
		} else {
			fixedCost.idle += w * fixedBins
			fixedCost.cold += w
		}
	}
	if up {
		// Past the range nothing is predicted: a version still up stays
		// up to keepUntil, in whole cycles.
		upMinutes += max(0, math.Ceil(float64(pl.keepUntil)/float64(bin))-IdleBins)
	}
	over := h.Overflow() / total
	learned.idle += over * upMinutes
	learned.cold += over
	fixedCost.idle += over * fixedBins
	fixedCost.cold += over
	// Counted in bins above; reported in instance-minutes.
	learned.idle *= bin.Minutes()
	fixedCost.idle *= bin.Minutes()
	return learned, fixedCost
}

// plan builds the learned plan from the version's histogram and cold
// start; ok false (why says why) when the fixed timeout applies instead:
// the histogram is not representative, its KeepAlivePercentile lies beyond
// the range, or, replayed over the version's own gaps, the plan would keep
// more idle instance-minutes or pay more cold starts than the fixed
// timeout. That last test is what "the pattern is clear" means here; it
// stands in for the paper's coefficient of variation of the bin counts,
// which a decayed histogram of a dozen gaps makes high whatever their
// spread.
func (p Policy) plan(in Input) (keepAlivePlan, string, bool) {
	h := in.Idle
	counts := fmt.Sprintf("%.1f gaps, %.1f beyond %s", h.Gaps(), h.Overflow(), h.Range())
	if !h.Representative() {
		return keepAlivePlan{}, "idle histogram not representative: " + counts, false
	}
	tail, ok := h.Percentile(p.KeepAlivePercentile / 100)
	if !ok {
		return keepAlivePlan{}, fmt.Sprintf("p%g of the idle gaps is beyond %s: %s", p.KeepAlivePercentile, h.Range(), counts), false
	}
	pl := keepAlivePlan{idle: h.cumulative(), prewarmQ: p.PrewarmPercentile / 100, keepUntil: scale(tail, 1+IdleMargin), coldStart: in.ColdStart.Duration()}
	cs := "cold start unknown: no pre-warm"
	if pl.coldStart > 0 {
		cs = "cold start " + round(pl.coldStart).String()
	}
	learned, fixed := pl.replay(p.IdleTimeout)
	why := fmt.Sprintf("p%g=%s of %s, %s; per gap learned %.1f idle min %.2f cold, fixed %.1f idle min %.2f cold",
		p.KeepAlivePercentile, round(tail), counts, cs, learned.idle, learned.cold, fixed.idle, fixed.cold)
	if learned.cold > fixed.cold+floatSlack || learned.idle > fixed.idle+floatSlack {
		return keepAlivePlan{}, "learned keep-alive no better on its own gaps: " + why, false
	}
	return pl, "keep alive to " + round(pl.keepUntil).String() + ", " + why, true
}

// learnedPlan is the learned keep-alive plan for the version, ok false
// when the fixed timeout applies instead (why says why, "" when learned
// keep-alive is off): scale to zero is off, no invocation was seen (its
// absence is not a gap that can be read against the histogram, so the
// fixed rule and its evidence span decide), or plan refused.
func (p Policy) learnedPlan(in Input) (keepAlivePlan, string, bool) {
	if !p.ScaleToZero || p.KeepAlive != KeepAliveLearned {
		return keepAlivePlan{}, "", false
	}
	if in.LastInvokedAt.IsZero() || in.Now.Before(in.LastInvokedAt) {
		return keepAlivePlan{}, "learned keep-alive needs a last invocation: fixed timeout", false
	}
	return p.plan(in)
}

// learnedRelease decides whether a running, quiet version goes to zero now.
func (pl keepAlivePlan) learnedRelease(since time.Duration, why string) (bool, string) {
	switch {
	case since >= pl.keepUntil:
		return true, fmt.Sprintf("last invoked %s ago, past learned keep-alive (%s)", round(since), why)
	case pl.releases(since):
		at, _ := pl.prewarmAt(since)
		return true, fmt.Sprintf("last invoked %s ago, released until the pre-warm at %s (%s)", round(since), round(at), why)
	}
	return false, ""
}

// learnedAtZero decides for a version at zero under a learned plan. An
// invocation the version was down for brings it up at once, as in fixed
// mode; otherwise it comes up only when the plan's pre-warm is due.
func (p Policy) learnedAtZero(in Input, pl keepAlivePlan, why string) Decision {
	since := in.Now.Sub(in.LastInvokedAt)
	fromZero := func(how string) Decision {
		return Decision{Desired: max(1, p.MinInstances), Valid: true, Reason: ReasonScaleFromZero, Recommendation: 1,
			Detail: "at zero and " + how}
	}
	if !in.ReleasedAt.IsZero() && in.LastInvokedAt.After(in.ReleasedAt) {
		return fromZero(fmt.Sprintf("invoked %s ago, after going to zero", round(since)))
	}
	if since < pl.minQuiet() {
		return fromZero(fmt.Sprintf("invoked %s ago", round(since)))
	}
	if pl.prewarms(since) {
		at, _ := pl.prewarmAt(since)
		return Decision{Desired: max(1, p.MinInstances), Valid: true, Reason: ReasonPrewarm, Recommendation: 1,
			Detail: fmt.Sprintf("at zero, last invoked %s ago: pre-warm due at %s (%s)", round(since), round(at), why)}
	}
	d := Decision{Desired: 0, Valid: true, Reason: ReasonHoldAtZero,
		Detail: fmt.Sprintf("at zero, last invoked %s ago: learned keep-alive waits (%s)", round(since), why)}
	if p.MinInstances > 0 {
		d.Desired, d.Reason = p.MinInstances, ReasonClampedMin
		d.Detail += fmt.Sprintf("; raised to min %d", p.MinInstances)
	}
	return d
}

func scale(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
