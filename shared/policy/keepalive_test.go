package policy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// learn folds gaps one hour apart, the last ending at t0.
func learn(h IdleHistogram, gaps ...time.Duration) IdleHistogram {
	for i, g := range gaps {
		h = h.Observe(t0.Add(-time.Duration(len(gaps)-1-i)*time.Hour), g)
	}
	return h
}

func repeat(g time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = g
	}
	return out
}

func approxDuration(t *testing.T, want, got time.Duration, msg ...any) {
	t.Helper()
	require.InDelta(t, want.Seconds(), got.Seconds(), 1, msg...)
}

func TestIdleHistogramObserve(t *testing.T) {
	var h IdleHistogram
	require.Zero(t, h.Gaps())
	require.Equal(t, h, h.Observe(t0, 0), "a gap of zero says nothing")
	require.Equal(t, h, h.Observe(t0, -time.Minute), "a negative gap is a clock error")
	require.Equal(t, h, h.Observe(time.Time{}, time.Minute), "a gap needs its end")

	h = h.Observe(t0, 55*time.Minute+30*time.Second)
	require.Equal(t, 1.0, h.bins[55], "55.5 minutes is bin 55")
	require.Equal(t, t0, h.UpdatedAt())
	require.Equal(t, h, h.Observe(t0, time.Minute), "the same end again is a replay")
	require.Equal(t, h, h.Observe(t0.Add(-time.Second), time.Minute), "an older end is a replay")

	h = h.Observe(t0.Add(time.Second), 4*time.Hour)
	require.Equal(t, 1.0, h.Overflow(), "4 hours is past the last bin")
	require.InDelta(t, idleDecay, h.bins[55], 1e-12, "the older gap decayed once")
	require.InDelta(t, 1+idleDecay, h.Gaps(), 1e-12)

	h = h.Observe(t0.Add(2*time.Second), 4*time.Hour-time.Nanosecond)
	require.Equal(t, 1.0, h.bins[IdleBins-1], "just under 4 hours is the last bin")
}

func TestIdleHistogramDecayHalvesPerHalfLife(t *testing.T) {
	h := IdleHistogram{}.Observe(t0, time.Minute)
	for i := 1; i <= int(IdleHalfLife); i++ {
		h = h.Observe(t0.Add(time.Duration(i)*time.Minute), 2*time.Minute)
	}
	require.InDelta(t, 0.5, h.bins[1], 1e-9)
}

func TestIdleHistogramPrunesFadedBins(t *testing.T) {
	h := IdleHistogram{}.Observe(t0, time.Minute)
	for i := 1; i < 200; i++ {
		h = h.Observe(t0.Add(time.Duration(i)*time.Second), 7*time.Minute)
	}
	require.Zero(t, h.bins[1], "a gap decayed below %g is dropped", idlePrune)
	require.NotContains(t, h.Encode(), " 1=")
	h = IdleHistogram{}.Observe(t0, 5*time.Hour)
	for i := 1; i < 200; i++ {
		h = h.Observe(t0.Add(time.Duration(i)*time.Second), 7*time.Minute)
	}
	require.Zero(t, h.Overflow(), "a faded overflow is dropped too")
}

func TestIdleHistogramPercentile(t *testing.T) {
	var empty IdleHistogram
	_, ok := empty.Percentile(0.5)
	require.False(t, ok, "nothing learned")
	// Weights that all decayed away answer as nothing learned (the early
	// return the scale function's idle versions take).
	faded, err := DecodeIdleHistogram("v1 t=1764500000 o=0")
	require.NoError(t, err)
	_, ok = faded.Percentile(0.5)
	require.False(t, ok, "every weight faded")

	h := learn(IdleHistogram{}, repeat(55*time.Minute, 10)...)
	for _, q := range []float64{0, 1, -0.1, 1.1, math.NaN()} {
		_, ok := h.Percentile(q)
		require.False(t, ok, "q=%v", q)
	}
	// One bin: the percentile spreads linearly across it.
	got, ok := h.Percentile(0.5)
	require.True(t, ok)
	approxDuration(t, 55*time.Minute+30*time.Second, got)
	got, _ = h.Percentile(0.99)
	approxDuration(t, 55*time.Minute+59*time.Second, got)

	// Two bins, 3:1.
	h2 := learn(IdleHistogram{}, 10*time.Minute, 10*time.Minute, 10*time.Minute, 20*time.Minute)
	w := h2.bins[10] + h2.bins[20]
	got, _ = h2.Percentile(h2.bins[10] / w / 2)
	approxDuration(t, 10*time.Minute+30*time.Second, got, "half way into the first bin")
	got, _ = h2.Percentile(0.99)
	require.GreaterOrEqual(t, got, 20*time.Minute)
	require.Less(t, got, 21*time.Minute)

	// A percentile in the overflow cannot be read.
	h3 := learn(IdleHistogram{}, 10*time.Minute, 5*time.Hour)
	_, ok = h3.Percentile(0.99)
	require.False(t, ok)
	got, ok = h3.Percentile(0.1)
	require.True(t, ok)
	require.Less(t, got, 11*time.Minute)
}

