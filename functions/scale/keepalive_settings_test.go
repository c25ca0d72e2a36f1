package scale

import (
	"testing"

	"github.com/stretchr/testify/require"

	"function/shared/config"
	"function/shared/policy"
)

// The keep-alive settings reach the default policy, and a bad combination
// is reported under the variables the operator wrote.
func TestDefaultPolicyKeepAliveSettings(t *testing.T) {
	s, err := config.LoadScale(map[string]string{"KEEP_ALIVE": "learned", "KEEP_ALIVE_PERCENTILE": "95", "PREWARM_PERCENTILE": "10"})
	require.NoError(t, err)
	p, err := DefaultPolicy(s)
	require.NoError(t, err)
	require.Equal(t, policy.KeepAliveLearned, p.KeepAlive)
	require.Equal(t, 95.0, p.KeepAlivePercentile)
	require.Equal(t, 10.0, p.PrewarmPercentile)

	s.KeepAlive = "smart"
	_, err = DefaultPolicy(s)
	require.ErrorContains(t, err, `KEEP_ALIVE: must be "fixed" or "learned", got "smart"`)
	s.KeepAlive, s.PrewarmPercentile = "learned", 96
	_, err = DefaultPolicy(s)
	require.ErrorContains(t, err, "PREWARM_PERCENTILE: must be < keepAlivePercentile (95), got 96")
}
