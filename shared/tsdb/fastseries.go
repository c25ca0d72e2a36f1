package tsdb

import (
	"unicode/utf8"
)

// fastSeries parses one matrix or vector element, b, when it has exactly
// the shape Prometheus and VictoriaMetrics send:
// {"metric":{"name":"value",...},"values":[[t,"v"],...]} (or
// "value":[t,"v"]), each member at most once, no spaces, no escapes, no
// control characters, valid UTF-8, every timestamp a JSON number. It
// declines (ok false) everything else, which then goes through
// encoding/json with the same result. Decoding the elements through
// encoding/json's reflection was two thirds of the scale function's CPU at
// 100,000 versions (15 of 23 CPU-s in the profile of a 100k run): a map, a
// slice and an Unmarshaler call per point, for answers that never vary in
// shape.
//
// b is an element as the splitter cut it, whose syntax nothing has checked
// (checking it first would read it twice again): fastSeries must take only
// valid JSON, so that a malformed element still reaches encoding/json and
// fails there.
func fastSeries(b []byte) (s apiSeries, ok bool) {
	p := seriesParser{b: b}
	if !p.take('{') {
		return apiSeries{}, false
	}
	if p.take('}') {
		return s, p.i == len(b)
	}
	var seen [3]bool // metric, values, value
	for {
		key, ok := p.str()
		if !ok || !p.take(':') {
			return apiSeries{}, false
		}
		m := memberIndex(key)
		if m < 0 || seen[m] { // another member, a name in other case, or a repeat: the general way
			return apiSeries{}, false
		}
		seen[m] = true
		switch m {
		case 0:
			s.Metric, ok = p.labels()
		case 1:
			s.Values, ok = p.points()
		case 2:
			var pt point
			pt, ok = p.point()
			s.Value = &pt
		}
		if !ok {
			return apiSeries{}, false
		}
		if p.take(',') {
			continue
		}
		if !p.take('}') || p.i != len(b) {
			return apiSeries{}, false
		}
		return s, true
	}
}

// memberIndex numbers the members fastSeries reads, or is -1.
func memberIndex(k []byte) int {
	switch string(k) {
	case "metric":
		return 0
	case "values":
		return 1
	case "value":
		return 2
	}
	return -1
}

// seriesParser reads b from i on; every method reports false when b does
// not continue in the shape it reads.
type seriesParser struct {
	b []byte
	i int
}

func (p *seriesParser) take(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes and returns its contents (a part of
// b: the caller copies what it keeps). JSON allows no control character
// in a string; an escape is left to encoding/json, and so is invalid
// UTF-8, which it replaces (valid UTF-8 it keeps byte for byte). Strings
// are the only place fastSeries takes a byte outside ASCII.
func (p *seriesParser) str() ([]byte, bool) {
	if !p.take('"') {
		return nil, false
	}
	start, ascii := p.i, true
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			s := p.b[start : p.i-1]
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// labels reads {"name":"value",...}.
func (p *seriesParser) labels() (map[string]string, bool) {
	if !p.take('{') {
		return nil, false
	}
	m := make(map[string]string, 4)
	if p.take('}') {
		return m, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.take(':') {
			return nil, false
		}
		v, ok := p.str()
		if !ok {
			return nil, false
		}
		// A repeated name keeps the last value, as encoding/json does.
		m[labelName(k)] = string(v)
		if p.take(',') {
			continue
		}
		return m, p.take('}')
	}
}

// labelName is a label's name, without a new string for the names every
// series of the bucket's answers carries.
func labelName(k []byte) string {
	switch string(k) {
	case labelFunctionID:
		return labelFunctionID
	case labelFunctionVersion:
		return labelFunctionVersion
	case labelNcaID:
		return labelNcaID
	}
	return string(k)
}

// points reads [[t,"v"],...].
func (p *seriesParser) points() ([]point, bool) {
	if !p.take('[') {
		return nil, false
	}
	out := make([]point, 0, 8)
	if p.take(']') {
		return out, true
	}
	for {
		pt, ok := p.point()
		if !ok {
			return nil, false
		}
		out = append(out, pt)
		if p.take(',') {
			continue
		}
		return out, p.take(']')
	}
}

// point reads [t,"v"], t a JSON number: strconv.ParseFloat also takes
// "Inf", "0x1p3", "+1", ".5" or "01", which JSON does not, and which must
// fail in encoding/json as they did when the decoder checked the syntax.
func (p *seriesParser) point() (point, bool) {
	if !p.take('[') {
		return point{}, false
	}
	start := p.i
	if !p.number() {
		return point{}, false
	}
	ts := p.b[start:p.i]
	if !p.take(',') {
		return point{}, false
	}
	v, ok := p.str()
	if !ok || !p.take(']') {
		return point{}, false
	}
	smp, ok := parseSample(ts, v)
	return point{s: smp}, ok
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *seriesParser) number() bool {
	p.take('-')
	if !p.take('0') && !p.digits() {
		return false
	}
	if p.take('.') && !p.digits() {
		return false
	}
	if p.take('e') || p.take('E') {
		if !p.take('+') {
			p.take('-')
		}
		return p.digits()
	}
	return true
}

// digits reads one or more decimal digits.
func (p *seriesParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