func TestIdleHistogramPercentileAfter(t *testing.T) {
	// A burst's inner gaps (1 minute) and the gap between bursts (55).
	gaps := []time.Duration{}
	for range 5 {
		gaps = append(gaps, time.Minute, time.Minute, time.Minute, time.Minute, 55*time.Minute)
	}
	h := learn(IdleHistogram{}, gaps...)
	head, _ := h.Percentile(0.05)
	require.Less(t, head, 2*time.Minute, "unconditioned, the inner gaps are the head")
	head, ok := h.percentileAfter(0.05, 2*time.Minute)
	require.True(t, ok)
	require.GreaterOrEqual(t, head, 55*time.Minute, "after two quiet minutes only the long gap is left")

	// Inside a bin only the part above `after` counts.
	one := learn(IdleHistogram{}, repeat(10*time.Minute, 8)...)
	got, _ := one.percentileAfter(0.5, 10*time.Minute+30*time.Second)
	approxDuration(t, 10*time.Minute+45*time.Second, got)
	_, ok = one.percentileAfter(0.5, 11*time.Minute)
	require.False(t, ok, "no gap in range is longer")
	_, ok = one.percentileAfter(0.5, -time.Second)
	require.False(t, ok)
}

func TestIdleHistogramRepresentative(t *testing.T) {
	periodic := learn(IdleHistogram{}, repeat(55*time.Minute, 10)...)
	require.True(t, periodic.Representative())

	few := learn(IdleHistogram{}, repeat(55*time.Minute, 7)...)
	require.Less(t, few.Gaps(), IdleMinGaps)
	require.False(t, few.Representative(), "%.2f gaps", few.Gaps())
	justEnough := learn(IdleHistogram{}, repeat(55*time.Minute, 8)...)
	require.GreaterOrEqual(t, justEnough.Gaps(), IdleMinGaps)
	require.True(t, justEnough.Representative())

	// Mostly beyond the range.
	long := learn(IdleHistogram{}, append(repeat(5*time.Hour, 6), repeat(55*time.Minute, 4)...)...)
	require.Greater(t, long.Overflow(), IdleMaxOverflow*long.Gaps())
	require.False(t, long.Representative())
	half := learn(IdleHistogram{}, append(repeat(5*time.Hour, 5), repeat(55*time.Minute, 5)...)...)
	require.LessOrEqual(t, half.Overflow(), IdleMaxOverflow*half.Gaps()+1e-9)
	require.True(t, half.Representative(), "overflow %.2f of %.2f", half.Overflow(), half.Gaps())

}

func TestIdleHistogramEncodeRoundTrip(t *testing.T) {
	require.Equal(t, "", IdleHistogram{}.Encode())
	h, err := DecodeIdleHistogram("")
	require.NoError(t, err)
	require.Equal(t, IdleHistogram{}, h)
	h, err = DecodeIdleHistogram("  \n")
	require.NoError(t, err)
	require.Equal(t, IdleHistogram{}, h)

	h = learn(IdleHistogram{}, 3*time.Minute, 55*time.Minute, 5*time.Hour, 56*time.Minute, 239*time.Minute)
	s := h.Encode()
	require.True(t, strings.HasPrefix(s, fmt.Sprintf("v1 t=%d o=", t0.Unix())), s)
	got, err := DecodeIdleHistogram(s)
	require.NoError(t, err)
	require.Equal(t, s, got.Encode(), "encoding is stable")
	require.True(t, got.UpdatedAt().Equal(h.UpdatedAt()))
	require.InDelta(t, h.Overflow(), got.Overflow(), 1e-5)
	for i := range h.bins {
		require.InDelta(t, h.bins[i], got.bins[i], 1e-5, "bin %d", i)
	}
	require.Contains(t, s, " 239=")
	require.Contains(t, s, " 3=")
	require.NotContains(t, s, " 4=", "empty bins are not written")
}

func TestDecodeIdleHistogramRefusesMalformed(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"v2 t=1 o=0", "unknown version \"v2\""},
		{"1=3", "unknown version"},
		{"v1", "before the bins"},
		{"v1 t=5", "before the bins"},
		{"v1 o=0 t=5", "want t="},
		{"v1 t=x o=0", "want t="},
		{"v1 t=0 o=0", "want t="},
		{"v1 t=-5 o=0", "want t="},
		{"v1 t=5 x=0", "want o="},
		{"v1 t=5 o=NaN", "overflow weight \"NaN\""},
		{"v1 t=5 o=-1", "overflow weight"},
		{"v1 t=5 o=+Inf", "overflow weight"},
		{"v1 t=5 o=0 3", "want <bin 0..239>=<weight>"},
		{"v1 t=5 o=0 x=1", "want <bin"},
		{"v1 t=5 o=0 240=1", "want <bin"},
		{"v1 t=5 o=0 -1=1", "want <bin"},
		{"v1 t=5 o=0 3=1 3=1", "bin 3 after bin 3"},
		{"v1 t=5 o=0 4=1 3=1", "bin 3 after bin 4"},
		{"v1 t=5 o=0 3=abc", "bin 3 weight \"abc\""},
		{"v1 t=5 o=0 3=-0.5", "bin 3 weight"},
	} {
		h, err := DecodeIdleHistogram(c.in)
		require.ErrorContains(t, err, c.want, "%q", c.in)
		require.Equal(t, IdleHistogram{}, h, "%q: nothing half-read", c.in)
	}
	h, err := DecodeIdleHistogram("v1 t=5 o=0 0=1 239=2.5")
	require.NoError(t, err)
	require.Equal(t, 1.0, h.bins[0])
	require.Equal(t, 2.5, h.bins[239])
	require.Equal(t, time.Unix(5, 0).UTC(), h.UpdatedAt())
}

