package scale

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/config"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/tsdb"
)

// A version seen for the first time, whose request series are younger than
// the lookback, is not idle however long the lookback is: the TSDB showing
// no invocation in a span it has no data for is no evidence. This took a
// busy new gateway version to zero on its first cycle with a lookback (60 s)
// longer than the idle timeout (40 s).
func TestANewVersionIsNotIdleOnTheTSDBLookbackAlone(t *testing.T) {
	now := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	s := config.Scale{Lookback: 60 * time.Second, RowTTL: 40 * time.Second}
	p := policy.Defaults()
	p.IdleTimeout = 40 * time.Second
	in := policy.Input{
		Now: now, Current: 1, CurrentKnown: true, MetricsOK: true,
		Utilization: []policy.Sample{{At: now.Add(-2 * time.Minute), Value: 5}, {At: now.Add(-time.Minute), Value: 5}},
	}
	v := store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: "f", FunctionVersionID: "v"}}

	cases := []struct {
		name     string
		watched  time.Time
		wantZero bool
	}{
		{"first sight", time.Time{}, false},
		{"watched for less than the idle timeout", now.Add(-30 * time.Second), false},
		{"watched for the idle timeout", now.Add(-40 * time.Second), true},
		{"watched long ago", now.Add(-time.Hour), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			last, since := invocationEvidence(now, s, v, store.ScalingState{WatchSince: c.watched}, tsdb.VersionMetrics{})
			require.True(t, last.IsZero())
			in.LastInvokedAt, in.InvocationsSince = last, since
			d := policy.Decide(p, in)
			require.Equal(t, c.wantZero, d.Reason == policy.ReasonScaleToZero, "since %s: %s %s", since, d.Reason, d.Detail)
		})
	}
}

// An invoked row still bounds the last invocation from below, whatever the
// watch time.
func TestAnInvokedRowBoundsTheLastInvocation(t *testing.T) {
	now := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	s := config.Scale{Lookback: 600 * time.Second, RowTTL: 1800 * time.Second}
	v := store.ActiveVersion{InvokedAt: now.Add(-time.Minute)}
	last, _ := invocationEvidence(now, s, v, store.ScalingState{}, tsdb.VersionMetrics{})
	require.Equal(t, now.Add(-11*time.Minute), last)
	seen := now.Add(-30 * time.Second)
	last, _ = invocationEvidence(now, s, v, store.ScalingState{}, tsdb.VersionMetrics{LastInvokedAt: seen})
	require.Equal(t, seen, last)
}
