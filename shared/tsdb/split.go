package tsdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// elementSplitter cuts a JSON array into its elements' bytes, reading each
// byte once. Decoding each element into a json.RawMessage scanned it twice
// inside encoding/json (once to find its end, once more to copy it) before
// fastSeries read it a third time: at 100,000 versions that was the
// largest part of the scale process's CPU that is ours (5.0 of 31.2 CPU-s
// in the decoder, 3.6 in fastSeries).
//
// It only finds where each element ends, by matching brackets outside
// strings; it does not check an element's syntax. The caller hands every
// element to something that does: fastSeries, which takes only valid JSON,
// or encoding/json. The separators between elements it checks itself, so a
// missing or trailing comma is still an error. Memory is bounded by the
// largest element plus one read, as with the decoder it replaces.
type elementSplitter struct {
	src  io.Reader
	buf  []byte
	r, w int   // buf[r:w] has been read from src and not yet handed out
	err  error // what src returned once it had no more
	n    int   // elements handed out
}

// splitterReadSize is the least the splitter asks src for at a time; an
// answer's elements are a few hundred bytes.
const splitterReadSize = 32 << 10

// newElementSplitter reads the elements of the array whose opening bracket
// src has just passed.
func newElementSplitter(src io.Reader) *elementSplitter {
	return &elementSplitter{src: src, buf: make([]byte, splitterReadSize)}
}

// next returns the next element's bytes, which stay valid only until the
// following call, or ok false once it has read the closing bracket.
func (s *elementSplitter) next() (elem []byte, ok bool, err error) {
	c, err := s.peek()
	if err != nil {
		return nil, false, err
	}
	switch {
	case c == ']':
		s.r++
		return nil, false, nil
	case s.n > 0 && c != ',':
		return nil, false, fmt.Errorf("invalid character %q after array element", c)
	case s.n > 0:
		s.r++
		if c, err = s.peek(); err != nil {
			return nil, false, err
		}
		if c == ']' { // the element a comma promised
			return nil, false, errors.New("invalid character ']' looking for beginning of value")
		}
	}
	n, err := s.valueLen(c)
	if err != nil {
		return nil, false, err
	}
	elem = s.buf[s.r : s.r+n]
	s.r += n
	s.n++
	return elem, true, nil
}

// rest reads what follows the closing bracket.
func (s *elementSplitter) rest() io.Reader {
	return io.MultiReader(bytes.NewReader(s.buf[s.r:s.w]), s.src)
}

// peek skips white space and returns the byte after it, without taking it.
func (s *elementSplitter) peek() (byte, error) {
	for {
		for ; s.r < s.w; s.r++ {
			if c := s.buf[s.r]; !isSpace(c) {
				return c, nil
			}
		}
		if !s.more() {
			return 0, s.cut()
		}
	}
}

// valueLen measures the value that starts at buf[r] with c: an object or
// array to its matching bracket, a string to its closing quote, anything
// else (a number or literal) to the first byte that none can hold.
func (s *elementSplitter) valueLen(c byte) (int, error) {
	switch {
	case c == '{' || c == '[' || c == '"':
	case c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z':
		return s.scalarLen()
	default:
		return 0, fmt.Errorf("invalid character %q looking for beginning of value", c)
	}
	var (
		depth         int
		inString, esc bool
	)
	for i := 0; ; {
		for ; s.r+i < s.w; i++ {
			c := s.buf[s.r+i]
			switch {
			case esc: // the byte after a backslash, whatever it is
				esc = false
			case !structural[c]:
			case inString:
				if c == '\\' {
					esc = true
				} else if c == '"' {
					inString = false
					if depth == 0 {
						return i + 1, nil
					}
				}
			case c == '"':
				inString = true
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				// Mismatched kinds of bracket are left to the
				// element's parser, which refuses them.
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
		}
		if !s.more() {
			return 0, s.cut()
		}
	}
}

// structural marks the bytes that can start or end a string or a nesting;
// the splitter passes over every other byte without looking further.
var structural = func() (t [256]bool) {
	for _, c := range []byte(`"\{}[]`) {
		t[c] = true
	}
	return t
}()

// scalarLen measures a number or literal; whatever it takes that is not
// one is the element parser's to refuse.
func (s *elementSplitter) scalarLen() (int, error) {
	for i := 0; ; {
		for ; s.r+i < s.w; i++ {
			c := s.buf[s.r+i]
			if !(c == '-' || c == '+' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return i, nil
			}
		}
		if !s.more() {
			if s.err == io.EOF {
				return i, nil // the array's end is missing: peek says so next
			}
			return 0, s.err
		}
	}
}

// more reads from src, after moving what is not handed out yet to the
// front of buf and growing buf if that fills it; it reports whether it got
// anything.
func (s *elementSplitter) more() bool {
	if s.err != nil {
		return false
	}
	if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	if len(s.buf)-s.w < splitterReadSize/2 { // an element longer than the buffer
		s.buf = append(s.buf, make([]byte, len(s.buf))...)
	}
	for {
		n, err := s.src.Read(s.buf[s.w:])
		s.w += n
		if err != nil {
			s.err = err
		}
		if n > 0 || err != nil {
			return n > 0
		}
	}
}

// cut is the error for an answer that ends before its array does.
func (s *elementSplitter) cut() error {
	if s.err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return s.err
}

// isSpace is JSON's white space.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}
