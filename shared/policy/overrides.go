package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Duration is a time.Duration that reads from JSON as a Go duration string
// ("90s", "30m") or a number of seconds, because nanosecond integers (the
// encoding/json default) are unreadable in a hand-written file.
type Duration time.Duration

// UnmarshalJSON accepts "1m30s" or 90.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a Go duration such as \"90s\" or \"30m\"", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"90s\" or a number of seconds", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the string form, so documents round-trip.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// stickinessJSON is Stickiness's wire form.
type stickinessJSON struct {
	Size      Duration `json:"size"`
	Threshold Duration `json:"threshold"`
}

// UnmarshalJSON reads {"size": "5m", "threshold": "3m"}, strictly: a
// custom unmarshaler does not inherit the outer decoder's strictness.
func (s *Stickiness) UnmarshalJSON(b []byte) error {
	var w stickinessJSON
	if err := strictDecode(b, &w); err != nil {
		return fmt.Errorf("stickiness: %w", err)
	}
	*s = Stickiness{Size: time.Duration(w.Size), Threshold: time.Duration(w.Threshold)}
	return nil
}

// MarshalJSON writes the form UnmarshalJSON reads.
func (s Stickiness) MarshalJSON() ([]byte, error) {
	return json.Marshal(stickinessJSON{Size: Duration(s.Size), Threshold: Duration(s.Threshold)})
}

// PolicyPatch changes some fields of a Policy: nil fields are left alone.
// It is what an override document holds per function or version.
type PolicyPatch struct {
	Mode                   *Mode          `json:"mode,omitempty"`
	MinInstances           *int           `json:"minInstances,omitempty"`
	MaxInstances           *int           `json:"maxInstances,omitempty"`
	UpThreshold            *float64       `json:"upThreshold,omitempty"`
	DownThreshold          *float64       `json:"downThreshold,omitempty"`
	UpFactor               *float64       `json:"upFactor,omitempty"`
	DownFactor             *float64       `json:"downFactor,omitempty"`
	UpStickiness           *Stickiness    `json:"upStickiness,omitempty"`
	DownStickiness         *Stickiness    `json:"downStickiness,omitempty"`
	Decay                  *float64       `json:"decay,omitempty"`
	ScaleToZero            *bool          `json:"scaleToZero,omitempty"`
	IdleTimeout            *Duration      `json:"idleTimeout,omitempty"`
	KeepAlive              *KeepAliveMode `json:"keepAlive,omitempty"`
	KeepAlivePercentile    *float64       `json:"keepAlivePercentile,omitempty"`
	PrewarmPercentile      *float64       `json:"prewarmPercentile,omitempty"`
	TargetUtilization      *float64       `json:"targetUtilization,omitempty"`
	Tolerance              *float64       `json:"tolerance,omitempty"`
	ScaleDownStabilization *Duration      `json:"scaleDownStabilization,omitempty"`
	ScaleDownFlapWindow    *Duration      `json:"scaleDownFlapWindow,omitempty"`
	MaxScaleUpRate         *float64       `json:"maxScaleUpRate,omitempty"`
	MaxScaleDownRate       *float64       `json:"maxScaleDownRate,omitempty"`
}

// Apply returns p with the patch's set fields replaced. It does not
// validate: the combination decides validity, not the patch alone.
func (pp PolicyPatch) Apply(p Policy) Policy {
	set := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	if pp.Mode != nil {
		p.Mode = *pp.Mode
	}
	if pp.MinInstances != nil {
		p.MinInstances = *pp.MinInstances
	}
	if pp.MaxInstances != nil {
		p.MaxInstances = *pp.MaxInstances
	}
	set(&p.UpThreshold, pp.UpThreshold)
	set(&p.DownThreshold, pp.DownThreshold)
	set(&p.UpFactor, pp.UpFactor)
	set(&p.DownFactor, pp.DownFactor)
	if pp.UpStickiness != nil {
		p.UpStickiness = *pp.UpStickiness
	}
	if pp.DownStickiness != nil {
		p.DownStickiness = *pp.DownStickiness
	}
	set(&p.Decay, pp.Decay)
	if pp.ScaleToZero != nil {
		p.ScaleToZero = *pp.ScaleToZero
	}
	if pp.IdleTimeout != nil {
		p.IdleTimeout = time.Duration(*pp.IdleTimeout)
	}
	if pp.KeepAlive != nil {
		p.KeepAlive = *pp.KeepAlive
	}
	set(&p.KeepAlivePercentile, pp.KeepAlivePercentile)
	set(&p.PrewarmPercentile, pp.PrewarmPercentile)
	set(&p.TargetUtilization, pp.TargetUtilization)
	set(&p.Tolerance, pp.Tolerance)
	if pp.ScaleDownStabilization != nil {
		p.ScaleDownStabilization = time.Duration(*pp.ScaleDownStabilization)
	}
	if pp.ScaleDownFlapWindow != nil {
		p.ScaleDownFlapWindow = time.Duration(*pp.ScaleDownFlapWindow)
	}
	set(&p.MaxScaleUpRate, pp.MaxScaleUpRate)
	set(&p.MaxScaleDownRate, pp.MaxScaleDownRate)
	return p
}

