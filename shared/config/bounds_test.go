package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every numeric rule is checked on both sides of its bound: the value at
// the bound is accepted and the nearest value past it is refused with a
// message naming the variable, so a bound moved by one (`<` for `<=`, a
// unit dropped from a constant) fails here. Each case looks only for its
// own rule's message: other rules may complain about the same value.
func TestEveryBoundIsExact(t *testing.T) {
	type env = map[string]string
	cases := []struct {
		name    string
		set     env
		message string // the rule's message, as it starts
		refused bool
	}{
		{"sampler 0", env{"OTEL_TRACES_SAMPLER_ARG": "0"}, "OTEL_TRACES_SAMPLER_ARG=", false},
		{"sampler 1", env{"OTEL_TRACES_SAMPLER_ARG": "1"}, "OTEL_TRACES_SAMPLER_ARG=", false},
		{"sampler below 0", env{"OTEL_TRACES_SAMPLER_ARG": "-0.001"}, "OTEL_TRACES_SAMPLER_ARG=-0.001: want a fraction", true},
		{"sampler above 1", env{"OTEL_TRACES_SAMPLER_ARG": "1.001"}, "OTEL_TRACES_SAMPLER_ARG=1.001: want a fraction", true},
		{"skew 0", env{"MAX_CLOCK_SKEW": "0s"}, "MAX_CLOCK_SKEW=", false},
		{"skew below 0", env{"MAX_CLOCK_SKEW": "-1ns"}, "MAX_CLOCK_SKEW=-1ns: want a duration >= 0", true},
		{"skew just under the period", env{"MAX_CLOCK_SKEW": "59999ms"}, "MAX_CLOCK_SKEW=", false},
		{"event bytes 1024", env{"MAX_EVENT_BYTES": "1024"}, "MAX_EVENT_BYTES=", false},
		{"event bytes under 1024", env{"MAX_EVENT_BYTES": "1023"}, "MAX_EVENT_BYTES=1023: want at least 1024 bytes", true},

		{"cql timeout 1ms", env{"CASSANDRA_TIMEOUT": "1ms"}, "CASSANDRA_TIMEOUT=", false},
		{"cql timeout 0", env{"CASSANDRA_TIMEOUT": "0s"}, "CASSANDRA_TIMEOUT=0s: want a positive duration", true},
		{"page size 1", env{"CASSANDRA_PAGE_SIZE": "1"}, "CASSANDRA_PAGE_SIZE=", false},
		{"page size 0", env{"CASSANDRA_PAGE_SIZE": "0"}, "CASSANDRA_PAGE_SIZE=0: want an integer >= 1", true},
		{"replication factor 1", env{"CASSANDRA_REPLICATION_FACTOR": "1"}, "CASSANDRA_REPLICATION_FACTOR=", false},
		{"replication factor 0", env{"CASSANDRA_REPLICATION_FACTOR": "0"}, "CASSANDRA_REPLICATION_FACTOR=0: want an integer >= 1", true},
		{"selector bytes 1", env{"TSDB_MAX_SELECTOR_BYTES": "1"}, "TSDB_MAX_SELECTOR_BYTES=", false},
		{"selector bytes 0", env{"TSDB_MAX_SELECTOR_BYTES": "0"}, "TSDB_MAX_SELECTOR_BYTES=0: want a positive number", true},
		{"tsdb timeout 1ms", env{"TSDB_TIMEOUT": "1ms"}, "TSDB_TIMEOUT=", false},
		{"tsdb timeout 0", env{"TSDB_TIMEOUT": "0s"}, "TSDB_TIMEOUT=0s: want a positive duration", true},
		{"https tsdb", env{"TSDB_URL": "https://vm.example:8428/select/0/prometheus"}, "TSDB_URL=", false},
		{"tsdb without host", env{"TSDB_URL": "http:///select"}, `TSDB_URL="http:///select": want an absolute http(s) URL`, true},
		{"tsdb not http", env{"TSDB_URL": "ftp://vm.example"}, `TSDB_URL="ftp://vm.example": want an absolute http(s) URL`, true},

		{"period 1s", env{"DISCOVERY_PERIOD": "1s"}, "DISCOVERY_PERIOD=", false},
		{"period under 1s", env{"DISCOVERY_PERIOD": "999ms"}, "DISCOVERY_PERIOD=999ms: want at least 1s", true},
		{"lock ttl 1s", env{"DISCOVERY_LOCK_TTL": "1s"}, "DISCOVERY_LOCK_TTL=", false},
		{"lock ttl under 1s", env{"DISCOVERY_LOCK_TTL": "999ms"}, "DISCOVERY_LOCK_TTL=999ms: want at least 1s", true},
		{"lock ttl under the period", env{"DISCOVERY_LOCK_TTL": "59999ms"}, "DISCOVERY_LOCK_TTL=", false},
		{"lock ttl of a period", env{"DISCOVERY_LOCK_TTL": "1m0s"}, "DISCOVERY_LOCK_TTL=1m0s: want at least 1s and shorter", true},
		{"discovery lookback 10s", env{"DISCOVERY_LOOKBACK": "10s"}, "DISCOVERY_LOOKBACK=", false},
		{"discovery lookback under 10s", env{"DISCOVERY_LOOKBACK": "9.999s"}, "DISCOVERY_LOOKBACK=9.999s: want at least 10s", true},
		{"row ttl of a period", env{"AUTOSCALER_ROLE": "discovery", "ACTIVE_ROW_TTL": "60s"}, "ACTIVE_ROW_TTL=", false},
		{"row ttl under a period", env{"AUTOSCALER_ROLE": "discovery", "ACTIVE_ROW_TTL": "59.999s"}, "ACTIVE_ROW_TTL=59.999s: want at least DISCOVERY_PERIOD", true},
		{"send concurrency 1", env{"SEND_CONCURRENCY": "1"}, "SEND_CONCURRENCY=", false},
		{"send concurrency 0", env{"SEND_CONCURRENCY": "0"}, "SEND_CONCURRENCY=0: want an integer >= 1", true},
		{"send attempts 1", env{"SEND_ATTEMPTS": "1"}, "SEND_ATTEMPTS=", false},
		{"send attempts 0", env{"SEND_ATTEMPTS": "0"}, "SEND_ATTEMPTS=0: want an integer >= 1", true},
		{"deadline 1ms", env{"BUCKET_DEADLINE": "1ms"}, "BUCKET_DEADLINE=", false},
		{"deadline 0", env{"BUCKET_DEADLINE": "0s"}, "BUCKET_DEADLINE=0s: want a positive duration", true},
		{"deadline of a period", env{"BUCKET_DEADLINE": "1m0s"}, "BUCKET_DEADLINE=", false},
		{"deadline past the period", env{"BUCKET_DEADLINE": "1m0.001s"}, "BUCKET_DEADLINE=1m0.001s: want a positive duration no longer", true},

		{"scale concurrency 1", env{"SCALE_CONCURRENCY": "1"}, "SCALE_CONCURRENCY=", false},
		{"scale concurrency 0", env{"SCALE_CONCURRENCY": "0"}, "SCALE_CONCURRENCY=0: want an integer >= 1", true},
		{"function lock 2s", env{"FUNCTION_LOCK_TTL": "2s", "NVCF_TIMEOUT": "1s"}, "FUNCTION_LOCK_TTL=", false},
		{"function lock under 2s", env{"FUNCTION_LOCK_TTL": "1.999s", "NVCF_TIMEOUT": "1s"}, "FUNCTION_LOCK_TTL=1.999s: want at least 2s", true},
		{"state ttl 1h", env{"STATE_TTL": "1h"}, "STATE_TTL=", false},
		{"state ttl under 1h", env{"STATE_TTL": "59m59s"}, "STATE_TTL=59m59s: want at least 1h", true},
		{"scale row ttl 10s", env{"AUTOSCALER_ROLE": "scale", "ACTIVE_ROW_TTL": "10s", "SCALE_TO_ZERO_IDLE_TIMEOUT": "10s"}, "ACTIVE_ROW_TTL=", false},
		{"scale row ttl under 10s", env{"AUTOSCALER_ROLE": "scale", "ACTIVE_ROW_TTL": "9.999s"}, "ACTIVE_ROW_TTL=9.999s: want at least 10s", true},
		{"step 1s", env{"UTILIZATION_STEP": "1s"}, "UTILIZATION_STEP=", false},
		{"step under 1s", env{"UTILIZATION_STEP": "999ms"}, "UTILIZATION_STEP=999ms", true},
		{"window of half a step", env{"UTILIZATION_WINDOW": "30s"}, "UTILIZATION_STEP=", false},
		{"window under half a step", env{"UTILIZATION_WINDOW": "29.999s"}, "UTILIZATION_STEP=1m0s, UTILIZATION_WINDOW=29.999s", true},
		{"lookback of a step", env{"UTILIZATION_LOOKBACK": "60s"}, "UTILIZATION_STEP=", false},
		{"lookback under a step", env{"UTILIZATION_LOOKBACK": "59.999s"}, "UTILIZATION_LOOKBACK=59.999s", true},

		{"oauth complete", env{"NVCF_OAUTH_TOKEN_URL": "https://auth.example/token", "NVCF_OAUTH_CLIENT_ID": "id", "NVCF_OAUTH_CLIENT_SECRET_FILE": "/run/secret"}, "NVCF_OAUTH_TOKEN_URL needs", false},
		{"oauth without id", env{"NVCF_OAUTH_TOKEN_URL": "https://auth.example/token", "NVCF_OAUTH_CLIENT_SECRET_FILE": "/run/secret"}, "NVCF_OAUTH_TOKEN_URL needs", true},
		{"oauth without secret", env{"NVCF_OAUTH_TOKEN_URL": "https://auth.example/token", "NVCF_OAUTH_CLIENT_ID": "id"}, "NVCF_OAUTH_TOKEN_URL needs", true},
		{"token file alone", env{"NVCF_TOKEN_FILE": "/run/token"}, "are exclusive", false},
		{"oauth and token file", env{"NVCF_OAUTH_TOKEN_URL": "https://auth.example/token", "NVCF_OAUTH_CLIENT_ID": "id", "NVCF_OAUTH_CLIENT_SECRET_FILE": "/run/secret", "NVCF_TOKEN_FILE": "/run/token"}, "NVCF_OAUTH_TOKEN_URL and NVCF_TOKEN_FILE are exclusive", true},
		{"nvcf timeout 1ms", env{"NVCF_TIMEOUT": "1ms"}, "NVCF_TIMEOUT=", false},
		{"nvcf timeout 0", env{"NVCF_TIMEOUT": "0s"}, "NVCF_TIMEOUT=0s: want a positive duration", true},
		{"nvcf timeout under the lock", env{"NVCF_TIMEOUT": "14.999s"}, "NVCF_TIMEOUT=", false},
		{"nvcf timeout of the lock", env{"NVCF_TIMEOUT": "15s"}, "NVCF_TIMEOUT=15s: want a positive duration shorter", true},
		{"nvcf rate small", env{"NVCF_RATE": "0.001"}, "NVCF_RATE=", false},
		{"nvcf rate 0", env{"NVCF_RATE": "0"}, "NVCF_RATE=0, NVCF_BURST=5000: want a positive rate", true},
		{"nvcf burst 1", env{"NVCF_BURST": "1"}, "NVCF_RATE=", false},
		{"nvcf burst 0", env{"NVCF_BURST": "0"}, "NVCF_RATE=2000, NVCF_BURST=0: want a positive rate", true},
		{"nvcf attempts 1", env{"NVCF_MAX_ATTEMPTS": "1"}, "NVCF_MAX_ATTEMPTS=", false},
		{"nvcf attempts 0", env{"NVCF_MAX_ATTEMPTS": "0"}, "NVCF_MAX_ATTEMPTS=0: want an integer >= 1", true},
		{"min 0", env{"MIN_INSTANCES": "0"}, "MIN_INSTANCES=", false},
		{"min below 0", env{"MIN_INSTANCES": "-1"}, "MIN_INSTANCES=-1, MAX_INSTANCES=0", true},
		{"max unbounded over min", env{"MIN_INSTANCES": "5", "MAX_INSTANCES": "0"}, "MIN_INSTANCES=", false},
		{"max equal to min", env{"MIN_INSTANCES": "5", "MAX_INSTANCES": "5"}, "MIN_INSTANCES=", false},
		{"max under min", env{"MIN_INSTANCES": "5", "MAX_INSTANCES": "4"}, "MIN_INSTANCES=5, MAX_INSTANCES=4", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := valid()
			for k, v := range c.set {
				e[k] = v
			}
			setEnv(t, e)
			_, err := Load(nil)
			var msg string
			if err != nil {
				msg = err.Error()
			}
			if c.refused {
				require.Contains(t, msg, c.message)
			} else {
				for _, line := range strings.Split(msg, "\n") {
					require.False(t, strings.HasPrefix(line, c.message), "refused: %s", line)
				}
			}
		})
	}
}
