package scale

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/config"
	"function/shared/nvcf"
	"function/shared/policy"
	"function/shared/store"
)

// countedConfigs answers DeploymentConfiguration from a fixed reply and
// counts the asks: what the cache saves NVCF is the number of asks.
type countedConfigs struct {
	reply map[string]nvcf.AutoscalingConfig
	err   error
	asks  int
}

func (c *countedConfigs) DeploymentConfiguration(context.Context, string, string) (map[string]nvcf.AutoscalingConfig, error) {
	c.asks++
	return c.reply, c.err
}

func scaleSettings(t *testing.T, env map[string]string) config.Scale {
	s, err := config.LoadScale(env)
	require.NoError(t, err)
	return s
}

// An overrides file is re-read when it changes, but looked at no more
// than once per overridesCheck; one that turns bad keeps the last good
// overrides and says so, after any layer's own note, until it is fixed.
func TestPolicyOverridesFileIsReloadedAndABadOneKeepsTheLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overrides.json")
	mtime := time.Now().Add(-time.Hour)
	write := func(doc string) {
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
		// A new modification time, whatever the file system's resolution.
		mtime = mtime.Add(time.Minute)
		require.NoError(t, os.Chtimes(path, mtime, mtime))
	}
	// The version's override asks for fewer than the function's minimum:
	// that layer is skipped, and its note says so.
	write(`{"functions": {"f": {"minInstances": 2}}, "versions": {"v": {"maxInstances": 1}}}`)
	ps, err := newPolicySource(scaleSettings(t, map[string]string{"POLICY_OVERRIDES_FILE": path}), nil)
	require.NoError(t, err)
	v := store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: "f", FunctionVersionID: "v"}}
	minOf := func() (int, string) {
		p, note := ps.For(context.Background(), v)
		return p.MinInstances, note
	}
	// As if the file was last looked at longer than overridesCheck ago.
	due := func() { ps.checked = time.Now().Add(-overridesCheck - time.Second) }
	const skipped = "override for version v ignored: maxInstances: must be >= minInstances (2), got 1"

	m, note := minOf()
	require.Equal(t, 2, m)
	require.Equal(t, skipped, note)

	write(`{"functions": {"f": {"minInstances": 3}}, "versions": {"v": {"maxInstances": 1}}}`)
	m, _ = minOf()
	require.Equal(t, 2, m, "looked at less than overridesCheck ago: not read again yet")
	due()
	m, _ = minOf()
	require.Equal(t, 3, m, "changed: read again")

	write(`{"functions": {"f": {"minInstances": "many"}}}`)
	due()
	m, note = minOf()
	require.Equal(t, 3, m, "a bad file keeps the last good overrides")
	require.True(t, strings.HasPrefix(note, strings.Replace(skipped, "(2)", "(3)", 1)+"; overrides file unreadable, using the last good one: "), note)
	m, note = minOf()
	require.Equal(t, 3, m)
	require.Contains(t, note, "overrides file unreadable", "said in every decision until it is fixed")

	write(`{"functions": {"f": {"minInstances": 4}}}`)
	due()
	m, note = minOf()
	require.Equal(t, 4, m)
	require.Empty(t, note, "fixed: nothing to say")
}

