package policy

import (
	"errors"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const propertyCases = 20000

func randPolicy(r *rand.Rand) Policy {
	p := Defaults()
	if r.Intn(2) == 0 {
		p.Mode = ModeTarget
	}
	p.MinInstances = r.Intn(4)
	if r.Intn(3) > 0 {
		p.MaxInstances = max(p.MinInstances, 1) + r.Intn(30)
	}
	p.DownThreshold = r.Float64() * 60
	p.UpThreshold = p.DownThreshold + 1 + r.Float64()*(99-p.DownThreshold)
	p.UpFactor = 1.01 + r.Float64()*2
	p.DownFactor = 0.05 + r.Float64()*0.9
	randSticky := func() Stickiness {
		if r.Intn(2) == 0 {
			return Stickiness{}
		}
		size := time.Duration(2+r.Intn(57)) * time.Minute
		return Stickiness{Size: size, Threshold: time.Duration(1 + r.Int63n(int64(size-time.Second)))}
	}
	p.UpStickiness, p.DownStickiness = randSticky(), randSticky()
	p.Decay = r.Float64() * 2 * float64(r.Intn(2))
	p.ScaleToZero = r.Intn(2) == 0
	p.IdleTimeout = time.Duration(1+r.Intn(60)) * time.Minute
	p.TargetUtilization = 1 + r.Float64()*93
	p.Tolerance = r.Float64() * 0.5
	if r.Intn(2) == 0 {
		p.ScaleDownStabilization = time.Duration(1+r.Intn(10)) * time.Minute
	}
	if r.Intn(2) == 0 {
		p.MaxScaleUpRate = 1.01 + r.Float64()*10
	}
	if r.Intn(2) == 0 {
		p.MaxScaleDownRate = 1.01 + r.Float64()*4
	}
	if r.Intn(2) == 0 {
		p.KeepAlive = KeepAliveLearned
		p.PrewarmPercentile = 1 + r.Float64()*40
		p.KeepAlivePercentile = p.PrewarmPercentile + 1 + r.Float64()*(98-p.PrewarmPercentile)
	}
	return p
}

// randIdle is a periodic, jittered or scattered idle history, sometimes
// with a cold start learned.
func randIdle(r *rand.Rand, in *Input) {
	if r.Intn(4) == 0 {
		return
	}
	period := time.Duration(1+r.Intn(300)) * time.Minute
	jitter := time.Duration(r.Intn(20)) * time.Minute
	for i := range 5 + r.Intn(30) {
		gap := period + time.Duration(r.Int63n(int64(jitter)+1))
		if r.Intn(5) == 0 {
			gap = time.Duration(r.Intn(300)) * time.Minute
		}
		in.Idle = in.Idle.Observe(t0.Add(time.Duration(i-100)*time.Minute), gap)
	}
	if r.Intn(3) > 0 {
		in.ColdStart = in.ColdStart.Learn(t0.Add(-time.Hour), time.Duration(1+r.Intn(600))*time.Second)
	}
	if r.Intn(3) == 0 && !in.LastInvokedAt.IsZero() {
		in.ReleasedAt = in.LastInvokedAt.Add(time.Duration(r.Intn(600)-300) * time.Second)
	}
}

func randValue(r *rand.Rand) float64 {
	switch r.Intn(20) {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case 2:
		return math.Inf(-1)
	case 3:
		return 100 + r.Float64()*50
	case 4:
		return 0
	}
	return r.Float64() * 100
}

func randInput(r *rand.Rand) Input {
	in := Input{
		Now:                t0,
		Current:            r.Intn(40),
		CurrentKnown:       r.Intn(10) > 0,
		LastRequested:      r.Intn(40),
		LastRequestedKnown: r.Intn(4) > 0,
		MetricsOK:          r.Intn(10) > 0,
	}
	if r.Intn(4) == 0 {
		in.Current = 0
	}
	n := r.Intn(40)
	if r.Intn(5) == 0 {
		n = 0
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = randValue(r)
	}
	in.Utilization = series(vals...)
	switch r.Intn(3) {
	case 0:
		in.LastInvokedAt = t0.Add(-time.Duration(r.Intn(7200)) * time.Second)
	case 1:
		in.InvocationsSince = t0.Add(-time.Duration(r.Intn(7200)) * time.Second)
	}
	for range r.Intn(6) {
		in.Recent = append(in.Recent, Recommendation{At: t0.Add(-time.Duration(r.Intn(900)) * time.Second), Count: r.Intn(50)})
	}
	randIdle(r, &in)
	return in
}

// idleRule reports a decision made by the idle-to-zero rule (possibly
// clamped to min), the one rule exempt from stabilization and rate bounds;
// every other rule recommends at least one instance for a running version.
func idleRule(d Decision, in Input) bool { return in.Current <= 0 || d.Recommendation == 0 }

func metricsUnknown(in Input) bool {
	n := len(in.Utilization)
	return !in.MetricsOK || n == 0 || !finite(in.Utilization[n-1].Value)
}

func TestPropertyDecisionsStayInBounds(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	zeroes := 0
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		require.NoError(t, p.Validate(), "generator made an invalid policy")
		d := Decide(p, in)
		if !d.Valid {
			continue
		}
		if d.Desired == 0 {
			zeroes++
			require.True(t, p.ScaleToZero, "case %d: zero without scale to zero: %+v", i, d)
			require.Zero(t, p.MinInstances, "case %d: zero below min: %+v", i, d)
			require.Contains(t, []Reason{ReasonScaleToZero, ReasonScaleToZeroLearned, ReasonHoldAtZero}, d.Reason, "case %d", i)
			continue
		}
		require.GreaterOrEqual(t, d.Desired, max(p.MinInstances, 1), "case %d: %+v %+v", i, p, d)
		if p.MaxInstances > 0 {
			require.LessOrEqual(t, d.Desired, p.MaxInstances, "case %d: %+v %+v", i, p, d)
		}
	}
	require.Positive(t, zeroes, "the generator never reached scale to zero")
}

