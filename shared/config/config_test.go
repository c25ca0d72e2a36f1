package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/tsdb"
)

// valid is the smallest environment every role accepts.
func valid() map[string]string {
	return map[string]string{
		"TSDB_URL":     "http://127.0.0.1:8428",
		"K_SINK":       "http://127.0.0.1:9999",
		"NVCF_API_URL": "http://127.0.0.1:9401",
	}
}

// setEnv makes the test's environment exactly env for the variables this
// package reads, so the machine's own environment cannot leak in.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k := strings.SplitN(kv, "=", 2)[0]
		if strings.HasPrefix(k, "CASSANDRA_") || strings.HasPrefix(k, "TSDB_") || strings.HasPrefix(k, "NVCF_") ||
			k == "K_SINK" || k == "BUCKETS" || k == "MAX_CLOCK_SKEW" || k == "BUCKET_DEADLINE" || k == "AUTOSCALER_ROLE" || k == "POLICY_MODE" ||
			strings.HasPrefix(k, "SCALE_") || strings.HasPrefix(k, "MAX_SCALE_") || strings.HasPrefix(k, "KEEP_ALIVE") || strings.HasPrefix(k, "PREWARM_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestDefaults(t *testing.T) {
	setEnv(t, valid())
	s, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, RoleAll, s.Role)
	require.Equal(t, 128, s.Buckets)
	require.Equal(t, []string{"127.0.0.1:9042"}, s.Hosts)
	require.Equal(t, "{'class': 'SimpleStrategy', 'replication_factor': 1}", s.Replication)
	require.Equal(t, "target", s.Scale.PolicyMode)
	require.Equal(t, "learned", s.Scale.KeepAlive)
	require.Equal(t, 99.0, s.Scale.KeepAlivePercentile)
	require.Equal(t, 5.0, s.Scale.PrewarmPercentile)
	require.Equal(t, 70.0, s.Scale.UpThreshold)
	require.Equal(t, 2*time.Minute, s.Scale.DownStabilization)
	require.Equal(t, 20*time.Minute, s.Scale.DownFlapWindow)
	// the bound a stock VictoriaMetrics is tested to accept
	require.Equal(t, tsdb.DefaultMaxSelectorBytes, s.MaxSelectorBytes)
	require.NotEmpty(t, s.NodeID)
}

// POLICY_MODE=nvcf alone is the reference: the guards it lacks default to
// off in that mode, its keep-alive to the fixed timeout, and each stays
// as the operator set it.
func TestNVCFModeAloneIsTheReference(t *testing.T) {
	env := valid()
	env["POLICY_MODE"] = "nvcf"
	setEnv(t, env)
	s, err := Load(nil)
	require.NoError(t, err)
	require.Zero(t, s.Scale.DownStabilization)
	require.Zero(t, s.Scale.DownFlapWindow)
	require.Zero(t, s.Scale.MaxScaleUpRate)
	require.Zero(t, s.Scale.MaxScaleDownRate)
	require.Equal(t, "fixed", s.Scale.KeepAlive)

	env["SCALE_DOWN_STABILIZATION"] = "5m"
	env["KEEP_ALIVE"] = "learned"
	env["SCALE_DOWN_FLAP_WINDOW"] = "10m"
	setEnv(t, env)
	// Load copies the cfg file into the environment: restore it afterwards.
	t.Setenv("MAX_SCALE_DOWN_RATE", "")
	os.Unsetenv("MAX_SCALE_DOWN_RATE")
	s, err = Load(map[string]string{"MAX_SCALE_DOWN_RATE": "2"})
	require.NoError(t, err)
	require.Equal(t, 5*time.Minute, s.Scale.DownStabilization)
	require.Equal(t, 2.0, s.Scale.MaxScaleDownRate, "set in the cfg file")
	require.Zero(t, s.Scale.MaxScaleUpRate)
	require.Equal(t, "learned", s.Scale.KeepAlive)
	require.Equal(t, 10*time.Minute, s.Scale.DownFlapWindow)
}