func TestColdStartLearn(t *testing.T) {
	var c ColdStart
	require.False(t, c.Known())
	require.Zero(t, c.Duration())
	require.Equal(t, c, c.Learn(t0, 0))
	require.Equal(t, c, c.Learn(time.Time{}, time.Minute))

	c = c.Learn(t0, 3*time.Minute)
	require.True(t, c.Known())
	require.Equal(t, 3*time.Minute, c.Duration())
	require.Equal(t, c, c.Learn(t0, time.Minute), "a replay")

	c2 := c.Learn(t0.Add(time.Hour), 5*time.Minute)
	want := (3*60*coldStartDecay + 5*60) / (coldStartDecay + 1)
	require.InDelta(t, want, c2.Seconds, 1e-9)
	require.InDelta(t, coldStartDecay+1, c2.Weight, 1e-9)
	require.Equal(t, t0.Add(time.Hour), c2.UpdatedAt)

	// A corrupt state is dropped, not averaged in.
	bad := ColdStart{Seconds: math.NaN(), Weight: 3, UpdatedAt: t0}
	require.False(t, bad.Known())
	require.Equal(t, 4*time.Minute, bad.Learn(t0.Add(time.Minute), 4*time.Minute).Duration())
	require.False(t, ColdStart{Seconds: 60, Weight: 0.5}.Known(), "less than one cold start")
	require.False(t, ColdStart{Seconds: -60, Weight: 2}.Known())
	require.False(t, ColdStart{Seconds: 60, Weight: math.Inf(1)}.Known())
}

// hourly is a version invoked once an hour in a short burst: 55-minute
// gaps, a 3-minute cold start, learned keep-alive.
func hourly(since time.Duration, cur int) (Policy, Input) {
	p := Defaults()
	p.KeepAlive = KeepAliveLearned
	in := running(cur, 0, 0, 0)
	in.LastInvokedAt = t0.Add(-since)
	in.Idle = learn(IdleHistogram{}, repeat(55*time.Minute, 12)...)
	in.ColdStart = ColdStart{}.Learn(t0.Add(-time.Hour), 3*time.Minute)
	if cur == 0 {
		in.LastRequested = 0
	}
	return p, in
}

