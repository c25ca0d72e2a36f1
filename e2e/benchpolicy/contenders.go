package main

import (
	"fmt"
	"os"
	"reflect"

	"function/functions/scale"
	"function/shared/config"
	"function/shared/policy"
)

// Shipped is the policy the scale function runs with out of the box in
// the given mode ("" for the default mode): the settings' own defaults,
// turned into a policy by the same code the scale function uses. The
// process's environment is cleared of the scale settings first, so a
// POLICY_MODE in the shell cannot change what is measured.
func Shipped(mode string) (policy.Policy, error) {
	typ := reflect.TypeOf(config.Scale{})
	for i := range typ.NumField() {
		if key := typ.Field(i).Tag.Get("envconfig"); key != "" {
			if err := os.Unsetenv(key); err != nil {
				return policy.Policy{}, fmt.Errorf("unset %s: %w", key, err)
			}
		}
	}
	var cfg map[string]string
	if mode != "" {
		cfg = map[string]string{"POLICY_MODE": mode}
	}
	s, err := config.LoadScale(cfg)
	if err != nil {
		return policy.Policy{}, fmt.Errorf("shipped settings: %w", err)
	}
	return scale.DefaultPolicy(s)
}

// Contenders are what the benchmark compares: the reference autoscaler at
// its own 15 s loop; ours at the PingSource's 60 s with POLICY_MODE=nvcf
// alone (the migration setting), in target mode on utilization alone and
// with the demand inputs; the default (def, normally Shipped("")) with the
// demand inputs the scale function feeds it; and the oracle.
func Contenders(def policy.Policy) ([]Contender, error) {
	nvcf, err := Shipped(string(policy.ModeNVCF))
	if err != nil {
		return nil, err
	}
	target, err := Shipped(string(policy.ModeTarget))
	if err != nil {
		return nil, err
	}
	ours := func(name string, p policy.Policy, demand bool) Contender {
		return Contender{Name: name, Policy: p, Loop: cycle, Phase: decisionLatency, Demand: demand}
	}
	cs := []Contender{
		{Name: "reference", Policy: policy.Defaults(), Loop: referenceLoop, Phase: referencePhase, Reference: true},
		ours("nvcf", nvcf, false),
		ours("target-utilization", target, false),
	}
	if target != def {
		// Shown apart only when the default is not target mode's defaults.
		cs = append(cs, ours("target+demand", target, true))
	}
	return append(cs, ours("default", def, true), Contender{Name: "oracle", Oracle: true}), nil
}

// describe is a one-line summary of a contender's settings.
func describe(c Contender) string {
	if c.Oracle {
		return fmt.Sprintf("perfect foresight: ceil(next minute's peak / %g), ready at once", overloadUtilization)
	}
	p := c.Policy
	s := fmt.Sprintf("mode=%s", p.Mode)
	if p.Mode == policy.ModeTarget {
		s += fmt.Sprintf(" target=%g tolerance=%g", p.TargetUtilization, p.Tolerance)
	} else {
		s += fmt.Sprintf(" up=%g down=%g x%g/x%g", p.UpThreshold, p.DownThreshold, p.UpFactor, p.DownFactor)
	}
	s += fmt.Sprintf(" stabilization=%s flap-window=%s up-rate=%g down-rate=%g, every %s", p.ScaleDownStabilization, p.ScaleDownFlapWindow, p.MaxScaleUpRate, p.MaxScaleDownRate, c.Loop)
	if c.Demand {
		s += ", demand+fresh inputs"
	}
	if c.Reference {
		s += ", no activation events"
	}
	return s
}
