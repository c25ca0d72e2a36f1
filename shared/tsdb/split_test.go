package tsdb

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// readers gives each input whole and one byte at a time, so that every
// element, string and escape also ends up split across the splitter's reads.
var readers = map[string]func(string) io.Reader{
	"whole":    func(s string) io.Reader { return strings.NewReader(s) },
	"one-byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
}

// split runs the splitter over array (without its opening bracket) and
// returns the elements and what it left after the closing bracket.
func split(t *testing.T, r io.Reader) (elems []string, rest string, err error) {
	t.Helper()
	s := newElementSplitter(r)
	for {
		e, ok, err := s.next()
		if err != nil {
			return elems, "", err
		}
		if !ok {
			break
		}
		elems = append(elems, string(e))
	}
	b, err := io.ReadAll(s.rest())
	require.NoError(t, err)
	return elems, string(b), nil
}

// TestSplitterCutsEachElementAtItsEnd holds the splitter to the element
// boundaries encoding/json finds, on the cases a bracket counter gets wrong
// if it does not follow strings and escapes, and checks it leaves what
// follows the array for the rest of the answer.
func TestSplitterCutsEachElementAtItsEnd(t *testing.T) {
	long := strings.Repeat(`\"]x`, 40000) // one element larger than the buffer, escapes across every read
	for _, array := range []string{
		`]`,
		` ]`,
		`{}]`,
		`{"metric":{"a":"b\"]"},"values":[[1,"2"]]}]`,   // an escaped quote before a bracket
		`{"metric":{"a":"b\\"},"values":[[1,"2"]]}]`,    // an escaped backslash before the closing quote
		`{"metric":{"a":"b\\\"]}"},"values":[]}]`,       // both
		`{"metric":{"a":"]}[{,"},"values":[]},{"b":1}]`, // brackets and a comma in a string
		`{"x":[[[{"a":[["]"]]}]]],"y":{"z":{}}},[[]]]`,  // nesting
		" \t\n\r{\"a\":1} \n, [2]\r\n,\"s\\\"\"\t]",     // white space around elements and separators
		`1,-2.5e3,true,false,null,"a"]`,                 // scalars
		`{"metric":{"a":"` + long + `"}}]`,
		`{"metric":{"a":"é\u00e9"},"values":[]}]`,
	} {
		for name, reader := range readers {
			const after = `,"resultType":"matrix"},"status":"success"}`
			got, rest, err := split(t, reader(array+after))
			require.NoError(t, err, "%s: %.80s", name, array)
			require.Equal(t, after, rest, "%s: %.80s", name, array)
			var want []json.RawMessage
			require.NoError(t, json.Unmarshal([]byte("["+array), &want), array)
			require.Equal(t, len(want), len(got), "%s: %.80s", name, array)
			for i := range want {
				require.Equal(t, string(want[i]), got[i], "%s: %.80s", name, array)
			}
		}
	}
}

// TestSplitterRefusesBadSeparators checks that the syntax between elements,
// which nothing else sees once the decoder no longer reads the array, is
// still checked, and that an answer cut short is an error.
func TestSplitterRefusesBadSeparators(t *testing.T) {
	for _, array := range []string{
		`{} {}]`, `{},]`, `,{}]`, `{},,{}]`, `{};{}]`, `{}x]`, `1 2]`, `"a""b"]`, `}]`, `:1]`,
		``, `{}`, `{},`, `{"a":"b]`, `{"a":"b\"}]`, `[[]]`, `"\`, `1`,
	} {
		for name, reader := range readers {
			_, _, err := split(t, reader(array))
			require.Error(t, err, "%s: %q", name, array)
			require.False(t, json.Valid([]byte("["+array)), "the case %q is valid JSON", array)
		}
	}
	_, _, err := split(t, strings.NewReader(`{}`))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// TestSplitterPassesOnReadErrors checks a failing body is reported as it
// failed, not as an answer cut short.
func TestSplitterPassesOnReadErrors(t *testing.T) {
	broken := errors.New("connection reset")
	for _, array := range []string{`{"a":`, `{},`, `12`} {
		_, _, err := split(t, io.MultiReader(strings.NewReader(array), iotest.ErrReader(broken)))
		require.ErrorIs(t, err, broken, array)
	}
}

// TestStreamReadsAnswersWhateverTheReads holds decodeStream to the buffered
// parse on answers whose elements carry escapes and brackets in strings,
// whose envelope goes on after the result (the status last, warnings, a
// member the decoder skips), read whole and one byte at a time; and checks
// that bad syntax anywhere, also after a bad element, is an error, not a
// data error.
func TestStreamReadsAnswersWhateverTheReads(t *testing.T) {
	good := []string{
		`{"data":{"resultType":"matrix","result":[{"metric":{"a":"x\"]}","b":"c\\"},"values":[[1,"2"]]}, {"metric":{"a":"\u00e9"},"values":[[1.5,"NaN"]]}],"x":[{"y":"]"}]},"warnings":["w"],"status":"success"}`,
		`{"status":"success","data":{"resultType":"vector","result":[ {"metric":{},"value":[1,"1"]} ] , "resultType2":null } , "infos":["i"]}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1}},{"metric":{"a":"b"},"values":[[1,"2"]]}]}}`,
		`{"status":"error","errorType":"bad_data","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[0x1p3,"2"]]}]}}`,
	}
	bad := []string{
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}} {"metric":{}}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}},]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}}x]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1}},{"metric":}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1}},{"metric":{"a":"` + "\n" + `"}}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[+1,"2"]]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[Inf,"2"]]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]} "status":"success"}`,
	}
	for _, body := range append(good, bad...) {
		want, wwarn, wapi, werr := parseBuffered([]byte(body))
		for name, reader := range readers {
			got := []Series{}
			gwarn, gapi, gerr := decodeStream(reader(body), func(s Series) error {
				got = append(got, s)
				return nil
			})
			require.Equal(t, werr == nil, gerr == nil, "%s: %s: buffered error %v, stream error %v", name, body, werr, gerr)
			require.Equal(t, wapi, gapi, "%s: %s", name, body)
			if werr == nil && wapi == nil {
				require.Equal(t, wwarn, gwarn, "%s: %s", name, body)
				sameSeries(t, want, got)
			}
		}
	}
	for _, body := range bad {
		_, _, err := decodeStream(strings.NewReader(body), func(Series) error { return nil })
		var syntax *json.SyntaxError
		require.True(t, err != nil && (errors.As(err, &syntax) || !isMismatch(err)), "%s: %v", body, err)
	}
}