func TestDecideLearnedKeepAlive(t *testing.T) {
	// p5 of 55..56 is 55.05 min, less 10 % and the cold start: pre-warm
	// at about 46.5 min; p99 is 55.99 min, plus 10 %: keep alive to 61.6.
	prewarmAt := scale(55*time.Minute+3*time.Second, 0.9) - 3*time.Minute
	keepUntil := scale(55*time.Minute+59*time.Second+400*time.Millisecond, 1.1)

	t.Run("released early after the burst", func(t *testing.T) {
		p, in := hourly(2*time.Minute, 1)
		d := Decide(p, in)
		require.Equal(t, 0, d.Desired, d.Detail)
		require.True(t, d.Valid)
		require.Equal(t, ReasonScaleToZeroLearned, d.Reason)
		require.Equal(t, 0, d.Recommendation)
		require.Contains(t, d.Detail, "released until the pre-warm")
		require.Contains(t, d.Detail, "p99=")
		require.Contains(t, d.Detail, "cold start 3m0s")
		require.Contains(t, d.Detail, "8.9 gaps, 0.0 beyond 4h0m0s")
		require.Contains(t, d.Detail, "per gap learned")
	})
	t.Run("not before two quiet minutes", func(t *testing.T) {
		p, in := hourly(2*time.Minute-time.Second, 1)
		d := Decide(p, in)
		require.NotEqual(t, 0, d.Desired, d.Detail)
	})
	t.Run("busy is not idle", func(t *testing.T) {
		p, in := hourly(10*time.Minute, 1)
		in.Utilization = series(0, 0, 50)
		require.Equal(t, 1, Decide(p, in).Desired)
		in.Utilization = series(50, 50, 0)
		require.Equal(t, 1, Decide(p, in).Desired, "the average is busy")
	})
	t.Run("unknown metrics hold", func(t *testing.T) {
		p, in := hourly(10*time.Minute, 1)
		in.MetricsOK = false
		d := Decide(p, in)
		require.False(t, d.Valid)
		require.Equal(t, 1, d.Desired)
		p, in = hourly(10*time.Minute, 1)
		in.Utilization = series(0, math.NaN())
		require.Equal(t, 1, Decide(p, in).Desired)
	})
	t.Run("a release shorter than a cold start is not made", func(t *testing.T) {
		p, in := hourly(prewarmAt-3*time.Minute+time.Second, 1)
		d := Decide(p, in)
		require.Equal(t, 1, d.Desired, d.Detail)
		p, in = hourly(prewarmAt-3*time.Minute-time.Second, 1)
		require.Equal(t, 0, Decide(p, in).Desired)
	})
	t.Run("pre-warmed version stays up to the keep-alive", func(t *testing.T) {
		p, in := hourly(keepUntil-time.Second, 1)
		d := Decide(p, in)
		require.Equal(t, 1, d.Desired, d.Detail)
		p, in = hourly(keepUntil+time.Second, 1)
		d = Decide(p, in)
		require.Equal(t, 0, d.Desired, d.Detail)
		require.Equal(t, ReasonScaleToZeroLearned, d.Reason)
		require.Contains(t, d.Detail, "past learned keep-alive")
	})
	t.Run("at zero waits for the pre-warm", func(t *testing.T) {
		p, in := hourly(prewarmAt-time.Second, 0)
		d := Decide(p, in)
		require.Equal(t, 0, d.Desired, d.Detail)
		require.Equal(t, ReasonHoldAtZero, d.Reason)
		require.Contains(t, d.Detail, "learned keep-alive waits")
	})
	t.Run("at zero pre-warms", func(t *testing.T) {
		p, in := hourly(prewarmAt+time.Second, 0)
		d := Decide(p, in)
		require.Equal(t, 1, d.Desired, d.Detail)
		require.True(t, d.Valid)
		require.Equal(t, ReasonPrewarm, d.Reason)
		require.Equal(t, 1, d.Recommendation)
		require.Contains(t, d.Detail, "pre-warm due at 46m")
	})
	t.Run("at zero past the keep-alive stays down", func(t *testing.T) {
		p, in := hourly(keepUntil+time.Second, 0)
		d := Decide(p, in)
		require.Equal(t, 0, d.Desired, d.Detail)
		require.Equal(t, ReasonHoldAtZero, d.Reason)
		p, in = hourly(55*time.Minute+30*time.Second, 0)
		require.Equal(t, ReasonPrewarm, Decide(p, in).Reason, "inside the predicted gap")
		p, in = hourly(keepUntil-time.Second, 0)
		d = Decide(p, in)
		require.Equal(t, ReasonHoldAtZero, d.Reason, "the predicted gap is over: %s", d.Detail)
	})
	t.Run("an invocation while down brings it up", func(t *testing.T) {
		p, in := hourly(10*time.Minute, 0)
		in.ReleasedAt = in.LastInvokedAt.Add(-time.Second)
		d := Decide(p, in)
		require.Equal(t, 1, d.Desired, d.Detail)
		require.Equal(t, ReasonScaleFromZero, d.Reason)
		require.Contains(t, d.Detail, "after going to zero")
		in.ReleasedAt = in.LastInvokedAt
		require.Equal(t, 0, Decide(p, in).Desired, "released after that invocation")
		p, in = hourly(time.Minute, 0)
		d = Decide(p, in)
		require.Equal(t, ReasonScaleFromZero, d.Reason, "just invoked")
	})
	t.Run("min instances", func(t *testing.T) {
		p, in := hourly(10*time.Minute, 1)
		p.MinInstances = 2
		in.Current, in.LastRequested = 2, 2
		d := Decide(p, in)
		require.Equal(t, 2, d.Desired)
		require.Equal(t, ReasonClampedMin, d.Reason)
		p, in = hourly(10*time.Minute, 0)
		p.MinInstances = 2
		d = Decide(p, in)
		require.Equal(t, 2, d.Desired)
		require.Equal(t, ReasonClampedMin, d.Reason)
		p, in = hourly(prewarmAt+time.Second, 0)
		p.MinInstances = 2
		require.Equal(t, 2, Decide(p, in).Desired)
	})
	t.Run("cold start unknown: keep alive only", func(t *testing.T) {
		// Keeping the hourly job up to 61.6 minutes idles more than the
		// fixed 30 minutes: fixed applies.
		p, in := hourly(40*time.Minute, 0)
		in.ColdStart = ColdStart{}
		d := Decide(p, in)
		require.Equal(t, 0, d.Desired, d.Detail)
		require.Contains(t, d.Detail, "learned keep-alive no better on its own gaps")
		require.Contains(t, d.Detail, "cold start unknown: no pre-warm")
		require.Contains(t, d.Detail, "per gap learned 55.5 idle min 0.00 cold, fixed 30.0 idle min 1.00 cold")
		// Against a 2-hour timeout it idles no more and releases sooner.
		p, in = hourly(keepUntil+time.Second, 1)
		p.IdleTimeout = 2 * time.Hour
		in.ColdStart = ColdStart{}
		d = Decide(p, in)
		require.Equal(t, ReasonScaleToZeroLearned, d.Reason, d.Detail)
		p, in = hourly(40*time.Minute, 0)
		p.IdleTimeout = 2 * time.Hour
		in.ColdStart = ColdStart{}
		require.Equal(t, ReasonHoldAtZero, Decide(p, in).Reason, "no pre-warm without a cold start")
	})
	t.Run("kept up past the fixed timeout", func(t *testing.T) {
		p, in := hourly(50*time.Minute, 1)
		p.IdleTimeout = 30 * time.Minute
		require.Equal(t, 1, Decide(p, in).Desired, "learned says the next call is due")
	})
	t.Run("scale to zero off", func(t *testing.T) {
		p, in := hourly(10*time.Minute, 1)
		p.ScaleToZero = false
		require.Equal(t, 1, Decide(p, in).Desired)
	})
}

