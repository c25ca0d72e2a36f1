package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"function/shared/config"
	"function/shared/nvcf"
	"function/shared/policy"
	"function/shared/store"
)

// envOf maps the policy's JSON field names to the environment variables
// that set their defaults, so a bad default names what the operator wrote.
var envOf = map[string]string{
	"mode": "POLICY_MODE", "minInstances": "MIN_INSTANCES", "maxInstances": "MAX_INSTANCES",
	"upThreshold": "SCALE_UP_THRESHOLD", "downThreshold": "SCALE_DOWN_THRESHOLD",
	"upFactor": "SCALE_UP_FACTOR", "downFactor": "SCALE_DOWN_FACTOR", "decay": "UTILIZATION_DECAY",
	"scaleToZero": "SCALE_TO_ZERO", "idleTimeout": "SCALE_TO_ZERO_IDLE_TIMEOUT",
	"keepAlive": "KEEP_ALIVE", "keepAlivePercentile": "KEEP_ALIVE_PERCENTILE", "prewarmPercentile": "PREWARM_PERCENTILE",
	"targetUtilization": "TARGET_UTILIZATION", "tolerance": "TARGET_TOLERANCE",
	"scaleDownStabilization": "SCALE_DOWN_STABILIZATION", "scaleDownFlapWindow": "SCALE_DOWN_FLAP_WINDOW",
	"maxScaleUpRate": "MAX_SCALE_UP_RATE", "maxScaleDownRate": "MAX_SCALE_DOWN_RATE",
}

// DefaultPolicy builds the default policy from the settings and validates
// it; errors name the environment variables.
func DefaultPolicy(s config.Scale) (policy.Policy, error) {
	p := policy.Defaults()
	p.Mode = policy.Mode(s.PolicyMode)
	p.MinInstances, p.MaxInstances = s.MinInstances, s.MaxInstances
	p.UpThreshold, p.DownThreshold = s.UpThreshold, s.DownThreshold
	p.UpFactor, p.DownFactor = s.UpFactor, s.DownFactor
	p.Decay = s.Decay
	p.ScaleToZero, p.IdleTimeout = s.ScaleToZero, s.IdleTimeout
	p.KeepAlive = policy.KeepAliveMode(s.KeepAlive)
	p.KeepAlivePercentile, p.PrewarmPercentile = s.KeepAlivePercentile, s.PrewarmPercentile
	p.TargetUtilization, p.Tolerance = s.TargetUtilization, s.Tolerance
	p.ScaleDownStabilization, p.ScaleDownFlapWindow = s.DownStabilization, s.DownFlapWindow
	p.MaxScaleUpRate, p.MaxScaleDownRate = s.MaxScaleUpRate, s.MaxScaleDownRate
	if err := p.Validate(); err != nil {
		msg := err.Error()
		for field, env := range envOf {
			msg = strings.ReplaceAll(msg, field+":", env+":")
		}
		return p, fmt.Errorf("scaling policy: %s", msg)
	}
	if p.ScaleToZero && s.RowTTL < p.IdleTimeout {
		// An invoked row outliving the idle timeout is the evidence of
		// idleness; with a shorter TTL a version would look idle too early.
		return p, fmt.Errorf("scaling policy: ACTIVE_ROW_TTL (%s) must be at least SCALE_TO_ZERO_IDLE_TIMEOUT (%s)", s.RowTTL, p.IdleTimeout)
	}
	return p, nil
}

// DeploymentConfigs reads NVCF's per-version autoscaling configuration
// (RequestDeploymentConfiguration); optional.
type DeploymentConfigs interface {
	DeploymentConfiguration(ctx context.Context, functionID, versionID string) (map[string]nvcf.AutoscalingConfig, error)
}

// policySource resolves each version's policy: defaults, the NVCF deployment
// configuration (cached), then overrides by function and by version from a
// file that is re-read when it changes.
type policySource struct {
	defaults policy.Policy
	path     string
	configs  DeploymentConfigs

	mu         sync.Mutex
	checked    time.Time
	modTime    time.Time
	byFunction map[string]policy.PolicyPatch
	byVersion  map[string]policy.PolicyPatch
	loadErr    string
	cache      map[store.VersionKey]cachedConfig
	noConfigs  bool // the transport cannot read configurations (HTTP)
}

type cachedConfig struct {
	cfg     *policy.DeploymentConfig
	expires time.Time
}

