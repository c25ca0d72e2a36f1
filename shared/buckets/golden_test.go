package buckets

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tokens Cassandra 5.0.9's own token() returned for these partition keys
// (SELECT token(function_id, function_version_id) on the local stack, the
// way shared/store's TestTokenMatchesCassandra compares them), kept here so
// the hash is checked without a server: serialized keys of 7 to 40 bytes
// cover every tail length of a 16-byte block, one and two full blocks, and
// tail bytes >= 0x80, which Cassandra sign-extends.
var cassandraTokens = []struct {
	functionID, versionID string
	token                 int64
}{
	{"", "v", 4717279371839410030},
	{"a", "v", -4517452440641849011},
	{"é", "v", 5620639756565725782},
	{"éa", "v", 5863492064088897808},
	{"éé", "v", -3888876324394784810},
	{"ééa", "v", -1390182623042898686},
	{"ééé", "v", 4479378770648167009},
	{"éééa", "v", 8960601102802643208},
	{"éééé", "v", -9166849764253615297},
	{"ééééa", "v", 4681198643827012573},
	{"ééééé", "v", 4469625200003896437},
	{"éééééa", "v", -7003202952321213764},
	{"éééééé", "v", 3847732744117596350},
	{"ééééééa", "v", -8665212393821045685},
	{"ééééééé", "v", 1435242807627447646},
	{"éééééééa", "v", 7941051825112318876},
	{"éééééééé", "v", -4014729321114967170},
	{"ééééééééa", "v", -2483219892621095553},
	{"ééééééééé", "v", -4100005697053409435},
	{"éééééééééa", "v", 5595389145866549021},
	{"éééééééééé", "v", -5334345191077073706},
	{"ééééééééééa", "v", -5796566532272211376},
	{"ééééééééééé", "v", 6742626448327168375},
	{"éééééééééééa", "v", -8151756365335396172},
	{"éééééééééééé", "v", 3394631551379187142},
	{"ééééééééééééa", "v", -6753183273811751394},
	{"ééééééééééééé", "v", 2602367799569899737},
	{"éééééééééééééa", "v", 1450114256255416552},
	{"éééééééééééééé", "v", 1114195619576291682},
	{"ééééééééééééééa", "v", 9054924255751015379},
	{"ééééééééééééééé", "v", -8842300393842614539},
	{"éééééééééééééééa", "v", -3597100682929284482},
	{"éééééééééééééééé", "v", -2548460028500968672},
	{"ééééééééééééééééa", "v", -465873692795214083},
	{"3fa85f64-5717-4562-b3fc-2c963f66afa6", "0b7e4f9c-1a2b-4c3d-9e8f-aabbccddeeff", 2903447464756208345},
}

func TestTokenMatchesCassandraGolden(t *testing.T) {
	for _, c := range cassandraTokens {
		require.Equal(t, c.token, Token(c.functionID, c.versionID), "token of (%q, %q)", c.functionID, c.versionID)
	}
}

func TestForRejectsIndexesOutsideTheCount(t *testing.T) {
	for _, tc := range []struct{ i, n int }{{-1, 4}, {4, 4}, {5, 4}} {
		require.PanicsWithValue(t, fmt.Sprintf("bucket index %d out of range [0, %d)", tc.i, tc.n), func() { For(tc.i, tc.n) })
	}
	for _, n := range []int{0, MaxCount + 1} {
		require.PanicsWithError(t, fmt.Sprintf("bucket count %d out of range [1, %d]", n, MaxCount), func() { For(0, n) })
	}
	require.NotPanics(t, func() { For(3, 4) })
	require.NotPanics(t, func() { For(0, 1) })
}

func TestValidateBounds(t *testing.T) {
	require.NoError(t, Validate(1))
	require.NoError(t, Validate(MaxCount))
}

// Token runs for every discovered version every cycle (100k at the large
// end), so it builds the serialized key in one allocation.
func TestTokenAllocatesOnce(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		Token("3fa85f64-5717-4562-b3fc-2c963f66afa6", "0b7e4f9c-1a2b-4c3d-9e8f-aabbccddeeff")
	})
	require.LessOrEqual(t, allocs, 1.0)
}
