// Package policy is the pure scaling decision: given what was measured about
// one function version and how it should be scaled, it returns the desired
// instance count, a reason and whether the decision may be acted on.
//
// It does no I/O and reads no clock; the caller passes the time in. That
// keeps every rule testable as a table and lets the handler stay a thin
// shell that gathers inputs, calls Decide and acts on the result. Like
// Knative KPA's ScaleValid, a decision built on inputs the policy cannot
// trust is returned with Valid false instead of a guess: the caller holds.
package policy

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Mode selects how the raw recommendation is computed.
type Mode string

const (
	// ModeNVCF reproduces the reference autoscaler's static policy:
	// multiplicative steps when the latest sample leaves the
	// [DownThreshold, UpThreshold] band.
	ModeNVCF Mode = "nvcf"
	// ModeTarget is target tracking (HPA, KEDA, OpenFaaS Pro): size the
	// version so that its utilization lands on TargetUtilization in one
	// step instead of climbing 20 % per cycle.
	ModeTarget Mode = "target"
)

// SaturatedUtilization is the utilization percent at or above which target
// mode treats the measurement as a lower bound: busy workers cannot report
// the work queued behind them, so proportional sizing would under-shoot.
const SaturatedUtilization = 95.0

// Stickiness asks that a threshold has been breached in enough of the
// recent samples, not only the latest, before a step is taken in that
// direction. It is the reference's rule, counted as the reference counts
// it: the window is the last Size/60 s samples and Required is
// Threshold/60 s breaching samples among them, both in whole minutes
// rounded down; a rule with either at 0 minutes is off (the step then
// needs the latest sample to breach, which is the same test over a window
// of one). Required above the window is accepted, as the reference
// accepts it: such a rule never fires.
type Stickiness struct {
	// Size is how far back to look: the last Size/60 s samples.
	Size time.Duration
	// Threshold is how much of Size must breach, in whole minutes (one
	// sample per minute).
	Threshold time.Duration
}

// Window is how many of the latest samples the rule looks at.
func (s Stickiness) Window() int { return int(s.Size / time.Minute) }

// Required is how many of them must breach.
func (s Stickiness) Required() int { return int(s.Threshold / time.Minute) }

// Enabled reports whether the rule applies: both counts at least one.
func (s Stickiness) Enabled() bool { return s.Window() > 0 && s.Required() > 0 }

