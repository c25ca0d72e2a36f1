package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const overridesDoc = `{
  "functions": {
    "fn-a": {"mode": "target", "targetUtilization": 50, "minInstances": 1, "maxInstances": 8,
             "idleTimeout": "10m", "scaleDownStabilization": 120, "scaleDownFlapWindow": "15m",
             "upStickiness": {"size": "5m", "threshold": "3m"}},
    "fn-b": {"scaleToZero": false}
  },
  "versions": {
    "ver-1": {"maxInstances": 4, "maxScaleUpRate": 3}
  }
}`

func TestParseOverrides(t *testing.T) {
	byFunction, byVersion, err := ParseOverrides([]byte(overridesDoc))
	require.NoError(t, err)
	require.Len(t, byFunction, 2)
	require.Len(t, byVersion, 1)

	p := byFunction["fn-a"].Apply(Defaults())
	require.Equal(t, ModeTarget, p.Mode)
	require.Equal(t, 50.0, p.TargetUtilization)
	require.Equal(t, 1, p.MinInstances)
	require.Equal(t, 8, p.MaxInstances)
	require.Equal(t, 10*time.Minute, p.IdleTimeout)
	require.Equal(t, 2*time.Minute, p.ScaleDownStabilization, "a number is seconds")
	require.Equal(t, 15*time.Minute, p.ScaleDownFlapWindow)
	require.Equal(t, Stickiness{Size: 5 * time.Minute, Threshold: 3 * time.Minute}, p.UpStickiness)
	require.Equal(t, 70.0, p.UpThreshold, "unset fields are left alone")
	require.False(t, byFunction["fn-b"].Apply(Defaults()).ScaleToZero)
	require.Equal(t, 4, *byVersion["ver-1"].MaxInstances)
}

func TestParseOverridesEmpty(t *testing.T) {
	for _, doc := range []string{"", "  \n", "{}", `{"functions": {}}`} {
		f, v, err := ParseOverrides([]byte(doc))
		require.NoError(t, err, doc)
		require.Empty(t, f)
		require.Empty(t, v)
	}
}

