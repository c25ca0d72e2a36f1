package ids

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// reference is the regexp Valid replaced, kept as the definition Valid is
// held to: same language, byte for byte.
var reference = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// validCases are the edges of the rule. Each is also checked against the
// reference, so the table cannot drift from the regexp either.
var validCases = []struct {
	id   string
	want bool
}{
	{"a", true},
	{"A", true},
	{"0", true},
	{"3fa85f64-5717-4562-b3fc-2c963f66afa6", true},
	{"nca:1.2_x", true},
	{"a-", true}, // the rest may end in punctuation
	{"a.", true},
	{"a:", true},
	{"a_", true},
	{"z9.Z-0:_", true},
	{strings.Repeat("a", MaxLen), true},
	{"1" + strings.Repeat("-", MaxLen-1), true},

	{"", false},
	{strings.Repeat("a", MaxLen+1), false},
	{strings.Repeat("a", 4*MaxLen), false},
	{"-a", false},
	{".a", false},
	{":a", false},
	{"_a", false},
	{"-", false},
	{"a b", false},
	{"a/b", false},
	{`a"b`, false},
	{"a{b}", false},
	{"nca|.*", false},
	{"a\x00", false},
	{"\x00a", false},
	{"a\n", false}, // Go's $ does not match before a trailing newline
	{"\na", false},
	{"a\r", false},
	{"a\t", false},
	{"é", false},
	{"aé", false},      // non-ASCII letter after a good first byte
	{"a\u00a0", false}, // non-breaking space
	{"a\xff", false},   // invalid UTF-8
	{"a\xc3", false},   // truncated UTF-8
	{"a\u0661", false}, // Arabic-Indic digit one: a Unicode digit, not ASCII
	{"a\uff21", false}, // fullwidth A
}

func TestValid(t *testing.T) {
	for _, c := range validCases {
		require.Equal(t, c.want, reference.MatchString(c.id), "reference on %q", c.id)
		require.Equal(t, c.want, Valid(c.id), "%q", c.id)
	}
}

// Every single byte and every pair after a good first byte: the whole
// alphabet of both positions, not just the bytes someone thought of.
func TestValidEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for _, id := range []string{string([]byte{byte(c)}), "a" + string([]byte{byte(c)}), string([]byte{byte(c)}) + "a"} {
			require.Equal(t, reference.MatchString(id), Valid(id), "%q", id)
		}
	}
}

func FuzzValidMatchesRegexp(f *testing.F) {
	for _, c := range validCases {
		f.Add(c.id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := Valid(id), reference.MatchString(id); got != want {
			t.Fatalf("Valid(%q) = %v, regexp says %v", id, got, want)
		}
	})
}

// discoveryIDs is what discovery checks: mostly UUIDs (NVCF's ids), with
// one in twenty refused for a different reason each.
func discoveryIDs(n int) []string {
	bad := []string{"", "-" + uuid(1), uuid(2) + "|", uuid(3) + "\n", strings.Repeat("f", MaxLen+1), "é" + uuid(4)}
	out := make([]string, n)
	for i := range out {
		if i%20 == 19 {
			out[i] = bad[i/20%len(bad)]
		} else {
			out[i] = uuid(i)
		}
	}
	return out
}

func uuid(i int) string {
	return fmt.Sprintf("%08x-%04x-4%03x-b%03x-%012x", i*2654435761, i&0xffff, i&0xfff, (i>>3)&0xfff, i*40503)
}

// BenchmarkValidVsRegexp checks a realistic mix of ids with Valid and with
// the regexp it replaced, one after the other in each iteration (so both
// see the same load on a shared machine), and reports each one's time per
// id and their ratio: new/old below 1 is faster. ns/op is both passes over
// the mix. The CPU is in go test's header.
func BenchmarkValidVsRegexp(b *testing.B) {
	mix := discoveryIDs(1000)
	wantValid := 0
	for _, id := range mix {
		if reference.MatchString(id) {
			wantValid++
		}
	}
	count := func(check func(string) bool) int {
		n := 0
		for _, id := range mix {
			if check(id) {
				n++
			}
		}
		return n
	}
	var old, hand time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		nOld := count(reference.MatchString)
		mid := time.Now()
		nNew := count(Valid)
		old, hand = old+mid.Sub(start), hand+time.Since(mid)
		if nOld != wantValid || nNew != wantValid {
			b.Fatal(nOld, nNew, wantValid)
		}
	}
	b.StopTimer()
	ids := float64(b.N) * float64(len(mix))
	b.ReportMetric(float64(hand.Nanoseconds())/ids, "new-ns/id")
	b.ReportMetric(float64(old.Nanoseconds())/ids, "old-ns/id")
	b.ReportMetric(float64(hand)/float64(old), "new/old")
	b.ReportMetric(testing.AllocsPerRun(10, func() { count(Valid) }), "new-allocs/op")
}

// Rule names the same length Valid enforces.
func TestRuleNamesMaxLen(t *testing.T) {
	require.Contains(t, Rule, "1-"+strconv.Itoa(MaxLen)+" ")
}
