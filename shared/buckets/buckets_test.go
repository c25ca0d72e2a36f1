package buckets

import (
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRangesTileTheRing(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 128, 1000, MaxCount} {
		rs := All(n)
		require.Equal(t, int64(math.MinInt64), rs[0].Start, "n=%d", n)
		require.Equal(t, int64(math.MaxInt64), rs[n-1].End, "n=%d", n)
		for i, r := range rs {
			require.LessOrEqual(t, r.Start, r.End, "n=%d i=%d", n, i)
			require.Equal(t, i, Of(r.Start, n), "start of %v", r)
			require.Equal(t, i, Of(r.End, n), "end of %v", r)
			if i > 0 {
				require.Equal(t, rs[i-1].End+1, r.Start, "gap or overlap before %v", r)
			}
		}
	}
}

func TestOfAgreesWithRanges(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, n := range []int{1, 7, 128, 999} {
		rs := All(n)
		for k := 0; k < 20000; k++ {
			tok := int64(rng.Uint64())
			b := Of(tok, n)
			require.True(t, rs[b].Start <= tok && tok <= rs[b].End, "token %d not in %v", tok, rs[b])
		}
	}
}

func TestValidate(t *testing.T) {
	require.Error(t, Validate(0))
	require.Error(t, Validate(-3))
	require.Error(t, Validate(MaxCount+1))
	require.NoError(t, Validate(128))
}

// The empty key hashes to 0 (fmix64(0) == 0); real tokens are checked
// against Cassandra's own token() in shared/store's integration tests.
func TestMurmur3EmptyKey(t *testing.T) {
	require.Equal(t, int64(0), murmur3Token(nil))
}

func BenchmarkToken(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Token("3fa85f64-5717-4562-b3fc-2c963f66afa6", "0b7e4f9c-1a2b-4c3d-9e8f-aabbccddeeff")
	}
}