func TestDecideLearnedFallsBackToFixed(t *testing.T) {
	fixedAndLearned := func(t *testing.T, mut func(*Input)) {
		t.Helper()
		for _, since := range []time.Duration{time.Minute, 3 * time.Minute, 29 * time.Minute, 30 * time.Minute, 45 * time.Minute, 2 * time.Hour} {
			for _, cur := range []int{0, 1} {
				p, in := hourly(since, cur)
				mut(&in)
				learned := Decide(p, in)
				p.KeepAlive = KeepAliveFixed
				fixed := Decide(p, in)
				require.Equal(t, fixed.Desired, learned.Desired, "since %s cur %d: %s", since, cur, learned.Detail)
				require.Equal(t, fixed.Reason, learned.Reason)
				require.Equal(t, fixed.Valid, learned.Valid)
			}
		}
	}
	t.Run("nothing learned", func(t *testing.T) {
		fixedAndLearned(t, func(in *Input) { in.Idle = IdleHistogram{} })
	})
	t.Run("irregular", func(t *testing.T) {
		var spread []time.Duration
		for i := range 40 {
			spread = append(spread, time.Duration(i*6+1)*time.Minute)
		}
		fixedAndLearned(t, func(in *Input) { in.Idle = learn(IdleHistogram{}, spread...) })
	})
	t.Run("tail beyond the range", func(t *testing.T) {
		fixedAndLearned(t, func(in *Input) {
			in.Idle = learn(IdleHistogram{}, append(repeat(55*time.Minute, 7), repeat(5*time.Hour, 3)...)...)
			require.True(t, in.Idle.Representative())
		})
	})
	t.Run("detail says why", func(t *testing.T) {
		p, in := hourly(31*time.Minute, 1)
		in.Idle = learn(IdleHistogram{}, 55*time.Minute)
		d := Decide(p, in)
		require.Equal(t, ReasonScaleToZero, d.Reason)
		require.Contains(t, d.Detail, "idle histogram not representative: 1.0 gaps")
		p, in = hourly(31*time.Minute, 1)
		in.Idle = learn(IdleHistogram{}, append(repeat(55*time.Minute, 7), repeat(5*time.Hour, 3)...)...)
		require.Contains(t, Decide(p, in).Detail, "p99 of the idle gaps is beyond 4h0m0s")
	})
	t.Run("no invocation seen: the evidence span decides", func(t *testing.T) {
		p, in := hourly(0, 1)
		in.LastInvokedAt = time.Time{}
		in.InvocationsSince = t0.Add(-10 * time.Minute)
		d := Decide(p, in)
		require.Equal(t, 1, d.Desired, "10 minutes without an invocation is not idleness: %s", d.Detail)
		in.InvocationsSince = t0.Add(-30 * time.Minute)
		d = Decide(p, in)
		require.Equal(t, ReasonScaleToZero, d.Reason)
		require.Contains(t, d.Detail, "needs a last invocation")
	})
	t.Run("a clock behind the last invocation", func(t *testing.T) {
		p, in := hourly(-time.Minute, 0)
		require.Equal(t, ReasonScaleFromZero, Decide(p, in).Reason)
	})
}

func TestValidateKeepAlive(t *testing.T) {
	for _, c := range []struct {
		name string
		mut  func(*Policy)
		want string
	}{
		{"mode", func(p *Policy) { p.KeepAlive = "smart" }, `keepAlive: must be "fixed" or "learned", got "smart"`},
		{"empty mode", func(p *Policy) { p.KeepAlive = "" }, `keepAlive: must be`},
		{"keep 100", func(p *Policy) { p.KeepAlivePercentile = 100 }, "keepAlivePercentile: must be a percent in (0, 100), got 100"},
		{"keep 0", func(p *Policy) { p.KeepAlivePercentile = 0 }, "keepAlivePercentile: must be a percent in (0, 100), got 0"},
		{"keep NaN", func(p *Policy) { p.KeepAlivePercentile = math.NaN() }, "keepAlivePercentile: must be a percent"},
		{"prewarm 0", func(p *Policy) { p.PrewarmPercentile = 0 }, "prewarmPercentile: must be a percent in (0, 100), got 0"},
		{"prewarm 100", func(p *Policy) { p.PrewarmPercentile = 100 }, "prewarmPercentile: must be a percent in (0, 100), got 100"},
		{"prewarm Inf", func(p *Policy) { p.PrewarmPercentile = math.Inf(1) }, "prewarmPercentile: must be a percent"},
		{"order", func(p *Policy) { p.PrewarmPercentile = 99 }, "prewarmPercentile: must be < keepAlivePercentile (99), got 99"},
	} {
		p := Defaults()
		c.mut(&p)
		err := p.Validate()
		require.ErrorContains(t, err, c.want, c.name)
		var fe *FieldError
		require.ErrorAs(t, err, &fe, c.name)
	}
	p := Defaults()
	p.KeepAlive, p.KeepAlivePercentile, p.PrewarmPercentile = KeepAliveLearned, 99.9, 0.1
	require.NoError(t, p.Validate())
	require.Equal(t, KeepAliveFixed, Defaults().KeepAlive)
	require.Equal(t, 99.0, Defaults().KeepAlivePercentile)
	require.Equal(t, 5.0, Defaults().PrewarmPercentile)
}

func TestOverridesKeepAlive(t *testing.T) {
	byF, _, err := ParseOverrides([]byte(`{"functions": {"f": {"keepAlive": "learned", "keepAlivePercentile": 95, "prewarmPercentile": 10}}}`))
	require.NoError(t, err)
	p := byF["f"].Apply(Defaults())
	require.Equal(t, KeepAliveLearned, p.KeepAlive)
	require.Equal(t, 95.0, p.KeepAlivePercentile)
	require.Equal(t, 10.0, p.PrewarmPercentile)
	require.Equal(t, Defaults(), PolicyPatch{}.Apply(Defaults()))

	_, _, err = ParseOverrides([]byte(`{"versions": {"v": {"keepAlive": "smart"}}}`))
	require.EqualError(t, err, `policy overrides: versions["v"]: keepAlive must be "fixed" or "learned", got "smart"`)

	got, note := Resolve(Defaults(), "f", "v", nil, map[string]PolicyPatch{"f": byF["f"]}, nil)
	require.Empty(t, note)
	require.Equal(t, KeepAliveLearned, got.KeepAlive)
	bad := 1.0
	got, note = Resolve(Defaults(), "f", "v", map[string]PolicyPatch{"v": {PrewarmPercentile: &bad, KeepAlivePercentile: &bad}}, nil, nil)
	require.Contains(t, note, "prewarmPercentile: must be < keepAlivePercentile")
	require.Equal(t, 99.0, got.KeepAlivePercentile)
}