// Policy is how one function version is scaled. Build it from Defaults and
// check it with Validate; Decide holds (Valid false) on an invalid policy.
type Policy struct {
	Mode Mode

	// MinInstances and MaxInstances bound every valid decision; Max 0 means
	// unbounded here (the NVCF API still clamps to the deployment spec).
	// Apart from scale to zero, decisions never go below 1 even with
	// MinInstances 0, because 0 is reserved for an idle function.
	MinInstances, MaxInstances int

	// UpThreshold and DownThreshold are utilization percents: above the
	// first the reference scales up, below the second it scales down. The
	// down threshold also gates scale to zero in both modes.
	UpThreshold, DownThreshold float64
	// UpFactor (> 1) and DownFactor (0..1) are the reference's
	// multiplicative steps.
	UpFactor, DownFactor float64
	// UpStickiness and DownStickiness are the reference's optional
	// per-direction persistence rules (NVCF mode only).
	UpStickiness, DownStickiness Stickiness

	// Decay weighs recent samples more in the average utilization used for
	// scale to zero: weight exp(-Decay*(n-1-i)); 0 is a plain mean.
	Decay float64

	// ScaleToZero enables the only path to 0 instances: no invocation for
	// IdleTimeout and average utilization below DownThreshold.
	ScaleToZero bool
	IdleTimeout time.Duration

	// KeepAlive chooses between the fixed IdleTimeout and learned
	// keep-alive (see KeepAliveLearned), which still falls back to
	// IdleTimeout for a version whose idle gaps show no clear pattern.
	KeepAlive KeepAliveMode
	// KeepAlivePercentile (percent) of a version's idle gaps, plus
	// IdleMargin, is how long learned keep-alive keeps it up.
	KeepAlivePercentile float64
	// PrewarmPercentile (percent) of the gaps that lasted as long as the
	// current one, less IdleMargin and the learned cold start, is when
	// learned keep-alive brings a released version back up.
	PrewarmPercentile float64

	// TargetUtilization is the busy percent per instance target mode aims
	// for; it must stay below SaturatedUtilization so that "at target" and
	// "saturated" can be told apart.
	TargetUtilization float64
	// Tolerance skips target-mode changes while |utilization/target - 1|
	// is within it, so noise around the target does not flap.
	Tolerance float64

	// ScaleDownStabilization keeps a downward decision at the highest
	// recommendation made inside this window (0 = off); upward decisions
	// apply at once. Scale up fast, scale down slowly.
	ScaleDownStabilization time.Duration
	// ScaleDownFlapWindow (0 = off) widens the stabilization window to
	// itself while the version's recommendations inside it show a flap: a
	// fall of at least a quarter and two instances from their peak that
	// lasted at least ScaleDownStabilization (so the plain window let the
	// count down), then a return to the peak; a fall to zero is
	// keep-alive's, not a flap. A load that keeps flipping with a period
	// under this window is then held at its high phase instead of being
	// scaled down for each low phase and caught short, a provisioning
	// delay late, at each rise; a single fall, a short dip or noise keeps
	// the plain window, and the wide one lapses a window after the last
	// flap's fall, when the peak before it leaves the window (so the
	// window must cover a period of the load plus a low phase).
	ScaleDownFlapWindow time.Duration
	// MaxScaleUpRate bounds one upward decision to ceil(current*rate);
	// MaxScaleDownRate bounds one downward decision to floor(current/rate)
	// (never below 1). Both must be > 1 when set, which guarantees a step
	// of at least one instance; 0 means unlimited.
	MaxScaleUpRate, MaxScaleDownRate float64
}

// Defaults is the reference autoscaler's static policy: 70/30 thresholds,
// x1.2 / x0.8 steps, no stickiness, plain mean, scale to zero after 30
// minutes idle, and none of the reference's missing guards (stabilization
// and rate bounds are off so that NVCF mode replays the reference). The
// target-mode fields hold usable values so that switching Mode is enough.
func Defaults() Policy {
	return Policy{
		Mode:          ModeNVCF,
		UpThreshold:   70,
		DownThreshold: 30,
		UpFactor:      1.2,
		DownFactor:    0.8,
		ScaleToZero:   true,
		IdleTimeout:   1800 * time.Second,
		// Fixed keep-alive replays the reference; learned is opt-in.
		KeepAlive:           KeepAliveFixed,
		KeepAlivePercentile: 99,
		PrewarmPercentile:   5,
		TargetUtilization:   60,
		Tolerance:           0.1,
	}
}

// FieldError is one invalid policy field. Field is the JSON name used in
// override documents (e.g. "upThreshold"), so callers can map it to their
// own setting names.
type FieldError struct {
	Field string
	Msg   string
}