// NVCF's deployment configuration is asked once per configTTL per
// version, once per configRetryTTL after a failed or empty answer, and
// never again once the transport says it cannot serve it; of several GPU
// specifications the first by name decides.
func TestDeploymentConfigsAreCachedAndTheFirstSpecificationDecides(t *testing.T) {
	s := scaleSettings(t, nil)
	up := func(threshold int) nvcf.AutoscalingConfig {
		return nvcf.AutoscalingConfig{ScaleUp: nvcf.ScalingDetails{Factor: 2, Threshold: threshold},
			ScaleDown: nvcf.ScalingDetails{Factor: 0.5, Threshold: threshold / 4}}
	}
	c := &countedConfigs{reply: map[string]nvcf.AutoscalingConfig{"L40S": up(90), "A100": up(70), "H100": up(80)}}
	ps, err := newPolicySource(s, c)
	require.NoError(t, err)
	ctx := context.Background()
	key := store.VersionKey{FunctionID: "f", FunctionVersionID: "v"}
	t0 := time.Now()
	_, note := ps.For(ctx, store.ActiveVersion{VersionKey: store.VersionKey{FunctionID: "f", FunctionVersionID: "u"}})
	require.Empty(t, note, "no overrides file, nothing to say about one")
	c.asks = 0

	cfg := ps.deploymentConfig(ctx, key, t0)
	require.NotNil(t, cfg)
	require.EqualValues(t, 70, cfg.ScaleUp.Threshold, "A100 sorts first")
	require.EqualValues(t, 17, cfg.ScaleDown.Threshold, "each direction from its own rule")
	require.Equal(t, 0.5, cfg.ScaleDown.Factor)
	ps.deploymentConfig(ctx, key, t0.Add(configTTL-time.Second))
	require.Equal(t, 1, c.asks, "trusted for configTTL")
	ps.deploymentConfig(ctx, key, t0.Add(configTTL))
	require.Equal(t, 2, c.asks, "asked again once it expired")

	other := store.VersionKey{FunctionID: "f", FunctionVersionID: "w"}
	c.reply, c.err = nil, errors.New("unavailable")
	require.Nil(t, ps.deploymentConfig(ctx, other, t0), "a failed read falls back to the defaults")
	ps.deploymentConfig(ctx, other, t0.Add(configRetryTTL-time.Second))
	require.Equal(t, 3, c.asks, "and is not asked again every cycle")
	c.err = nil
	require.Nil(t, ps.deploymentConfig(ctx, other, t0.Add(configRetryTTL)), "an empty answer is no configuration")
	require.Equal(t, 4, c.asks)
	ps.deploymentConfig(ctx, other, t0.Add(2*configRetryTTL-time.Second))
	require.Equal(t, 4, c.asks, "an empty answer is asked again only after configRetryTTL")

	c.err = nvcf.ErrUnsupported
	ps.deploymentConfig(ctx, other, t0.Add(time.Hour))
	ps.deploymentConfig(ctx, key, t0.Add(time.Hour))
	require.Equal(t, 5, c.asks, "a transport that cannot serve configurations is not asked again")
}

// An invoked row must outlive the idle timeout only when idleness can
// take a version to zero: without scale-to-zero a short row TTL is fine.
func TestDefaultPolicyAsksForTheRowTTLOnlyWithScaleToZero(t *testing.T) {
	s := scaleSettings(t, map[string]string{"ACTIVE_ROW_TTL": "600s", "SCALE_TO_ZERO_IDLE_TIMEOUT": "1800s"})
	_, err := DefaultPolicy(s)
	require.ErrorContains(t, err, "ACTIVE_ROW_TTL (10m0s) must be at least SCALE_TO_ZERO_IDLE_TIMEOUT (30m0s)")
	s.ScaleToZero = false
	_, err = DefaultPolicy(s)
	require.NoError(t, err)
}

// Every policy setting reaches the default policy, each at a value that
// is not its default so that one left behind shows.
func TestDefaultPolicyTakesEverySetting(t *testing.T) {
	p, err := DefaultPolicy(scaleSettings(t, map[string]string{
		"POLICY_MODE": "target", "MIN_INSTANCES": "1", "MAX_INSTANCES": "7",
		"SCALE_UP_THRESHOLD": "85", "SCALE_DOWN_THRESHOLD": "15", "SCALE_UP_FACTOR": "1.5", "SCALE_DOWN_FACTOR": "0.6",
		"UTILIZATION_DECAY": "0.3", "SCALE_TO_ZERO": "false", "SCALE_TO_ZERO_IDLE_TIMEOUT": "900s",
		"KEEP_ALIVE": "fixed", "KEEP_ALIVE_PERCENTILE": "90", "PREWARM_PERCENTILE": "7",
		"TARGET_UTILIZATION": "55", "TARGET_TOLERANCE": "0.05",
		"SCALE_DOWN_STABILIZATION": "240s", "SCALE_DOWN_FLAP_WINDOW": "15m", "MAX_SCALE_UP_RATE": "3", "MAX_SCALE_DOWN_RATE": "1.2",
	}))
	require.NoError(t, err)
	want := policy.Defaults()
	want.Mode, want.MinInstances, want.MaxInstances = policy.ModeTarget, 1, 7
	want.UpThreshold, want.DownThreshold, want.UpFactor, want.DownFactor = 85, 15, 1.5, 0.6
	want.Decay, want.ScaleToZero, want.IdleTimeout = 0.3, false, 900*time.Second
	want.KeepAlive, want.KeepAlivePercentile, want.PrewarmPercentile = policy.KeepAliveFixed, 90, 7
	want.TargetUtilization, want.Tolerance = 55, 0.05
	want.ScaleDownStabilization, want.ScaleDownFlapWindow = 240*time.Second, 15*time.Minute
	want.MaxScaleUpRate, want.MaxScaleDownRate = 3, 1.2
	require.Equal(t, want, p)
}
