package sim

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The shipped scenarios must stay loadable: make demo depends on them.
func TestShippedScenariosParse(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		s, err := LoadScenario(f)
		require.NoError(t, err, f)
		_, err = s.Specs()
		require.NoError(t, err, f)
	}
}
