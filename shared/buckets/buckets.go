// Package buckets splits Cassandra's Murmur3 token ring into contiguous
// ranges. A bucket is the unit of work of one scale invocation: discovery
// sends one event per non-empty bucket, and the scale function reads that
// bucket's rows with a single token-range scan. Because buckets are token
// ranges rather than hash-mod sets, reading one never touches another
// bucket's partitions, and any bucket count covers the ring exactly once.
package buckets

import (
	"fmt"
	"math"
	"math/bits"
)

// Range is one bucket: the tokens Start..End, both inclusive.
type Range struct {
	Index int   // 0-based bucket number
	Count int   // how many buckets the ring is split into
	Start int64 // first token of the bucket
	End   int64 // last token of the bucket
}

func (r Range) String() string {
	return fmt.Sprintf("bucket %d/%d [%d, %d]", r.Index, r.Count, r.Start, r.End)
}

// MaxCount bounds the bucket count: far more buckets than this would make
// each event carry almost no work while multiplying per-bucket overhead.
const MaxCount = 1 << 16

// Validate reports whether n is a usable bucket count.
func Validate(n int) error {
	if n < 1 || n > MaxCount {
		return fmt.Errorf("bucket count %d out of range [1, %d]", n, MaxCount)
	}
	return nil
}

// offset maps a token onto [0, 2^64) so ring arithmetic is unsigned.
func offset(token int64) uint64 { return uint64(token) ^ (1 << 63) }

func token(off uint64) int64 { return int64(off ^ (1 << 63)) }

// start returns the first ring offset of bucket i: ceil(i * 2^64 / n). The
// ceiling (not the floor) is what makes Of(start(i)) == i for every n, so
// ranges and Of agree exactly and no token falls between two buckets.
func start(i, n int) uint64 {
	if i == 0 {
		return 0
	}
	q, r := bits.Div64(uint64(i), 0, uint64(n))
	if r > 0 {
		q++
	}
	return q
}

// For returns bucket i of n. It panics on arguments Validate would reject,
// because callers validate counts once at configuration time.
func For(i, n int) Range {
	if err := Validate(n); err != nil {
		panic(err)
	}
	if i < 0 || i >= n {
		panic(fmt.Sprintf("bucket index %d out of range [0, %d)", i, n))
	}
	end := uint64(math.MaxUint64)
	if i+1 < n {
		end = start(i+1, n) - 1
	}
	return Range{Index: i, Count: n, Start: token(start(i, n)), End: token(end)}
}

// All returns the n buckets in ring order.
func All(n int) []Range {
	out := make([]Range, n)
	for i := range out {
		out[i] = For(i, n)
	}
	return out
}

// Of returns the index of the bucket of n that holds token: floor(offset*n/2^64).
func Of(token int64, n int) int {
	hi, _ := bits.Mul64(offset(token), uint64(n))
	return int(hi)
}

// OfVersion returns the bucket of n holding a function version's partition.
func OfVersion(functionID, functionVersionID string, n int) int {
	return Of(Token(functionID, functionVersionID), n)
}
