package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTracingIsOffByDefault(t *testing.T) {
	env := valid()
	env["AUTOSCALER_ROLE"] = "scale"
	env["OTEL_TRACES_EXPORTER"], env["OTEL_SERVICE_NAME"], env["OTEL_TRACES_SAMPLER_ARG"] = "", "", "1"
	setEnv(t, env)
	s, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, "none", s.TracesExporter)
	require.Equal(t, "nvcf-autoscaler-scale", s.ServiceName, "the service name defaults by role")
	require.Equal(t, 1.0, s.TracesSamplerArg)
	require.Contains(t, s.Common.String(), "traces=none")
}

func TestTracingSettings(t *testing.T) {
	env := valid()
	env["OTEL_TRACES_EXPORTER"], env["OTEL_SERVICE_NAME"], env["OTEL_TRACES_SAMPLER_ARG"] = "otlp", "my-autoscaler", "0.25"
	setEnv(t, env)
	s, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, "otlp", s.TracesExporter)
	require.Equal(t, "my-autoscaler", s.ServiceName)
	require.Equal(t, 0.25, s.TracesSamplerArg)
}

func TestBadTracingSettingsNameTheVariable(t *testing.T) {
	env := valid()
	env["OTEL_TRACES_EXPORTER"], env["OTEL_TRACES_SAMPLER_ARG"] = "jaeger", "1.5"
	setEnv(t, env)
	_, err := Load(nil)
	require.ErrorContains(t, err, `OTEL_TRACES_EXPORTER="jaeger": want none, otlp or stdout`)
	require.ErrorContains(t, err, "OTEL_TRACES_SAMPLER_ARG=1.5: want a fraction in [0, 1]")

	env["OTEL_TRACES_EXPORTER"], env["OTEL_TRACES_SAMPLER_ARG"] = "stdout", "half"
	setEnv(t, env)
	_, err = Load(nil)
	require.ErrorContains(t, err, `OTEL_TRACES_SAMPLER_ARG="half" is not a valid float64`)
}