func TestParseOverridesIsStrict(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"misspelt field", `{"functions": {"fn-1": {"upTreshold": 80}}}`, []string{`functions["fn-1"]`, `"upTreshold"`}},
		{"misspelt version field", `{"versions": {"v-9": {"maxInstance": 3}}}`, []string{`versions["v-9"]`, `"maxInstance"`}},
		{"unknown section", `{"function": {}}`, []string{`"function"`}},
		{"unknown stickiness field", `{"functions": {"f": {"downStickiness": {"size": "5m", "treshold": "1m"}}}}`, []string{`functions["f"]`, `"treshold"`}},
		{"bad duration", `{"functions": {"f": {"idleTimeout": "ten minutes"}}}`, []string{`functions["f"]`, "ten minutes"}},
		{"bad mode", `{"versions": {"v": {"mode": "magic"}}}`, []string{`versions["v"]`, "magic"}},
		{"wrong type", `{"functions": {"f": {"minInstances": "two"}}}`, []string{`functions["f"]`, "minInstances"}},
		{"empty id", `{"functions": {"": {}}}`, []string{"empty id"}},
		{"trailing data", `{} {}`, []string{"after the JSON value"}},
		{"not an object", `[]`, []string{"policy overrides"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseOverrides([]byte(c.doc))
			require.Error(t, err)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestPatchRoundTrips(t *testing.T) {
	byFunction, _, err := ParseOverrides([]byte(overridesDoc))
	require.NoError(t, err)
	b, err := json.Marshal(byFunction["fn-a"])
	require.NoError(t, err)
	var back PolicyPatch
	require.NoError(t, strictDecode(b, &back))
	require.Equal(t, byFunction["fn-a"].Apply(Defaults()), back.Apply(Defaults()))
}

func TestResolvePrecedence(t *testing.T) {
	byFunction, byVersion, err := ParseOverrides([]byte(`{
	  "functions": {"fn": {"upThreshold": 85, "maxInstances": 10, "minInstances": 2}},
	  "versions":  {"ver": {"maxInstances": 6}}
	}`))
	require.NoError(t, err)
	cfg := &DeploymentConfig{
		ScaleUp:   ScalingDetails{Metric: "utilization", Factor: 1.5, Threshold: 80, Stickiness: Stickiness{Size: 3 * time.Minute, Threshold: 2 * time.Minute}},
		ScaleDown: ScalingDetails{Metric: "utilization", Factor: 0.5, Threshold: 20},
	}

	p, note := Resolve(Defaults(), "fn", "ver", byVersion, byFunction, cfg)
	require.Empty(t, note)
	require.Equal(t, 85.0, p.UpThreshold, "function beats NVCF")
	require.Equal(t, 1.5, p.UpFactor, "NVCF beats defaults")
	require.Equal(t, 20.0, p.DownThreshold)
	require.Equal(t, 0.5, p.DownFactor)
	require.Equal(t, 2*time.Minute, p.UpStickiness.Threshold)
	require.Equal(t, 6, p.MaxInstances, "version beats function")
	require.Equal(t, 2, p.MinInstances)

	p, note = Resolve(Defaults(), "other", "other", byVersion, byFunction, nil)
	require.Empty(t, note)
	require.Equal(t, Defaults(), p)

	p, _ = Resolve(Defaults(), "other", "ver", byVersion, byFunction, nil)
	require.Equal(t, 6, p.MaxInstances, "a version override needs no function override")
}

func TestResolveFallsBackPastInvalidLayers(t *testing.T) {
	byFunction, byVersion, err := ParseOverrides([]byte(`{
	  "functions": {"fn": {"maxInstances": 10, "minInstances": 3}},
	  "versions":  {"ver": {"maxInstances": 2}, "bad": {"upFactor": 0.9}}
	}`))
	require.NoError(t, err)

	// Max 2 is below the function's min 3: the version layer is dropped.
	p, note := Resolve(Defaults(), "fn", "ver", byVersion, byFunction, nil)
	require.Equal(t, 10, p.MaxInstances)
	require.Equal(t, 3, p.MinInstances)
	require.Contains(t, note, "override for version ver ignored")
	require.Contains(t, note, "maxInstances")

	p, note = Resolve(Defaults(), "fn", "bad", byVersion, byFunction, nil)
	require.Equal(t, 1.2, p.UpFactor)
	require.Contains(t, note, "upFactor")

	// The reference's own rule: an NVCF config with up <= down is invalid.
	cfg := &DeploymentConfig{
		ScaleUp:   ScalingDetails{Factor: 1.5, Threshold: 20},
		ScaleDown: ScalingDetails{Factor: 0.5, Threshold: 40},
	}
	p, note = Resolve(Defaults(), "x", "y", nil, nil, cfg)
	require.Equal(t, Defaults(), p)
	require.Contains(t, note, "NVCF deployment config ignored")
	require.Contains(t, note, "upThreshold")
	require.NotContains(t, note, "\n")

	// The function layer still applies on top of the defaults.
	p, note = Resolve(Defaults(), "fn", "y", nil, byFunction, cfg)
	require.Equal(t, 10, p.MaxInstances)
	require.Contains(t, note, "NVCF deployment config ignored")
}

func TestDeploymentConfigLeavesUnsetDirections(t *testing.T) {
	cfg := DeploymentConfig{ScaleUp: ScalingDetails{Factor: 2, Threshold: 60}}
	p := cfg.Apply(Defaults())
	require.Equal(t, 60.0, p.UpThreshold)
	require.Equal(t, 2.0, p.UpFactor)
	require.Equal(t, 30.0, p.DownThreshold)
	require.Equal(t, 0.8, p.DownFactor)
	require.NoError(t, p.Validate())
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	require.NoError(t, json.Unmarshal([]byte(`"1m30s"`), &d))
	require.Equal(t, 90*time.Second, time.Duration(d))
	require.NoError(t, json.Unmarshal([]byte(`1.5`), &d))
	require.Equal(t, 1500*time.Millisecond, time.Duration(d))
	require.Error(t, json.Unmarshal([]byte(`true`), &d))
	b, err := json.Marshal(Duration(90 * time.Second))
	require.NoError(t, err)
	require.Equal(t, `"1m30s"`, string(b))
}
