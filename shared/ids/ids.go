// Package ids holds the one rule for what the autoscaler accepts as a
// function, function version or NCA id. It is a leaf package so that both
// the event parser (shared/events) and discovery's TSDB reader
// (shared/tsdb) can use it without the TSDB client linking the CloudEvents
// SDK.
package ids

// MaxLen is the longest id accepted, in bytes (every accepted byte is
// ASCII, so also in characters).
const MaxLen = 128

// Rule is what Valid accepts, in words, for the errors that refuse an id:
// what the sender must change it to.
const Rule = "1-128 characters of [A-Za-z0-9._:-], the first a letter or digit"

// Valid reports whether s is an acceptable function, version or NCA id:
// an ASCII letter or digit, then up to MaxLen-1 more of letters, digits,
// '.', '_', ':' and '-'. NVCF uses UUIDs; the looser form admits test ids
// while keeping out anything that could break a PromQL selector or a lock
// name. It accepts exactly what ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$ does
// (a fuzz test holds it to that), but is a byte loop over a table rather
// than that regexp: discovery checks three ids per series, and at 100,000
// versions the regexp was 23 % of discovery's CPU (about 0.5 CPU-s per
// cycle, on the path that delays every bucket).
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen || idByte[s[0]] != first {
		return false
	}
	for i := 1; i < len(s); i++ {
		if idByte[s[i]] == 0 {
			return false
		}
	}
	return true
}

// Classes of a byte in idByte: zero is not allowed at all.
const (
	first = 1 + iota // allowed anywhere: ASCII letter or digit
	rest             // allowed after the first byte only
)

// idByte maps each byte to its class. Bytes from 0x80 up are zero, which
// refuses every non-ASCII character (and invalid UTF-8) as the regexp does.
var idByte = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = first
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = first, first
	}
	for _, c := range "._:-" {
		t[c] = rest
	}
	return t
}()