func TestPropertyUnknownMetricsNeverScaleDown(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	checked := 0
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		if r.Intn(2) == 0 {
			// Force the unknown cases to be common.
			switch r.Intn(3) {
			case 0:
				in.MetricsOK = false
			case 1:
				in.Utilization = nil
			case 2:
				in.Utilization = append(in.Utilization, Sample{At: t0, Value: []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[r.Intn(3)]})
			}
		}
		if !metricsUnknown(in) || !in.CurrentKnown {
			continue
		}
		checked++
		d := Decide(p, in)
		require.GreaterOrEqual(t, d.Desired, in.Current, "case %d: down on unknown metrics: %+v", i, d)
		if in.Current > 0 {
			require.Positive(t, d.Desired, "case %d", i)
			require.False(t, d.Valid, "case %d: a running version with unknown metrics must hold: %+v", i, d)
		}
		if in.LastRequestedKnown {
			require.GreaterOrEqual(t, d.Desired, in.LastRequested, "case %d: %+v", i, d)
		}
	}
	require.Greater(t, checked, propertyCases/4)
}

func TestPropertyStabilizationHoldsTheWindowMax(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	checked := 0
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		if p.ScaleDownStabilization == 0 {
			p.ScaleDownStabilization = 5 * time.Minute
		}
		d := Decide(p, in)
		if !d.Valid || idleRule(d, in) || d.Desired >= in.Current {
			continue
		}
		hi := d.Recommendation
		for _, rc := range in.Recent {
			if rc.At.After(in.Now.Add(-p.ScaleDownStabilization)) {
				hi = max(hi, rc.Count)
			}
		}
		floor := min(hi, in.Current)
		if p.MaxInstances > 0 {
			floor = min(floor, p.MaxInstances)
		}
		checked++
		require.GreaterOrEqual(t, d.Desired, floor, "case %d: below the window max: %+v in %+v", i, d, in.Recent)
	}
	require.Positive(t, checked)
}