// The replay behind the "pattern is clear" test, minute by minute, for
// the hourly job: up for the burst's two quiet minutes, released at
// minute 2, pre-warmed at minute 47 (pre-warm point 46.5), ready at 50,
// and the gap ends in minute 55: 10 up minutes before it plus half of its
// own, and no cold start; the fixed 30 minutes idle 30 and cold-start.
func TestKeepAliveReplay(t *testing.T) {
	p, in := hourly(0, 1)
	pl, why, ok := p.learnedPlan(in)
	require.True(t, ok, why)
	learned, fixed := pl.replay(30 * time.Minute)
	require.InDelta(t, 10.5, learned.idle, 1e-9)
	require.Zero(t, learned.cold)
	require.InDelta(t, 30, fixed.idle, 1e-9)
	require.InDelta(t, 1, fixed.cold, 1e-9)
	require.Contains(t, why, "per gap learned 10.5 idle min 0.00 cold, fixed 30.0 idle min 1.00 cold")

	// Against a 2-hour timeout the fixed rule keeps the version up: no
	// cold start, 55.5 idle minutes.
	_, fixed = pl.replay(2 * time.Hour)
	require.InDelta(t, 55.5, fixed.idle, 1e-9)
	require.Zero(t, fixed.cold)

	// A share of 20-minute gaps too few to move the 5th percentile: they
	// end while the version is down (cold), after its two up minutes.
	in.Idle = learn(IdleHistogram{}, append([]time.Duration{20 * time.Minute}, repeat(55*time.Minute, 40)...)...)
	share := in.Idle.bins[20] / in.Idle.Gaps()
	require.Less(t, share, 0.05)
	pl, why, ok = p.learnedPlan(in)
	require.True(t, ok, why)
	learned, fixed = pl.replay(30 * time.Minute)
	require.InDelta(t, share, learned.cold, 1e-9)
	require.InDelta(t, share*2+(1-share)*10.5, learned.idle, 1e-9)
	require.InDelta(t, 1-share, fixed.cold, 1e-9)
	require.InDelta(t, share*20.5+(1-share)*30, fixed.idle, 1e-9)

	// Gaps beyond the range are cold for both rules and idle for all the
	// minutes each keeps the version up: learned 2 + minutes 47..61 (up to
	// the keep-alive at 61.6), fixed 30.
	in.Idle = learn(IdleHistogram{}, append([]time.Duration{5 * time.Hour}, repeat(55*time.Minute, 40)...)...)
	over := in.Idle.Overflow() / in.Idle.Gaps()
	require.Positive(t, over)
	pl, why, ok = p.learnedPlan(in)
	require.True(t, ok, why)
	learned, fixed = pl.replay(30 * time.Minute)
	require.InDelta(t, over, learned.cold, 1e-9)
	require.InDelta(t, over*17+(1-over)*10.5, learned.idle, 1e-9)
	require.InDelta(t, 1, fixed.cold, 1e-9)
	require.InDelta(t, 30, fixed.idle, 1e-9)
}

// With keep-alive fixed, the details are exactly today's: nothing about
// a plan that was never consulted.
func TestFixedKeepAliveDetailsUnchanged(t *testing.T) {
	p, in := hourly(40*time.Minute, 0)
	p.KeepAlive = KeepAliveFixed
	require.Equal(t, "at zero, no invocation within the idle timeout", Decide(p, in).Detail)
	p, in = hourly(10*time.Minute, 0)
	p.KeepAlive = KeepAliveFixed
	require.Equal(t, "at zero and recently invoked", Decide(p, in).Detail)
	p, in = hourly(40*time.Minute, 1)
	p.KeepAlive = KeepAliveFixed
	require.Equal(t, "cur=1 latest=0.0 avg=0.0 < 30, last invoked 40m0s ago", Decide(p, in).Detail)
}

// Percentiles across bins, at their exact edges, from decoded weights.
func TestIdleHistogramPercentileEdges(t *testing.T) {
	decode := func(s string) IdleHistogram {
		h, err := DecodeIdleHistogram(s)
		require.NoError(t, err)
		return h
	}
	two := decode("v1 t=5 o=0 10=1 20=1")
	got, ok := two.Percentile(0.5)
	require.True(t, ok)
	require.Equal(t, 11*time.Minute, got, "half the weight ends exactly with bin 10")
	got, _ = two.percentileAfter(0.5, 10*time.Minute)
	require.Equal(t, 11*time.Minute, got, "from the start of bin 10, the same")
	got, _ = two.percentileAfter(0.5, 10*time.Minute+30*time.Second)
	require.Equal(t, 20*time.Minute+15*time.Second, got, "half of bin 10 and all of bin 20 are left")
	got, _ = two.percentileAfter(0.2, 10*time.Minute+30*time.Second)
	require.Equal(t, 10*time.Minute+48*time.Second, got)

	withOverflow := decode("v1 t=5 o=1 10=1")
	got, ok = withOverflow.Percentile(0.5)
	require.True(t, ok, "the in-range half ends with bin 10")
	require.Equal(t, 11*time.Minute, got)
	_, ok = withOverflow.Percentile(0.51)
	require.False(t, ok)

	require.True(t, decode("v1 t=5 o=0 55=6").Representative(), "exactly IdleMinGaps")
	require.False(t, decode("v1 t=5 o=0 55=5.99").Representative())
	require.True(t, decode("v1 t=5 o=3 55=3").Representative(), "exactly IdleMaxOverflow beyond the range")
	require.False(t, decode("v1 t=5 o=3.01 55=3").Representative())
}

