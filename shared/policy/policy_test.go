package policy

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultsAreTheReference(t *testing.T) {
	p := Defaults()
	require.NoError(t, p.Validate())
	require.Equal(t, ModeNVCF, p.Mode)
	require.Equal(t, 70.0, p.UpThreshold)
	require.Equal(t, 30.0, p.DownThreshold)
	require.Equal(t, 1.2, p.UpFactor)
	require.Equal(t, 0.8, p.DownFactor)
	require.Equal(t, 1800*time.Second, p.IdleTimeout)
	require.True(t, p.ScaleToZero)
	require.Zero(t, p.Decay)
	require.False(t, p.UpStickiness.Enabled())
	require.Zero(t, p.ScaleDownStabilization)
	require.Zero(t, p.ScaleDownFlapWindow)
	require.Zero(t, p.MaxScaleUpRate)
	require.Zero(t, p.MaxScaleDownRate)
	p.Mode = ModeTarget
	require.NoError(t, p.Validate(), "switching mode alone must give a valid policy")
}

func TestValidate(t *testing.T) {
	m := time.Minute
	cases := []struct {
		name  string
		mut   func(*Policy)
		field string // "" = valid
	}{
		{"defaults", func(*Policy) {}, ""},
		{"bounded", func(p *Policy) { p.MinInstances, p.MaxInstances = 2, 2 }, ""},
		{"min without max", func(p *Policy) { p.MinInstances = 50 }, ""},
		{"sticky", func(p *Policy) { p.UpStickiness = Stickiness{Size: 59 * m, Threshold: 58 * m} }, ""},
		{"rates", func(p *Policy) { p.MaxScaleUpRate, p.MaxScaleDownRate = 1000, 2 }, ""},
		{"thresholds at the ends", func(p *Policy) { p.UpThreshold, p.DownThreshold = 100, 0 }, ""},
		{"idle zero when off", func(p *Policy) { p.ScaleToZero, p.IdleTimeout = false, 0 }, ""},
		{"empty mode", func(p *Policy) { p.Mode = "" }, "mode"},
		{"unknown mode", func(p *Policy) { p.Mode = "static" }, "mode"},
		{"negative min", func(p *Policy) { p.MinInstances = -1 }, "minInstances"},
		{"negative max", func(p *Policy) { p.MaxInstances = -1 }, "maxInstances"},
		{"min above max", func(p *Policy) { p.MinInstances, p.MaxInstances = 3, 2 }, "maxInstances"},
		{"up equals down", func(p *Policy) { p.UpThreshold, p.DownThreshold = 50, 50 }, "upThreshold"},
		{"up below down", func(p *Policy) { p.UpThreshold, p.DownThreshold = 30, 70 }, "upThreshold"},
		{"up above 100", func(p *Policy) { p.UpThreshold = 101 }, "upThreshold"},
		{"down NaN", func(p *Policy) { p.DownThreshold = math.NaN() }, "downThreshold"},
		{"down negative", func(p *Policy) { p.DownThreshold = -1 }, "downThreshold"},
		{"up factor one", func(p *Policy) { p.UpFactor = 1 }, "upFactor"},
		{"down factor one", func(p *Policy) { p.DownFactor = 1 }, "downFactor"},
		{"down factor zero", func(p *Policy) { p.DownFactor = 0 }, "downFactor"},
		// The reference validates no stickiness field: every rule it runs
		// is accepted, only negative durations are not.
		{"sticky size an hour", func(p *Policy) { p.UpStickiness = Stickiness{Size: time.Hour, Threshold: m} }, ""},
		{"sticky size two hours", func(p *Policy) { p.UpStickiness = Stickiness{Size: 2 * time.Hour, Threshold: m} }, ""},
		{"sticky threshold equals size", func(p *Policy) { p.DownStickiness = Stickiness{Size: 5 * m, Threshold: 5 * m} }, ""},
		{"sticky threshold above size", func(p *Policy) { p.DownStickiness = Stickiness{Size: 5 * m, Threshold: 6 * m} }, ""},
		{"sticky without threshold", func(p *Policy) { p.DownStickiness = Stickiness{Size: 5 * m} }, ""},
		{"sticky without size", func(p *Policy) { p.UpStickiness = Stickiness{Threshold: 2 * m} }, ""},
		{"sticky under a minute", func(p *Policy) { p.UpStickiness = Stickiness{Size: 59 * time.Second, Threshold: time.Second} }, ""},
		{"sticky negative size", func(p *Policy) { p.UpStickiness = Stickiness{Size: -m, Threshold: m} }, "upStickiness"},
		{"sticky negative threshold", func(p *Policy) { p.DownStickiness = Stickiness{Size: 5 * m, Threshold: -time.Nanosecond} }, "downStickiness"},
		{"negative decay", func(p *Policy) { p.Decay = -1 }, "decay"},
		{"idle zero when on", func(p *Policy) { p.IdleTimeout = 0 }, "idleTimeout"},
		{"target at saturation", func(p *Policy) { p.TargetUtilization = SaturatedUtilization }, "targetUtilization"},
		{"target zero", func(p *Policy) { p.TargetUtilization = 0 }, "targetUtilization"},
		{"tolerance one", func(p *Policy) { p.Tolerance = 1 }, "tolerance"},
		{"negative stabilization", func(p *Policy) { p.ScaleDownStabilization = -time.Second }, "scaleDownStabilization"},
		{"negative flap window", func(p *Policy) { p.ScaleDownFlapWindow = -time.Second }, "scaleDownFlapWindow"},
		{"up rate one", func(p *Policy) { p.MaxScaleUpRate = 1 }, "maxScaleUpRate"},
		{"down rate half", func(p *Policy) { p.MaxScaleDownRate = 0.5 }, "maxScaleDownRate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Defaults()
			c.mut(&p)
			err := p.Validate()
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, []string{c.field}, fieldsOf(err), "exactly the broken field: %v", err)
			require.Contains(t, err.Error(), c.field+":")
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	p := Defaults()
	p.Mode, p.UpFactor, p.Tolerance = "x", 0, -1
	require.ElementsMatch(t, []string{"mode", "upFactor", "tolerance"}, fieldsOf(p.Validate()))
}