func TestPropertyRateBounds(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		d := Decide(p, in)
		if !d.Valid || idleRule(d, in) {
			continue
		}
		// Moves are measured from the larger of running and requested.
		base := in.Current
		if in.LastRequestedKnown && in.LastRequested > base {
			base = in.LastRequested
		}
		cur := float64(base)
		if p.MaxScaleUpRate > 0 && d.Desired > base {
			require.LessOrEqual(t, d.Desired, max(ceilCount(cur*p.MaxScaleUpRate), p.MinInstances), "case %d: %+v", i, d)
		}
		if p.MaxScaleDownRate > 0 && d.Desired < base {
			bound := max(floorCount(cur/p.MaxScaleDownRate), 1)
			if p.MaxInstances > 0 {
				bound = min(bound, p.MaxInstances)
			}
			require.GreaterOrEqual(t, d.Desired, bound, "case %d: %+v", i, d)
		}
	}
}

// corruptions each make one field invalid in a random way.
var corruptions = []struct {
	field string
	apply func(r *rand.Rand, p *Policy)
}{
	{"mode", func(r *rand.Rand, p *Policy) { p.Mode = []Mode{"", "NVCF", "hpa", "targets"}[r.Intn(4)] }},
	{"minInstances", func(r *rand.Rand, p *Policy) { p.MinInstances = -1 - r.Intn(5) }},
	{"maxInstances", func(r *rand.Rand, p *Policy) { p.MaxInstances = -1 - r.Intn(5) }},
	{"maxInstances", func(r *rand.Rand, p *Policy) {
		p.MinInstances = 2 + r.Intn(5)
		p.MaxInstances = 1 + r.Intn(p.MinInstances-1)
	}},
	{"upThreshold", func(r *rand.Rand, p *Policy) { p.UpThreshold = badPercent(r) }},
	{"upThreshold", func(r *rand.Rand, p *Policy) { p.UpThreshold = p.DownThreshold - r.Float64()*p.DownThreshold }},
	{"downThreshold", func(r *rand.Rand, p *Policy) { p.DownThreshold = badPercent(r) }},
	{"upFactor", func(r *rand.Rand, p *Policy) {
		p.UpFactor = []float64{1, 0.5, 0, -2, math.NaN(), math.Inf(1)}[r.Intn(6)]
	}},
	{"downFactor", func(r *rand.Rand, p *Policy) {
		p.DownFactor = []float64{0, 1, 1.5, -0.5, math.NaN(), math.Inf(-1)}[r.Intn(6)]
	}},
	{"upStickiness", func(r *rand.Rand, p *Policy) { p.UpStickiness = badSticky(r) }},
	{"downStickiness", func(r *rand.Rand, p *Policy) { p.DownStickiness = badSticky(r) }},
	{"decay", func(r *rand.Rand, p *Policy) { p.Decay = []float64{-0.1, math.NaN(), math.Inf(1)}[r.Intn(3)] }},
	{"idleTimeout", func(r *rand.Rand, p *Policy) { p.IdleTimeout = -time.Duration(1+r.Intn(100)) * time.Second }},
	{"idleTimeout", func(r *rand.Rand, p *Policy) { p.ScaleToZero, p.IdleTimeout = true, 0 }},
	{"targetUtilization", func(r *rand.Rand, p *Policy) {
		p.TargetUtilization = []float64{0, -5, 95, 100, 150, math.NaN()}[r.Intn(6)]
	}},
	{"tolerance", func(r *rand.Rand, p *Policy) { p.Tolerance = []float64{-0.1, 1, 2, math.NaN()}[r.Intn(4)] }},
	{"scaleDownStabilization", func(r *rand.Rand, p *Policy) { p.ScaleDownStabilization = -time.Duration(1+r.Intn(100)) * time.Second }},
	{"maxScaleUpRate", func(r *rand.Rand, p *Policy) { p.MaxScaleUpRate = badRate(r) }},
	{"maxScaleDownRate", func(r *rand.Rand, p *Policy) { p.MaxScaleDownRate = badRate(r) }},
}

func badPercent(r *rand.Rand) float64 {
	return []float64{-1 - r.Float64()*10, 100.5 + r.Float64()*100, math.NaN(), math.Inf(1)}[r.Intn(4)]
}

func badRate(r *rand.Rand) float64 {
	return []float64{-1, 0.01 + 0.99*r.Float64(), 1, math.NaN(), math.Inf(1)}[r.Intn(5)]
}

