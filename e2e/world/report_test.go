package world

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The demo's table reads the scale function's decision lines: a version
// the NVCF API clamped must read "wants N, clamped", an unclamped one (or a
// line from before clamped_to existed) just its reason and action.
func TestDecisionSummaryShowsTheNVCFClamp(t *testing.T) {
	log := filepath.Join(t.TempDir(), "scale.log")
	require.NoError(t, os.WriteFile(log, []byte(
		`{"msg":"decision","function_version_id":"a","desired":25,"reason":"scale_up","action":"unchanged","clamped_to":20}`+"\n"+
			`{"msg":"decision","function_version_id":"b","desired":3,"reason":"scale_up","action":"written","clamped_to":-1}`+"\n"+
			`{"msg":"decision","function_version_id":"c","desired":3,"reason":"hold_in_band","action":"unchanged"}`+"\n"), 0o644))
	ds := Decisions(log)
	require.Len(t, ds, 3)
	require.Equal(t, "scale_up (unchanged; wants 25, clamped by NVCF to 20)", ds[0].Summary())
	require.Equal(t, "scale_up (written)", ds[1].Summary())
	require.Equal(t, "hold_in_band (unchanged)", ds[2].Summary())
}
