package cqlproxy

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// errorFrame is an ERROR answer with code, after the prefixes flags ask for.
func errorFrame(flags byte, code uint32) frame {
	var b bytes.Buffer
	if flags&flagTracing != 0 {
		b.Write(make([]byte, 16)) // the tracing session id
	}
	if flags&flagWarning != 0 {
		_ = binary.Write(&b, binary.BigEndian, uint16(1))
		_ = binary.Write(&b, binary.BigEndian, uint16(4))
		b.WriteString("warn")
	}
	_ = binary.Write(&b, binary.BigEndian, code)
	_ = binary.Write(&b, binary.BigEndian, uint16(0)) // message
	h := []byte{0x84, flags, 0, 1, opError, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[5:9], uint32(b.Len()))
	return frame{header: h, body: b.Bytes()}
}

// Only Cassandra's Unprepared error, however the answer is prefixed, is
// the sign that a faulted request did not run.
func TestUnpreparedIsTheErrorCodeAfterThePrefixes(t *testing.T) {
	for _, flags := range []byte{0, flagWarning, flagTracing | flagWarning} {
		if !unprepared(errorFrame(flags, codeUnprepared)) {
			t.Errorf("flags %#x: Unprepared not recognised", flags)
		}
		if unprepared(errorFrame(flags, codeWriteTO)) {
			t.Errorf("flags %#x: a write timeout taken for Unprepared", flags)
		}
	}
	result := errorFrame(0, codeUnprepared)
	result.header[4] = opResult
	if unprepared(result) {
		t.Error("a RESULT taken for Unprepared")
	}
}
