package tsdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// errDuplicateMember rejects an answer that names "data", "resultType" or
// "result" twice. encoding/json would keep the last one, which a stream
// cannot do once it has handed the first one's series on; no TSDB sends
// such an answer.
var errDuplicateMember = errors.New("member appears twice")

// decodeStream reads one API answer from r and hands each series of a
// matrix or vector result to each as soon as it is decoded, so memory is
// bounded by one series plus what each keeps, not by the answer: at
// 100,000 versions discovery held the whole JSON and every decoded series
// at once (518 MiB peak).
//
// It agrees with decoding the whole answer (parseBuffered in the tests)
// on every input but one: a duplicated data, resultType or result member
// is an error here. When "data" comes before "status" (no server sends it
// so), series reach each before the status is known; an unsuccessful
// answer then returns its apiResponse and the caller drops what it got,
// as it does for any error. Errors in the data are reported only once the
// status is known to be success, as the whole-answer decoding does.
func decodeStream(r io.Reader, each func(Series) error) (Warnings, *apiResponse, error) {
	a := &answerReader{dec: json.NewDecoder(r), src: r, each: each}
	tok, err := a.dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("decode response: %w", err)
	}
	var env apiResponse
	if tok == nil { // null decodes to an empty envelope: no status
		return nil, &env, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("decode response: the answer is %s, not an object", jsonKind(tok))
	}
	var (
		sawData bool
		dataErr error
	)
	for a.dec.More() {
		key, err := memberName(a.dec)
		if err != nil {
			return nil, nil, fmt.Errorf("decode response: %w", err)
		}
		var field any
		switch {
		case strings.EqualFold(key, "status"):
			field = &env.Status
		case strings.EqualFold(key, "errorType"):
			field = &env.ErrorType
		case strings.EqualFold(key, "error"):
			field = &env.Error
		case strings.EqualFold(key, "warnings"):
			field = &env.Warnings
		case strings.EqualFold(key, "data"):
			if sawData {
				return nil, nil, fmt.Errorf("decode response: data %w", errDuplicateMember)
			}
			sawData = true
			// Decoded even after an error status: a later "status" member
			// would override it, as encoding/json keeps the last one.
			if dataErr, err = a.data(); err != nil {
				return nil, nil, err
			}
			continue
		default:
			if err := skipValue(a.dec); err != nil {
				return nil, nil, fmt.Errorf("decode response: %w", err)
			}
			continue
		}
		if err := a.dec.Decode(field); err != nil {
			return nil, nil, fmt.Errorf("decode response: %w", err)
		}
	}
	if _, err := a.dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("decode response: %w", err)
	}
	switch {
	case env.Status != "success":
		return nil, &env, nil
	case !sawData:
		return env.Warnings, nil, errors.New("decode data: the answer has no data")
	}
	return env.Warnings, nil, dataErr
}

// answerReader reads one answer for decodeStream. Its decoder reads the
// envelope; the result array's elements are cut by an elementSplitter
// instead, after which dec is a new decoder that reads the rest.
type answerReader struct {
	dec  *json.Decoder
	src  io.Reader // what dec reads from
	each func(Series) error
}