// Gaps near the end of the range: pre-warmed at minute 205 for gaps of
// 230 minutes, the version stays up past the range to the keep-alive at
// 254.1 minutes, which is what a gap beyond the range costs.
func TestKeepAliveReplayPastTheRange(t *testing.T) {
	p, in := hourly(0, 1)
	in.Idle = learn(IdleHistogram{}, append([]time.Duration{5 * time.Hour}, repeat(230*time.Minute, 40)...)...)
	over := in.Idle.Overflow() / in.Idle.Gaps()
	pl, why, ok := p.learnedPlan(in)
	require.True(t, ok, why)
	require.Equal(t, 255.0, math.Ceil(pl.keepUntil.Minutes()), why)
	learned, fixed := pl.replay(30 * time.Minute)
	require.InDelta(t, over, learned.cold, 1e-9)
	// 2 + 25 up minutes before the gaps end in minute 230; 2 + 35 + 15
	// for a gap beyond the range.
	require.InDelta(t, (1-over)*27.5+over*52, learned.idle, 1e-9)
	require.InDelta(t, 1, fixed.cold, 1e-9)
	require.InDelta(t, 30, fixed.idle, 1e-9)
}

// The rules at their exact edges, read from the plan itself.
func TestLearnedKeepAliveEdges(t *testing.T) {
	p, in := hourly(0, 1)
	pl, _, ok := p.learnedPlan(in)
	require.True(t, ok)
	prewarmAt, ok := pl.prewarmAt(0)
	require.True(t, ok)

	release := func(since time.Duration, cur int) Decision {
		p, in := hourly(since, cur)
		return Decide(p, in)
	}
	require.Equal(t, ReasonScaleToZeroLearned, release(pl.keepUntil, 1).Reason, "at the keep-alive exactly")
	require.Equal(t, ReasonScaleToZeroLearned, release(prewarmAt-pl.coldStart, 1).Reason, "down exactly one cold start")
	require.Equal(t, 1, release(prewarmAt-pl.coldStart+time.Nanosecond, 1).Desired)
	require.Equal(t, ReasonPrewarm, release(prewarmAt, 0).Reason, "at the pre-warm point exactly")
	require.Equal(t, ReasonHoldAtZero, release(prewarmAt-time.Nanosecond, 0).Reason)
	require.Equal(t, ReasonHoldAtZero, release(pl.minQuiet(), 0).Reason, "two quiet minutes are not a fresh invocation")
	require.Equal(t, ReasonScaleFromZero, release(pl.minQuiet()-time.Nanosecond, 0).Reason)

	// A small share of gaps just past the keep-alive: at the keep-alive
	// exactly a version at zero is not pre-warmed for them.
	p, in = hourly(0, 0)
	in.Idle = learn(IdleHistogram{}, append([]time.Duration{62*time.Minute + 30*time.Second}, repeat(55*time.Minute, 40)...)...)
	pl, _, ok = p.learnedPlan(in)
	require.True(t, ok)
	at, ok := pl.prewarmAt(pl.keepUntil)
	require.True(t, ok)
	require.Less(t, at, pl.keepUntil, "a pre-warm would be due")
	in.LastInvokedAt = t0.Add(-pl.keepUntil)
	require.Equal(t, ReasonHoldAtZero, Decide(p, in).Reason)
}

func TestColdStartEdges(t *testing.T) {
	require.True(t, ColdStart{Seconds: 60, Weight: 1 - floatSlack}.Known())
	require.False(t, ColdStart{Seconds: 0, Weight: 2}.Known())
	// A zero estimate with weight is corrupt: dropped, not averaged in.
	c := ColdStart{Seconds: 0, Weight: 2, UpdatedAt: t0}.Learn(t0.Add(time.Minute), 4*time.Minute)
	require.Equal(t, 4*time.Minute, c.Duration())
	require.Equal(t, 1.0, c.Weight)
}

// A histogram keeps its bin width through its text, and one made with the
// default width encodes exactly as before bin widths existed, so stored
// rows read the same.
func TestIdleHistogramBinWidthRoundTrip(t *testing.T) {
	require.Equal(t, IdleHistogram{}, NewIdleHistogram(IdleBinWidth))
	require.Equal(t, IdleHistogram{}, NewIdleHistogram(0))
	require.Equal(t, "", NewIdleHistogram(4*time.Second).Encode(), "nothing learned")

	h := learn(NewIdleHistogram(4*time.Second), 10*time.Second, 41*time.Second)
	require.Equal(t, 4*time.Second, h.Bin())
	require.Equal(t, IdleBins*4*time.Second, h.Range())
	s := h.Encode()
	require.Contains(t, s, " b=4 ")
	require.Contains(t, s, " 2=", "10 s falls in the third 4 s bin")
	require.Contains(t, s, " 10=")
	got, err := DecodeIdleHistogram(s)
	require.NoError(t, err)
	require.Equal(t, 4*time.Second, got.Bin())
	require.Equal(t, s, got.Encode())

	require.NotContains(t, learn(IdleHistogram{}, time.Hour).Encode(), "b=")
	for _, bad := range []string{"v1 t=1 o=0 b=0 2=1", "v1 t=1 o=0 b=x", "v1 t=1 o=0 b=-4", "v1 t=1 o=0 b=NaN"} {
		_, err := DecodeIdleHistogram(bad)
		require.Error(t, err, bad)
	}
}