// How long NVCF deployment configurations are trusted, and how soon a
// failed read is tried again (the reference caches them with a TTL too).
const (
	configTTL      = 10 * time.Minute
	configRetryTTL = time.Minute
	overridesCheck = 10 * time.Second
)

func newPolicySource(s config.Scale, configs DeploymentConfigs) (*policySource, error) {
	p, err := DefaultPolicy(s)
	if err != nil {
		return nil, err
	}
	ps := &policySource{defaults: p, path: s.PolicyOverridesFile, configs: configs, cache: map[store.VersionKey]cachedConfig{}}
	if ps.path != "" {
		if err := ps.reload(time.Now()); err != nil {
			return nil, fmt.Errorf("POLICY_OVERRIDES_FILE=%q: %w", ps.path, err)
		}
	}
	return ps, nil
}

// reload re-reads the overrides file if it changed. A file that turns bad
// after start keeps the last good overrides and reports the problem in
// every decision's detail instead of stopping scaling.
func (ps *policySource) reload(now time.Time) error {
	ps.checked = now
	fi, err := os.Stat(ps.path)
	if err != nil {
		return err
	}
	if fi.ModTime().Equal(ps.modTime) && ps.byFunction != nil {
		return nil
	}
	b, err := os.ReadFile(ps.path)
	if err != nil {
		return err
	}
	byF, byV, err := policy.ParseOverrides(b)
	if err != nil {
		return err
	}
	ps.byFunction, ps.byVersion, ps.modTime = byF, byV, fi.ModTime()
	return nil
}

// For returns v's policy and a note naming any layer that was skipped.
func (ps *policySource) For(ctx context.Context, v store.ActiveVersion) (policy.Policy, string) {
	now := time.Now()
	ps.mu.Lock()
	if ps.path != "" && now.Sub(ps.checked) > overridesCheck {
		if err := ps.reload(now); err != nil {
			ps.loadErr = "overrides file unreadable, using the last good one: " + err.Error()
		} else {
			ps.loadErr = ""
		}
	}
	byF, byV, loadErr := ps.byFunction, ps.byVersion, ps.loadErr
	ps.mu.Unlock()

	cfg := ps.deploymentConfig(ctx, v.VersionKey, now)
	p, note := policy.Resolve(ps.defaults, v.FunctionID, v.FunctionVersionID, byV, byF, cfg)
	if loadErr != "" {
		note = strings.TrimPrefix(note+"; "+loadErr, "; ")
	}
	return p, note
}

func (ps *policySource) deploymentConfig(ctx context.Context, key store.VersionKey, now time.Time) *policy.DeploymentConfig {
	if ps.configs == nil {
		return nil
	}
	ps.mu.Lock()
	if ps.noConfigs {
		ps.mu.Unlock()
		return nil
	}
	if c, ok := ps.cache[key]; ok && now.Before(c.expires) {
		ps.mu.Unlock()
		return c.cfg
	}
	ps.mu.Unlock()

	got, err := ps.configs.DeploymentConfiguration(ctx, key.FunctionID, key.FunctionVersionID)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if errors.Is(err, nvcf.ErrUnsupported) {
		ps.noConfigs = true
		return nil
	}
	if err != nil || len(got) == 0 {
		// Fall back to defaults, and ask again soon rather than every cycle.
		ps.cache[key] = cachedConfig{expires: now.Add(configRetryTTL)}
		return nil
	}
	// One GPU specification per version is the common case; with several,
	// the first in key order is used so the choice is stable.
	var first string
	for gpu := range got {
		if first == "" || gpu < first {
			first = gpu
		}
	}
	c := got[first]
	cfg := &policy.DeploymentConfig{
		ScaleUp:   policy.ScalingDetails{Metric: c.ScaleUp.Metric, Factor: c.ScaleUp.Factor, Threshold: int32(c.ScaleUp.Threshold), Stickiness: policy.Stickiness{Size: c.ScaleUp.Stickiness.Size, Threshold: c.ScaleUp.Stickiness.Threshold}},
		ScaleDown: policy.ScalingDetails{Metric: c.ScaleDown.Metric, Factor: c.ScaleDown.Factor, Threshold: int32(c.ScaleDown.Threshold), Stickiness: policy.Stickiness{Size: c.ScaleDown.Stickiness.Size, Threshold: c.ScaleDown.Stickiness.Threshold}},
	}
	ps.cache[key] = cachedConfig{cfg: cfg, expires: now.Add(configTTL)}
	return cfg
}
