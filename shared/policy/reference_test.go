package policy

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The reference's stickiness, case by case from its documentation
// (../shared/reference/nvcf-autoscaler.md, "Stickiness"): window = size in
// whole minutes, required = threshold in whole minutes (both rounded
// down), a rule with either at 0 is off, at least required of the last
// window samples must breach and that count replaces the latest-sample
// rule, required == window is valid, up is tested first and wins.
func TestNVCFStickinessIsTheReferences(t *testing.T) {
	m := time.Minute
	rule := func(size, threshold time.Duration) Stickiness { return Stickiness{Size: size, Threshold: threshold} }
	up := func(s Stickiness) Policy { return nvcf(func(p *Policy) { p.UpStickiness = s }) }
	down := func(s Stickiness) Policy { return nvcf(func(p *Policy) { p.DownStickiness = s }) }
	both := func(u, d Stickiness) Policy {
		return nvcf(func(p *Policy) { p.UpStickiness, p.DownStickiness = u, d })
	}
	nan := math.NaN()
	checkDecisions(t, []decideCase{
		// size 5 / threshold 3.
		{"3 of 5 with a dipped last sample scales up", up(rule(5*m, 3*m)), running(5, 80, 80, 80, 80, 50), 6, true, ReasonScaleUp, 6},
		{"3 of 5 apart scales up", up(rule(5*m, 3*m)), running(5, 80, 50, 80, 50, 80), 6, true, ReasonScaleUp, 6},
		{"2 of 5 holds although the latest breaches", up(rule(5*m, 3*m)), running(5, 50, 50, 80, 50, 80), 5, true, ReasonHoldNotSticky, 5},
		{"the window is the last 5 samples", up(rule(5*m, 3*m)), running(5, 80, 50, 50, 80, 50, 80), 5, true, ReasonHoldNotSticky, 5},
		{"fewer samples than the window count as they are", up(rule(5*m, 3*m)), running(5, 80, 80), 5, true, ReasonHoldNotSticky, 5},
		{"down 3 of 5 with a risen last sample scales down", down(rule(5*m, 3*m)), running(5, 20, 20, 20, 50, 50), 4, true, ReasonScaleDown, 4},
		{"down 3 of 5 with fewer samples", down(rule(5*m, 3*m)), running(5, 20, 20, 20, 40), 4, true, ReasonScaleDown, 4},
		{"down 2 of 5 holds", down(rule(5*m, 3*m)), running(5, 50, 50, 20, 50, 20), 5, true, ReasonHoldNotSticky, 5},
		{"no breach at all is in band", up(rule(5*m, 3*m)), running(5, 50, 50, 50, 50, 50), 5, true, ReasonHoldInBand, 5},

		// required == window: every sample must breach.
		{"5 of 5 scales up", up(rule(5*m, 5*m)), running(5, 80, 80, 80, 80, 80), 6, true, ReasonScaleUp, 6},
		{"4 of 5 holds", up(rule(5*m, 5*m)), running(5, 80, 80, 80, 80, 50), 5, true, ReasonHoldNotSticky, 5},
		{"down 3 of 3", down(rule(3*m, 3*m)), running(10, 50, 20, 20, 20), 8, true, ReasonScaleDown, 8},
		// required > window: accepted, never fires.
		{"6 of 5 never fires", up(rule(5*m, 6*m)), running(5, 80, 80, 80, 80, 80, 80), 5, true, ReasonHoldNotSticky, 5},

		// Whole minutes, rounded down.
		{"threshold 90s is 1 minute", up(rule(5*m, 90*time.Second)), running(5, 80, 50, 50, 50, 50), 6, true, ReasonScaleUp, 6},
		{"size 5m59s is 5 samples", up(rule(5*m+59*time.Second, m)), running(5, 80, 50, 50, 50, 50, 50), 5, true, ReasonHoldInBand, 5},
		{"size 6m is 6 samples", up(rule(6*m, m)), running(5, 80, 50, 50, 50, 50, 50), 6, true, ReasonScaleUp, 6},
		{"threshold 2m59s is 2", up(rule(5*m, 2*m+59*time.Second)), running(5, 50, 50, 50, 80, 80), 6, true, ReasonScaleUp, 6},

		// Either at 0 minutes: off, the latest sample decides.
		{"threshold under a minute is off", up(rule(5*m, 59*time.Second)), running(5, 80, 80, 80, 80, 50), 5, true, ReasonHoldInBand, 5},
		{"threshold under a minute, latest breaches", up(rule(5*m, 59*time.Second)), running(5, 50, 50, 50, 50, 80), 6, true, ReasonScaleUp, 6},
		{"size under a minute is off", up(rule(59*time.Second, 30*time.Second)), running(5, 50, 80), 6, true, ReasonScaleUp, 6},
		{"size 0 is off", down(rule(0, 3*m)), running(5, 20, 20, 20, 50), 5, true, ReasonHoldInBand, 5},
		{"size under a minute with a threshold is off", up(rule(59*time.Second, 3*m)), running(5, 50, 80), 6, true, ReasonScaleUp, 6},
		{"no down breach at all is in band", down(rule(5*m, 3*m)), running(5, 50, 50, 50, 50, 50), 5, true, ReasonHoldInBand, 5},
		{"threshold 0 is off", down(rule(5*m, 0)), running(5, 50, 50, 20), 4, true, ReasonScaleDown, 4},

		// Up first, and it wins.
		{"up wins when both rules fire", both(rule(5*m, 2*m), rule(5*m, 2*m)), running(5, 80, 80, 20, 20, 50), 6, true, ReasonScaleUp, 6},
		{"up rule beats a breaching latest down", up(rule(5*m, 3*m)), running(5, 80, 80, 80, 50, 20), 6, true, ReasonScaleUp, 6},
		{"down fires when up does not", both(rule(5*m, 3*m), rule(5*m, 2*m)), running(5, 80, 80, 20, 20, 50), 4, true, ReasonScaleDown, 4},

		// Deliberate difference: an unknown point never breaches (the
		// reference reads it as 0, a down breach).
		{"unknown points are not down breaches", down(rule(5*m, 3*m)), running(5, nan, nan, 20, 50, 50), 5, true, ReasonHoldNotSticky, 5},
		{"unknown points are not up breaches", up(rule(5*m, 3*m)), running(5, nan, math.Inf(1), 80, 80, 50), 5, true, ReasonHoldNotSticky, 5},
	})
}