// Error reads "field: problem".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate reports every invalid field at once, joined; each error is a
// *FieldError naming the field.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

	if p.Mode != ModeNVCF && p.Mode != ModeTarget {
		bad("mode", "must be %q or %q, got %q", ModeNVCF, ModeTarget, p.Mode)
	}
	if p.MinInstances < 0 {
		bad("minInstances", "must be >= 0, got %d", p.MinInstances)
	}
	if p.MaxInstances < 0 {
		bad("maxInstances", "must be >= 0 (0 = unbounded), got %d", p.MaxInstances)
	} else if p.MaxInstances > 0 && p.MinInstances > p.MaxInstances {
		bad("maxInstances", "must be >= minInstances (%d), got %d", p.MinInstances, p.MaxInstances)
	}

	thresholdsOK := true
	for _, t := range []struct {
		field string
		v     float64
	}{{"upThreshold", p.UpThreshold}, {"downThreshold", p.DownThreshold}} {
		if !finite(t.v) || t.v < 0 || t.v > 100 {
			bad(t.field, "must be a percent in [0, 100], got %v", t.v)
			thresholdsOK = false
		}
	}
	if thresholdsOK && p.UpThreshold <= p.DownThreshold {
		bad("upThreshold", "must be > downThreshold (%v), got %v", p.DownThreshold, p.UpThreshold)
	}
	if !finite(p.UpFactor) || p.UpFactor <= 1 {
		bad("upFactor", "must be > 1, got %v", p.UpFactor)
	}
	if !finite(p.DownFactor) || p.DownFactor <= 0 || p.DownFactor >= 1 {
		bad("downFactor", "must be in (0, 1), got %v", p.DownFactor)
	}
	for _, s := range []struct {
		field string
		v     Stickiness
	}{{"upStickiness", p.UpStickiness}, {"downStickiness", p.DownStickiness}} {
		if msg := s.v.problem(); msg != "" {
			bad(s.field, "%s", msg)
		}
	}
	if !finite(p.Decay) || p.Decay < 0 {
		bad("decay", "must be >= 0, got %v", p.Decay)
	}
	if p.IdleTimeout < 0 || (p.ScaleToZero && p.IdleTimeout == 0) {
		bad("idleTimeout", "must be > 0 when scaleToZero is on (and never negative), got %s", p.IdleTimeout)
	}
	if p.KeepAlive != KeepAliveFixed && p.KeepAlive != KeepAliveLearned {
		bad("keepAlive", "must be %q or %q, got %q", KeepAliveFixed, KeepAliveLearned, p.KeepAlive)
	}
	percentilesOK := true
	for _, q := range []struct {
		field string
		v     float64
	}{{"keepAlivePercentile", p.KeepAlivePercentile}, {"prewarmPercentile", p.PrewarmPercentile}} {
		if !finite(q.v) || q.v <= 0 || q.v >= 100 {
			bad(q.field, "must be a percent in (0, 100), got %v", q.v)
			percentilesOK = false
		}
	}
	if percentilesOK && p.PrewarmPercentile >= p.KeepAlivePercentile {
		bad("prewarmPercentile", "must be < keepAlivePercentile (%v), got %v", p.KeepAlivePercentile, p.PrewarmPercentile)
	}
	if !finite(p.TargetUtilization) || p.TargetUtilization <= 0 || p.TargetUtilization >= SaturatedUtilization {
		bad("targetUtilization", "must be a percent in (0, %v), got %v", SaturatedUtilization, p.TargetUtilization)
	}
	if !finite(p.Tolerance) || p.Tolerance < 0 || p.Tolerance >= 1 {
		bad("tolerance", "must be in [0, 1), got %v", p.Tolerance)
	}
	if p.ScaleDownStabilization < 0 {
		bad("scaleDownStabilization", "must be >= 0, got %s", p.ScaleDownStabilization)
	}
	if p.ScaleDownFlapWindow < 0 {
		bad("scaleDownFlapWindow", "must be >= 0, got %s", p.ScaleDownFlapWindow)
	}
	for _, r := range []struct {
		field string
		v     float64
	}{{"maxScaleUpRate", p.MaxScaleUpRate}, {"maxScaleDownRate", p.MaxScaleDownRate}} {
		if !finite(r.v) || r.v < 0 || (r.v > 0 && r.v <= 1) {
			bad(r.field, "must be 0 (unlimited) or > 1, got %v", r.v)
		}
	}
	return errors.Join(errs...)
}

// problem explains what is wrong with a stickiness rule, or "". Only a
// negative duration is: the reference validates no stickiness field, so
// every rule it would run is accepted here too (a rule that rounds to 0
// minutes is off, a threshold above the size never fires); a negative
// duration cannot be counted in minutes at all, and no rule means it.
func (s Stickiness) problem() string {
	if s.Size < 0 || s.Threshold < 0 {
		return fmt.Sprintf("size and threshold must be >= 0, got size %s, threshold %s", s.Size, s.Threshold)
	}
	return ""
}