// data reads the data member's value. It returns a syntax, read or
// consumer error as err, which ends the decoding; a well-formed but wrong
// value (a type mismatch, a bad point, an unsupported result type) comes
// back as dataErr once the whole value has been read, so the caller can
// still learn the status.
func (a *answerReader) data() (dataErr, err error) {
	tok, err := a.dec.Token()
	if err != nil {
		return nil, fmt.Errorf("decode data: %w", err)
	}
	if tok == nil {
		return errors.New(`unsupported resultType ""`), nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		if err := skipRest(a.dec, tok); err != nil {
			return nil, fmt.Errorf("decode data: %w", err)
		}
		return fmt.Errorf("decode data: data is %s, not an object", jsonKind(tok)), nil
	}
	var (
		resultType  string
		sawType     bool
		sawResult   bool
		early       json.RawMessage // a result that came before its resultType
		streamedErr error
	)
	for a.dec.More() {
		key, err := memberName(a.dec)
		if err != nil {
			return nil, fmt.Errorf("decode data: %w", err)
		}
		switch {
		case strings.EqualFold(key, "resultType"):
			if sawType {
				return nil, fmt.Errorf("decode data: resultType %w", errDuplicateMember)
			}
			sawType = true
			if err := a.dec.Decode(&resultType); err != nil {
				if !isMismatch(err) {
					return nil, fmt.Errorf("decode data: %w", err)
				}
				dataErr = cmpOr(dataErr, fmt.Errorf("decode data: %w", err))
			}
		case strings.EqualFold(key, "result"):
			if sawResult {
				return nil, fmt.Errorf("decode data: result %w", errDuplicateMember)
			}
			sawResult = true
			if sawType && (resultType == "matrix" || resultType == "vector") {
				if streamedErr, err = a.result(resultType); err != nil {
					return nil, err
				}
				continue
			}
			// Rare shapes (a scalar, or a result ahead of its type) are
			// small or never sent: they are read whole.
			if err := a.dec.Decode(&early); err != nil {
				return nil, fmt.Errorf("decode data: %w", err)
			}
		default:
			if err := skipValue(a.dec); err != nil {
				return nil, fmt.Errorf("decode data: %w", err)
			}
		}
	}
	if _, err := a.dec.Token(); err != nil {
		return nil, fmt.Errorf("decode data: %w", err)
	}
	if dataErr != nil {
		return dataErr, nil
	}
	switch resultType {
	case "matrix", "vector":
		switch {
		case !sawResult:
			return fmt.Errorf("decode %s: the data has no result", resultType), nil
		case early == nil:
			return streamedErr, nil
		}
		var raw []apiSeries
		if err := json.Unmarshal(early, &raw); err != nil {
			return fmt.Errorf("decode %s: %w", resultType, err), nil
		}
		for i, s := range raw {
			ser, err := seriesFrom(resultType, i, s)
			if err != nil {
				return err, nil
			}
			if err := a.each(ser); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "scalar":
		if !sawResult {
			return errors.New("decode scalar: the data has no result"), nil
		}
		var p [2]any
		if err := json.Unmarshal(early, &p); err != nil {
			return fmt.Errorf("decode scalar: %w", err), nil
		}
		smp, err := parsePoint(p)
		if err != nil {
			return fmt.Errorf("scalar: %w", err), nil
		}
		if err := a.each(Series{Labels: map[string]string{}, Samples: []Sample{smp}}); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return fmt.Errorf("unsupported resultType %q", resultType), nil
}

// result decodes a matrix or vector result one element at a time.
// After the first bad element it keeps reading (to reach the status and
// check the syntax) but hands nothing more on.
func (a *answerReader) result(resultType string) (dataErr, err error) {
	if open, dataErr, err := openArray(a.dec, resultType); !open {
		return dataErr, err
	}
	// Each element's bytes are read once, by the splitter, which checks
	// no syntax but the commas between them: fastSeries takes the usual
	// shape, and only valid JSON; encoding/json checks and reads the rest.
	split := newElementSplitter(io.MultiReader(a.dec.Buffered(), a.src))
	for i := 0; ; i++ {
		raw, ok, err := split.next()
		if err != nil {
			return nil, fmt.Errorf("decode %s element %d: %w", resultType, i, err)
		}
		if !ok {
			break
		}
		if dataErr != nil {
			if !json.Valid(raw) { // the syntax error, as the decoder would report it
				var v json.RawMessage
				return nil, fmt.Errorf("decode %s element %d: %w", resultType, i, json.Unmarshal(raw, &v))
			}
			continue
		}
		if dataErr, err = a.element(resultType, i, raw); err != nil {
			return nil, err
		}
	}
	a.src = split.rest()
	if a.dec, err = resumeAfterResult(a.src); err != nil {
		return nil, fmt.Errorf("decode %s: %w", resultType, err)
	}
	return dataErr, nil
}

// openArray reads the token that opens a result and reports whether it
// opened an array. If not, it reads past the value: null is no series, as
// an empty array; anything else is a data error.
func openArray(dec *json.Decoder, resultType string) (open bool, dataErr, err error) {
	tok, err := dec.Token()
	if err != nil {
		return false, nil, fmt.Errorf("decode %s: %w", resultType, err)
	}
	if tok == nil {
		return false, nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		if err := skipRest(dec, tok); err != nil {
			return false, nil, fmt.Errorf("decode %s: %w", resultType, err)
		}
		return false, fmt.Errorf("decode %s: the result is %s, not an array", resultType, jsonKind(tok)), nil
	}
	return true, nil, nil
}

// element decodes element i of a result, raw, and hands its series on. A
// syntax or consumer error comes back as err; a well-formed element of the
// wrong shape or with a bad point, as dataErr.
func (a *answerReader) element(resultType string, i int, raw []byte) (dataErr, err error) {
	s, ok := fastSeries(raw)
	if !ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			if !isMismatch(err) {
				return nil, fmt.Errorf("decode %s element %d: %w", resultType, i, err)
			}
			return fmt.Errorf("decode %s element %d: %w", resultType, i, err), nil
		}
	}
	ser, err := seriesFrom(resultType, i, s)
	if err != nil {
		return err, nil
	}
	return nil, a.each(ser)
}

// resultPath stands for what comes before the rest of the answer once the
// result array has been read: the envelope, the data member and a result
// (the names do not matter to the decoder, only the nesting).
const resultPath = `{"data":{"result":[]`

// resumeAfterResult returns a decoder that reads the rest of the answer
// from rest, which starts just after the result array. encoding/json
// cannot start a Decoder inside an object, and the rest (the data
// object's other members, then the envelope's, "status" among them) must
// still be read and its syntax checked as before: so the new decoder is
// first walked through resultPath, after which it stands where the
// decoder the splitter took over from would stand.
func resumeAfterResult(rest io.Reader) (*json.Decoder, error) {
	dec := json.NewDecoder(io.MultiReader(strings.NewReader(resultPath), rest))
	for range 6 { // {, "data", {, "result", [, ]
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
	}
	return dec, nil
}

// memberName reads an object member's name.
func memberName(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("member name is %s", jsonKind(tok))
	}
	return key, nil
}

// skipValue reads past the next value without keeping it.
func skipValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	return skipRest(dec, tok)
}

// skipRest reads past the rest of the value that tok opened, if it opened
// one; the decoder checks the syntax on the way.
func skipRest(dec *json.Decoder, tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok || d == '}' || d == ']' {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// isMismatch tells a well-formed value of the wrong shape, after which the
// decoder has read the whole value and can go on, from a syntax or read
// error, after which it cannot.
func isMismatch(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// jsonKind names a JSON token's kind for an error.
func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// cmpOr keeps the first error.
func cmpOr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}