// ScalingDetails is one direction of an NVCF AutoscalingConfiguration
// (RequestDeploymentConfiguration). Metric is carried for logs only: the
// policy measures worker utilization whatever it names.
type ScalingDetails struct {
	Metric     string
	Factor     float64
	Threshold  int32
	Stickiness Stickiness
}

// set reports whether NVCF filled this direction in; an all-zero message
// is how protobuf says "not configured".
func (s ScalingDetails) set() bool {
	return s.Factor != 0 || s.Threshold != 0 || s.Stickiness != Stickiness{}
}

// DeploymentConfig is the NVCF per-version autoscaling configuration for
// the version's GPU specification (the caller picks the entry of the
// response's map).
type DeploymentConfig struct {
	ScaleUp, ScaleDown ScalingDetails
}

// Apply returns p with the configured directions' threshold, factor and
// stickiness replaced.
func (c DeploymentConfig) Apply(p Policy) Policy {
	if c.ScaleUp.set() {
		p.UpThreshold, p.UpFactor, p.UpStickiness = float64(c.ScaleUp.Threshold), c.ScaleUp.Factor, c.ScaleUp.Stickiness
	}
	if c.ScaleDown.set() {
		p.DownThreshold, p.DownFactor, p.DownStickiness = float64(c.ScaleDown.Threshold), c.ScaleDown.Factor, c.ScaleDown.Stickiness
	}
	return p
}

// Resolve builds the policy of one function version from its layers,
// lowest first: defaults, the NVCF deployment config, the override for the
// function id, the override for the version id. Each layer is applied on
// top of the ones below and kept only if the result validates; otherwise it
// is skipped, so a bad override degrades to the level below it instead of
// stopping the version from scaling. The note says which layers were
// skipped and why ("" when none was).
func Resolve(defaults Policy, functionID, versionID string, byVersion, byFunction map[string]PolicyPatch, nvcf *DeploymentConfig) (Policy, string) {
	p := defaults
	var notes []string
	layer := func(name string, next Policy) {
		if err := next.Validate(); err != nil {
			notes = append(notes, fmt.Sprintf("%s ignored: %s", name, strings.ReplaceAll(err.Error(), "\n", "; ")))
			return
		}
		p = next
	}
	if nvcf != nil {
		layer("NVCF deployment config", nvcf.Apply(p))
	}
	if pp, ok := byFunction[functionID]; ok {
		layer("override for function "+functionID, pp.Apply(p))
	}
	if pp, ok := byVersion[versionID]; ok {
		layer("override for version "+versionID, pp.Apply(p))
	}
	return p, strings.Join(notes, "; ")
}

// ParseOverrides reads an override document:
//
//	{"functions": {"<function id>": {...}}, "versions": {"<version id>": {...}}}
//
// where each {...} is a PolicyPatch. Decoding is strict: a misspelt field
// would otherwise be silently ignored, and the error names the key and
// field. An empty document means no overrides.
func ParseOverrides(data []byte) (byFunction, byVersion map[string]PolicyPatch, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, nil
	}
	var doc struct {
		Functions map[string]json.RawMessage `json:"functions"`
		Versions  map[string]json.RawMessage `json:"versions"`
	}
	if err := strictDecode(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("policy overrides: %w", err)
	}
	if byFunction, err = decodePatches("functions", doc.Functions); err != nil {
		return nil, nil, err
	}
	if byVersion, err = decodePatches("versions", doc.Versions); err != nil {
		return nil, nil, err
	}
	return byFunction, byVersion, nil
}

func decodePatches(section string, raw map[string]json.RawMessage) (map[string]PolicyPatch, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	// Sorted so that the same bad document always reports the same key.
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]PolicyPatch, len(raw))
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("policy overrides: %s: empty id", section)
		}
		var pp PolicyPatch
		if err := strictDecode(raw[k], &pp); err != nil {
			return nil, fmt.Errorf("policy overrides: %s[%q]: %w", section, k, err)
		}
		if pp.Mode != nil && *pp.Mode != ModeNVCF && *pp.Mode != ModeTarget {
			return nil, fmt.Errorf("policy overrides: %s[%q]: mode must be %q or %q, got %q", section, k, ModeNVCF, ModeTarget, *pp.Mode)
		}
		if pp.KeepAlive != nil && *pp.KeepAlive != KeepAliveFixed && *pp.KeepAlive != KeepAliveLearned {
			return nil, fmt.Errorf("policy overrides: %s[%q]: keepAlive must be %q or %q, got %q", section, k, KeepAliveFixed, KeepAliveLearned, *pp.KeepAlive)
		}
		out[k] = pp
	}
	return out, nil
}

// strictDecode rejects unknown fields and anything after the value.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