// Learned keep-alive reads time in its histogram's bins: the hourly job's
// plan, learned at a 4 s step from gaps 15 times shorter (as the
// accelerated closed loop runs), releases, pre-warms and keeps alive at
// times 15 times shorter, and its replay costs the same in bins.
func TestLearnedKeepAliveScalesWithTheBin(t *testing.T) {
	const k = 15
	seen := map[Reason]bool{}
	for _, since := range []time.Duration{0, time.Minute, 2 * time.Minute, 10 * time.Minute, 47 * time.Minute, 50 * time.Minute, 58 * time.Minute, 70 * time.Minute} {
		for _, cur := range []int{0, 1} {
			p, in := hourly(since, cur)
			want := Decide(p, in)

			fast := in
			fast.LastInvokedAt = t0.Add(-since / k)
			fast.Idle = learn(NewIdleHistogram(IdleBinWidth/k), repeat(55*time.Minute/k, 12)...)
			fast.ColdStart = ColdStart{}.Learn(t0.Add(-time.Hour), 3*time.Minute/k)
			p.IdleTimeout /= k
			got := Decide(p, fast)
			require.Equal(t, want.Reason, got.Reason, "since %s cur %d: %s / %s", since, cur, want.Detail, got.Detail)
			require.Equal(t, want.Desired, got.Desired, "since %s cur %d", since, cur)
			seen[got.Reason] = true
		}
	}
	for _, r := range []Reason{ReasonPrewarm, ReasonScaleToZeroLearned, ReasonHoldAtZero, ReasonScaleFromZero} {
		require.True(t, seen[r], "no case decided %s: the comparison proves nothing about it", r)
	}
}

// The bin width's text is read within its bounds, and a stored 60 s bin
// is the default one: it encodes without b= again.
func TestIdleHistogramBinWidthEdges(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"v1 t=1 o=0 b=0.001 2=1": time.Millisecond,
		"v1 t=1 o=0 b=86400 2=1": 24 * time.Hour,
		"v1 t=1 o=0 b=60 2=1":    IdleBinWidth,
		"v1 t=1 o=0 b=4":         4 * time.Second,
	} {
		h, err := DecodeIdleHistogram(in)
		require.NoError(t, err, in)
		require.Equal(t, want, h.Bin(), in)
	}
	h, err := DecodeIdleHistogram("v1 t=1 o=0 b=60 2=1")
	require.NoError(t, err)
	require.Equal(t, "v1 t=1 o=0 2=1", h.Encode(), "a 60 s bin is the default and is not written")
	require.Equal(t, learn(IdleHistogram{}, time.Hour), learn(NewIdleHistogram(IdleBinWidth), time.Hour))
	for _, bad := range []string{"v1 t=1 o=0 b=0.0009 2=1", "v1 t=1 o=0 b=86400.5 2=1", "v1 t=1 o=0 2=1 b=4"} {
		_, err := DecodeIdleHistogram(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, IdleBinWidth, NewIdleHistogram(-time.Second).Bin())
	require.Equal(t, 2*time.Second, NewIdleHistogram(2*time.Second).Bin())
}

// A few gaps shorter than the pre-warm expects: one ends while the
// version is down (30 min), one while the pre-warmed instance provisions
// (48 min: written at minute 47, ready at 50), one just as it is ready
// (50 min). The fixed 30 minutes have released the version at 30.
func TestKeepAliveReplayEarlyGaps(t *testing.T) {
	p, in := hourly(0, 1)
	in.Idle = learn(IdleHistogram{}, append([]time.Duration{30 * time.Minute, 48 * time.Minute, 50 * time.Minute}, repeat(55*time.Minute, 40)...)...)
	n := in.Idle.Gaps()
	a, b, c, d := in.Idle.bins[30]/n, in.Idle.bins[48]/n, in.Idle.bins[50]/n, in.Idle.bins[55]/n
	pl, why, ok := p.learnedPlan(in)
	require.True(t, ok, why)
	at, _ := pl.prewarmAt(0)
	require.Equal(t, 47.0, math.Ceil(at.Minutes()), why)
	learned, fixed := pl.replay(30 * time.Minute)
	require.InDelta(t, a+b, learned.cold, 1e-9)
	require.InDelta(t, 2*a+3.5*b+5.5*c+10.5*d, learned.idle, 1e-9)
	require.InDelta(t, 1, fixed.cold, 1e-9)
	require.InDelta(t, 30, fixed.idle, 1e-9)

	require.True(t, pl.releases(pl.keepUntil), "at the keep-alive exactly")
	require.False(t, pl.releases(pl.keepUntil-time.Nanosecond))
	_, ok = pl.idle.percentileAfter(0.5, IdleBins*IdleBinWidth)
	require.False(t, ok, "nothing is known past the range")
}