func badSticky(r *rand.Rand) Stickiness {
	m := time.Minute
	return []Stickiness{
		{Size: -m, Threshold: -2 * m},
		{Size: 5 * m, Threshold: -m},
		{Size: -time.Duration(1+r.Intn(100)) * time.Second, Threshold: m},
	}[r.Intn(3)]
}

func fieldsOf(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe.Field)
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
		}
	}
	walk(err)
	return out
}

func TestPropertyValidateRejectsEveryCorruption(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for i := range propertyCases {
		p := randPolicy(r)
		c := corruptions[r.Intn(len(corruptions))]
		c.apply(r, &p)
		err := p.Validate()
		require.Error(t, err, "case %d: %s not rejected: %+v", i, c.field, p)
		require.Contains(t, fieldsOf(err), c.field, "case %d: %v", i, err)
		var fe *FieldError
		require.True(t, errors.As(err, &fe))
		d := Decide(p, randInput(r))
		require.False(t, d.Valid, "case %d: decided with an invalid policy", i)
		require.Equal(t, ReasonInvalidPolicy, d.Reason)
	}
}

// A fresh sample only ever raises: with it a decision is never lower than
// without it, a hold becomes valid only to scale up, and NVCF mode does
// not look at it at all.
func TestPropertyFreshOnlyRaises(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	raised, unheld := 0, 0
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		if r.Intn(4) > 0 {
			p.Mode = ModeTarget
		}
		if r.Intn(3) == 0 {
			in.Demand = DemandFromConcurrency(r.Float64()*80, 1)
		}
		without := Decide(p, in)
		with := Decide(p, withFresh(in, randValue(r)))
		if p.Mode == ModeNVCF {
			require.Equal(t, without, with, "case %d: nvcf mode used the fresh sample", i)
			continue
		}
		if without.Valid {
			require.True(t, with.Valid, "case %d", i)
			require.GreaterOrEqual(t, with.Desired, without.Desired, "case %d: fresh lowered %+v to %+v", i, without, with)
			if with.Desired > without.Desired {
				raised++
			}
			continue
		}
		if with.Valid {
			unheld++
			require.Greater(t, with.Desired, max(in.Current, lastRequested(in)), "case %d: a hold became %+v", i, with)
			continue
		}
		require.Equal(t, without.Desired, with.Desired, "case %d", i)
	}
	require.Positive(t, raised, "the generator never raised a decision")
	require.Positive(t, unheld, "the generator never scaled up from a hold")
}

// Learned keep-alive releases only on the evidence the fixed timeout
// needs (known metrics, a quiet latest sample and average, a known last
// invocation), pre-warms only a version at zero, and never leaves down a
// version invoked after it went to zero.
func TestPropertyLearnedKeepAliveEvidence(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	released, prewarmed := 0, 0
	for i := range propertyCases {
		p, in := randPolicy(r), randInput(r)
		p.KeepAlive, p.ScaleToZero = KeepAliveLearned, true
		d := Decide(p, in)
		switch d.Reason {
		case ReasonScaleToZeroLearned:
			released++
			require.True(t, d.Valid)
			require.False(t, metricsUnknown(in), "case %d", i)
			require.Positive(t, in.Current, "case %d", i)
			require.False(t, in.LastInvokedAt.IsZero(), "case %d", i)
			require.Less(t, in.Utilization[len(in.Utilization)-1].Value, p.DownThreshold, "case %d", i)
			require.Less(t, weightedAverage(in.Utilization, p.Decay), p.DownThreshold, "case %d", i)
		case ReasonPrewarm:
			prewarmed++
			require.Zero(t, in.Current, "case %d", i)
			require.Equal(t, max(1, p.MinInstances), d.Desired, "case %d", i)
		}
		// Within the idle timeout: past it, fixed mode (the fallback) also
		// leaves a version down, as it always did.
		if d.Valid && in.Current == 0 && !in.ReleasedAt.IsZero() && in.LastInvokedAt.After(in.ReleasedAt) && p.recentlyInvoked(in) {
			require.Positive(t, d.Desired, "case %d: invoked while down: %+v", i, d)
		}
	}
	require.Positive(t, released, "the generator never released a version")
	require.Positive(t, prewarmed, "the generator never pre-warmed a version")
}