func TestCfgMapIsReadButEnvWins(t *testing.T) {
	env := valid()
	env["BUCKETS"] = "7"
	setEnv(t, env)
	s, err := Load(map[string]string{"BUCKETS": "9", "CASSANDRA_KEYSPACE": "from_cfg"})
	require.NoError(t, err)
	require.Equal(t, 7, s.Buckets)
	require.Equal(t, "from_cfg", s.Keyspace)
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	cases := []struct {
		name, key, value, want string
	}{
		{"bad duration", "CASSANDRA_TIMEOUT", "soon", "CASSANDRA_TIMEOUT"},
		{"negative buckets", "BUCKETS", "-1", "BUCKETS=-1"},
		{"not a number", "BUCKETS", "many", "BUCKETS"},
		{"missing tsdb", "TSDB_URL", "", "TSDB_URL is not set"},
		{"relative tsdb", "TSDB_URL", "victoria:8428", "TSDB_URL"},
		{"auth mode", "TSDB_AUTH", "basic", "TSDB_AUTH"},
		{"token without file", "TSDB_AUTH", "token", "TSDB_TOKEN_FILE"},
		{"env label", "TSDB_ENV_LABEL", "1bad", "TSDB_ENV_LABEL"},
		{"environment", "TSDB_ENVIRONMENT", "prod", "TSDB_ENVIRONMENT=\"prod\": want production or staging"},
		{"ignore env", "TSDB_IGNORE_ENV", "sometimes", "TSDB_IGNORE_ENV"},
		{"keyspace", "CASSANDRA_KEYSPACE", "Bad-Name", "CASSANDRA_KEYSPACE"},
		{"consistency", "CASSANDRA_CONSISTENCY", "SOME", "CASSANDRA_CONSISTENCY"},
		{"serial", "CASSANDRA_SERIAL_CONSISTENCY", "QUORUM", "CASSANDRA_SERIAL_CONSISTENCY"},
		{"role", "AUTOSCALER_ROLE", "leader", "AUTOSCALER_ROLE"},
		{"missing sink", "K_SINK", "", "K_SINK is not set"},
		{"lock ttl", "DISCOVERY_LOCK_TTL", "90s", "DISCOVERY_LOCK_TTL"},
		{"policy mode", "POLICY_MODE", "magic", "POLICY_MODE"},
		{"keep-alive mode", "KEEP_ALIVE", "smart", `KEEP_ALIVE="smart": want fixed or learned`},
		{"keep-alive percentile", "KEEP_ALIVE_PERCENTILE", "100", "PREWARM_PERCENTILE=5, KEEP_ALIVE_PERCENTILE=100: want 0 < prewarm < keep-alive < 100"},
		{"pre-warm percentile", "PREWARM_PERCENTILE", "0", "PREWARM_PERCENTILE=0, KEEP_ALIVE_PERCENTILE=99"},
		{"pre-warm above keep-alive", "PREWARM_PERCENTILE", "99", "PREWARM_PERCENTILE=99, KEEP_ALIVE_PERCENTILE=99"},
		{"pre-warm NaN", "PREWARM_PERCENTILE", "NaN", "PREWARM_PERCENTILE=NaN"},
		{"transport", "NVCF_TRANSPORT", "smtp", "NVCF_TRANSPORT"},
		{"nvcf url", "NVCF_API_URL", "", "NVCF_API_URL is not set"},
		{"nvcf timeout", "NVCF_TIMEOUT", "20s", "NVCF_TIMEOUT"},
		{"bounds", "MAX_INSTANCES", "-2", "MAX_INSTANCES"},
		{"password file", "CASSANDRA_PASSWORD_FILE", "/nonexistent/pw", "CASSANDRA_PASSWORD_FILE"},
		{"negative skew", "MAX_CLOCK_SKEW", "-1s", "MAX_CLOCK_SKEW=-1s"},
		{"skew of a period", "MAX_CLOCK_SKEW", "60s", "want less than DISCOVERY_PERIOD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := valid()
			env[c.key] = c.value
			setEnv(t, env)
			_, err := Load(nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

// Credentials in any URL setting are refused, pointing to the file setting
// that holds them instead, and no message repeats them, even for a URL that
// does not parse.
func TestCredentialsInURLsAreRefusedWithoutRepeatingThem(t *testing.T) {
	const pw = "PW-3b7f"
	for key, fix := range map[string]string{
		"TSDB_URL": "TSDB_TOKEN_FILE", "K_SINK": "Broker", "NVCF_API_URL": "NVCF_TOKEN_FILE",
		"NVCF_OAUTH_TOKEN_URL": "NVCF_OAUTH_CLIENT_SECRET_FILE",
	} {
		for _, raw := range []string{"https://user:" + pw + "@example.com/x", "http://" + pw + "@example.com", "http://u:" + pw + "@host:bad port/"} {
			env := valid()
			env[key] = raw
			env["NVCF_OAUTH_CLIENT_ID"] = "id"
			env["NVCF_OAUTH_CLIENT_SECRET_FILE"] = "/dev/null"
			setEnv(t, env)
			_, err := Load(nil)
			require.Error(t, err, "%s=%s", key, raw)
			require.Contains(t, err.Error(), key+"=")
			require.Contains(t, err.Error(), "carries credentials")
			require.Contains(t, err.Error(), fix)
			require.NotContains(t, err.Error(), pw)
		}
	}
	require.Equal(t, "http://"+Redacted+"@h:1/p?q=a@b", SafeURL("http://u:p@ss@h:1/p?q=a@b"), "the last @ of the authority, not of the query")
	require.Equal(t, "http://h:1/", SafeURL("http://h:1/"))
}

func TestScaleRoleNeedsABucketDeadline(t *testing.T) {
	setEnv(t, map[string]string{"TSDB_URL": "http://127.0.0.1:8428", "AUTOSCALER_ROLE": "scale", "NVCF_DRY_RUN": "true", "BUCKET_DEADLINE": "0s"})
	_, err := Load(nil)
	require.ErrorContains(t, err, "BUCKET_DEADLINE=0s")
}

func TestRoleLimitsWhatIsRequired(t *testing.T) {
	setEnv(t, map[string]string{"TSDB_URL": "http://127.0.0.1:8428", "AUTOSCALER_ROLE": "scale", "NVCF_DRY_RUN": "true"})
	_, err := Load(nil)
	require.NoError(t, err, "a scale-only process needs no K_SINK")

	setEnv(t, map[string]string{"TSDB_URL": "http://127.0.0.1:8428", "AUTOSCALER_ROLE": "discovery", "K_SINK": "http://127.0.0.1:1"})
	_, err = Load(nil)
	require.NoError(t, err, "a discovery-only process needs no NVCF API")
}

func TestSecretsAreReadFromFilesAndNeverPrinted(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte("s3cr3t-cassandra\n"), 0o600))
	env := valid()
	env["CASSANDRA_PASSWORD_FILE"] = pw
	env["CASSANDRA_USERNAME"] = "autoscaler"
	setEnv(t, env)
	s, err := Load(nil)
	require.NoError(t, err)
	require.Equal(t, "s3cr3t-cassandra", s.Password)
	require.NotContains(t, s.Common.String(), "s3cr3t")
	require.Contains(t, s.Common.String(), Redacted)
}

// TSDB_IGNORE_ENV wins over TSDB_ENVIRONMENT: self-hosted series carry no
// environment labels, and filtering on one would find nothing.
func TestEnvironmentFilter(t *testing.T) {
	for _, c := range []struct{ env, ignore, want string }{
		{"", "", ""},
		{"staging", "false", "staging"},
		{"", "false", "production"},
		{"staging", "true", ""},
	} {
		env := valid()
		if c.env != "" {
			env["TSDB_ENVIRONMENT"] = c.env
		}
		if c.ignore != "" {
			env["TSDB_IGNORE_ENV"] = c.ignore
		}
		setEnv(t, env)
		s, err := Load(nil)
		require.NoError(t, err)
		require.Equal(t, c.want, s.EnvFilter(), "%+v", c)
	}
}

// Values given to one load are not left in the process environment to
// override the next load's (func-go calls Load once, tests and the policy
// benchmark many times).
func TestLoadLeavesNothingBehind(t *testing.T) {
	for _, k := range []string{"AUTOSCALER_ROLE", "TSDB_URL", "NVCF_DRY_RUN", "TARGET_UTILIZATION", "POLICY_MODE"} {
		t.Setenv(k, "") // restored after the test
		require.NoError(t, os.Unsetenv(k))
	}
	base := map[string]string{"AUTOSCALER_ROLE": "scale", "TSDB_URL": "http://127.0.0.1:1", "NVCF_DRY_RUN": "true", "POLICY_MODE": "target"}
	with := func(target string) map[string]string {
		m := map[string]string{"TARGET_UTILIZATION": target}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	first, err := Load(with("60"))
	require.NoError(t, err)
	second, err := Load(with("75"))
	require.NoError(t, err)
	require.Equal(t, 60.0, first.Scale.TargetUtilization)
	require.Equal(t, 75.0, second.Scale.TargetUtilization, "the second load's own value, not the first's")
	for k := range with("0") {
		_, set := os.LookupEnv(k)
		require.False(t, set, "%s left in the environment", k)
	}
	// The environment still wins over cfg.
	t.Setenv("TARGET_UTILIZATION", "50")
	third, err := Load(with("75"))
	require.NoError(t, err)
	require.Equal(t, 50.0, third.Scale.TargetUtilization)
}