func TestNVCFStickinessDetail(t *testing.T) {
	p := nvcf(func(p *Policy) { p.UpStickiness = Stickiness{Size: 5 * time.Minute, Threshold: 3 * time.Minute} })
	d := Decide(p, running(5, 50, 50, 80, 50, 80))
	require.Contains(t, d.Detail, "up held: (2 of last 5 breach, 3 needed)")
	d = Decide(p, running(5, 80, 80, 80, 80, 50))
	require.Contains(t, d.Detail, "x1.2 (4 of last 5 breach, 3 needed)")
}

// The reference accepts every stickiness rule and rejects exactly: up
// threshold not above down, up factor not above 1, down factor outside
// (0, 1). Resolve keeps an NVCF configuration it would run and drops one
// it would reject.
func TestResolveNVCFConfigLikeTheReference(t *testing.T) {
	m := time.Minute
	valid := func(mut func(*DeploymentConfig)) *DeploymentConfig {
		c := &DeploymentConfig{
			ScaleUp:   ScalingDetails{Metric: "utilization", Factor: 1.5, Threshold: 80, Stickiness: Stickiness{Size: 5 * m, Threshold: 5 * m}},
			ScaleDown: ScalingDetails{Metric: "utilization", Factor: 0.5, Threshold: 20, Stickiness: Stickiness{Size: 10 * m, Threshold: 10 * m}},
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	accepted := []struct {
		name string
		cfg  *DeploymentConfig
	}{
		{"threshold == size", valid(nil)},
		{"threshold above size", valid(func(c *DeploymentConfig) { c.ScaleUp.Stickiness.Threshold = 7 * m })},
		{"partial minutes", valid(func(c *DeploymentConfig) {
			c.ScaleUp.Stickiness = Stickiness{Size: 150 * time.Second, Threshold: 90 * time.Second}
		})},
		{"size over an hour", valid(func(c *DeploymentConfig) { c.ScaleDown.Stickiness.Size = 90 * m })},
		{"rule under a minute", valid(func(c *DeploymentConfig) {
			c.ScaleDown.Stickiness = Stickiness{Size: 30 * time.Second, Threshold: 30 * time.Second}
		})},
		{"thresholds one apart", valid(func(c *DeploymentConfig) { c.ScaleUp.Threshold, c.ScaleDown.Threshold = 51, 50 })},
	}
	for _, c := range accepted {
		t.Run("accepts "+c.name, func(t *testing.T) {
			p, note := Resolve(Defaults(), "f", "v", nil, nil, c.cfg)
			require.Empty(t, note)
			require.Equal(t, c.cfg.Apply(Defaults()), p)
			require.Equal(t, float64(c.cfg.ScaleUp.Threshold), p.UpThreshold)
			require.Equal(t, c.cfg.ScaleDown.Stickiness, p.DownStickiness)
		})
	}
	rejected := []struct {
		name, field string
		cfg         *DeploymentConfig
	}{
		{"up threshold equal to down", "upThreshold", valid(func(c *DeploymentConfig) { c.ScaleUp.Threshold = 20 })},
		{"up threshold below down", "upThreshold", valid(func(c *DeploymentConfig) { c.ScaleUp.Threshold = 10 })},
		{"up factor 1", "upFactor", valid(func(c *DeploymentConfig) { c.ScaleUp.Factor = 1 })},
		{"up factor below 1", "upFactor", valid(func(c *DeploymentConfig) { c.ScaleUp.Factor = 0.9 })},
		{"down factor 1", "downFactor", valid(func(c *DeploymentConfig) { c.ScaleDown.Factor = 1 })},
		{"down factor 0", "downFactor", valid(func(c *DeploymentConfig) { c.ScaleDown.Factor = 0 })},
		{"down factor negative", "downFactor", valid(func(c *DeploymentConfig) { c.ScaleDown.Factor = -0.5 })},
	}
	for _, c := range rejected {
		t.Run("rejects "+c.name, func(t *testing.T) {
			p, note := Resolve(Defaults(), "f", "v", nil, nil, c.cfg)
			require.Equal(t, Defaults(), p)
			require.Contains(t, note, "NVCF deployment config ignored")
			require.Contains(t, note, c.field+":")
		})
	}
}

// With a rule that fires on a dipped latest sample the resolved policy
// scales up end to end, as the reference does.
func TestResolvedStickyConfigScalesUpOnADip(t *testing.T) {
	cfg := &DeploymentConfig{
		ScaleUp:   ScalingDetails{Factor: 1.2, Threshold: 70, Stickiness: Stickiness{Size: 5 * time.Minute, Threshold: 3 * time.Minute}},
		ScaleDown: ScalingDetails{Factor: 0.8, Threshold: 30},
	}
	p, note := Resolve(Defaults(), "f", "v", nil, nil, cfg)
	require.Empty(t, note)
	d := Decide(p, running(5, 80, 80, 80, 80, 50))
	require.Equal(t, 6, d.Desired, d.Detail)
	require.Equal(t, ReasonScaleUp, d.Reason)
}
