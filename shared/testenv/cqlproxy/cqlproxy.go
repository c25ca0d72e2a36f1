// Package cqlproxy is a TCP proxy between a CQL driver and the real local
// Cassandra that loses answers on purpose. Cassandra's "unknown" outcomes
// (an LWT whose Paxos round timed out, a reply that never came back) cannot
// be provoked on a healthy one-node cluster, so tests put this proxy in the
// path and tell it which statement to fault and how: drop the request (it
// never applies), drop the reply after forwarding the request (it applies;
// the driver times out), or replace the reply with the WriteTimeout error a
// coordinator sends when its Paxos round times out (it applies; the driver
// gets Cassandra's own error).
//
// It understands just enough of the native protocol v4 (the newest gocql
// speaks; uncompressed frames) to name each request's statement: QUERY
// frames carry their text, EXECUTE frames a prepared id, which the proxy
// maps to the text it saw in the PREPARE request and its RESULT, and a
// BATCH names its statements by either, joined with "; ".
package cqlproxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Action is what the proxy does to a request whose statement matches a rule.
type Action int

const (
	// DropRequest never forwards the request: it cannot apply, and the
	// driver waits for its timeout.
	DropRequest Action = iota + 1
	// DropReply forwards the request and swallows Cassandra's reply: the
	// statement applies, and the driver waits for its timeout.
	DropReply
	// WriteTimeout forwards the request and answers the driver with a
	// WriteTimeout error (WriteType from the rule, CAS by default) instead
	// of Cassandra's reply: the statement applies, and the driver gets the
	// error a coordinator returns when a Paxos round times out.
	WriteTimeout
)

func (a Action) String() string {
	switch a {
	case DropRequest:
		return "drop_request"
	case DropReply:
		return "drop_reply"
	case WriteTimeout:
		return "write_timeout"
	}
	return "pass"
}

// Rule faults the next Times requests whose statement contains Match.
type Rule struct {
	Match     string
	Action    Action
	Times     int
	WriteType string // for WriteTimeout; "CAS" when empty
}

// Fault is one request the proxy faulted.
type Fault struct {
	Statement string
	Action    Action
	// Reply is the opcode of Cassandra's answer the driver never saw
	// ("RESULT", "ERROR"), empty for a dropped request. A RESULT proves
	// the statement reached and ran on Cassandra.
	Reply string

	// withdrawn marks a fault whose request did not run (see unprepared):
	// the rule waits for the driver's next attempt, and Faults omits it.
	withdrawn bool
}

// Proxy forwards 127.0.0.1:<random port> to a Cassandra native port.
type Proxy struct {
	// Addr is the proxy's host:port, to use as the driver's contact point.
	Addr string

	upstream string
	ln       net.Listener

	mu       sync.Mutex
	rules    []*Rule
	prepared map[string]string // prepared id -> statement
	faults   []Fault
	conns    []net.Conn
}

// Start listens on a random local port, forwarding to upstream, until the
// test ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cql proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, prepared: map[string]string{}}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Add installs a rule; rules are tried in the order added.
func (p *Proxy) Add(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.WriteType == "" {
		r.WriteType = "CAS"
	}
	p.rules = append(p.rules, &r)
}

// Clear removes every rule still pending.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Faults returns what the proxy did so far, in order.
func (p *Proxy) Faults() []Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Fault
	for _, f := range p.faults {
		if !f.withdrawn {
			out = append(out, f)
		}
	}
	return out
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		c := &conn{p: p, client: client, server: server, prepares: map[int16]string{}, faulted: map[int16]pending{}}
		go c.upstream()
		go c.downstream()
	}
}

// pending is a forwarded request whose reply a rule loses: the rule and
// the index of its Fault.
type pending struct {
	rule  *Rule
	fault int
}

// conn is one driver connection and its upstream twin.
type conn struct {
	p              *Proxy
	client, server net.Conn

	mu       sync.Mutex
	prepares map[int16]string  // stream -> statement of a PREPARE awaiting its RESULT
	faulted  map[int16]pending // stream -> a faulted request whose reply is to be lost
}

const (
	opError    = 0x00
	opQuery    = 0x07
	opResult   = 0x08
	opPrepare  = 0x09
	opExecute  = 0x0A
	opBatch    = 0x0D
	headerSize = 9

	flagTracing       = 0x02
	flagCustomPayload = 0x04
	flagWarning       = 0x08

	resultPrepared = 0x0004
	codeWriteTO    = 0x1100
	codeUnprepared = 0x2500
)

type frame struct {
	header []byte
	body   []byte
}

func (f frame) flags() byte   { return f.header[1] }
func (f frame) stream() int16 { return int16(binary.BigEndian.Uint16(f.header[2:4])) }
func (f frame) opcode() byte  { return f.header[4] }

func readFrame(r io.Reader) (frame, error) {
	h := make([]byte, headerSize)
	if _, err := io.ReadFull(r, h); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(h[5:9])
	if n > 256<<20 {
		return frame{}, fmt.Errorf("frame of %d bytes: not CQL v3+ uncompressed", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return frame{}, err
	}
	return frame{header: h, body: b}, nil
}

func (f frame) bytes() []byte { return append(append([]byte(nil), f.header...), f.body...) }

// upstream carries the driver's requests to Cassandra, faulting those a
// rule matches.
func (c *conn) upstream() {
	defer c.server.Close()
	for {
		f, err := readFrame(c.client)
		if err != nil {
			return
		}
		stmt := c.statement(f)
		if f.opcode() == opPrepare {
			c.mu.Lock()
			c.prepares[f.stream()] = stmt
			c.mu.Unlock()
		}
		var rule *Rule
		if f.opcode() == opQuery || f.opcode() == opExecute || f.opcode() == opBatch {
			rule = c.p.match(stmt)
		}
		if rule != nil && rule.Action == DropRequest {
			c.p.record(Fault{Statement: stmt, Action: DropRequest})
			continue
		}
		if rule != nil {
			i := c.p.record(Fault{Statement: stmt, Action: rule.Action})
			c.mu.Lock()
			c.faulted[f.stream()] = pending{rule: rule, fault: i}
			c.mu.Unlock()
		}
		if _, err := c.server.Write(f.bytes()); err != nil {
			return
		}
	}
}

// downstream carries Cassandra's answers back, learning prepared ids and
// losing the answers of faulted requests.
func (c *conn) downstream() {
	defer c.client.Close()
	for {
		f, err := readFrame(c.server)
		if err != nil {
			return
		}
		c.mu.Lock()
		stmt, preparing := c.prepares[f.stream()]
		delete(c.prepares, f.stream())
		lose, lost := c.faulted[f.stream()]
		delete(c.faulted, f.stream())
		c.mu.Unlock()
		if preparing && f.opcode() == opResult {
			if id, ok := preparedID(f); ok {
				c.p.mu.Lock()
				c.p.prepared[id] = stmt
				c.p.mu.Unlock()
			}
		}
		if lost && unprepared(f) {
			// The statement did not run: Cassandra no longer had it
			// prepared, and the driver prepares it again and re-sends
			// it only once it has this answer. The fault is for that
			// request, so the rule takes it back before passing the
			// answer on.
			c.p.withdraw(lose)
			lost = false
		}
		if lost {
			c.p.replied(lose.fault, f)
			switch lose.rule.Action {
			case DropReply:
				continue
			case WriteTimeout:
				f = writeTimeout(f, lose.rule.WriteType)
			}
		}
		if _, err := c.client.Write(f.bytes()); err != nil {
			return
		}
	}
}

func (p *Proxy) match(stmt string) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		if r.Times > 0 && strings.Contains(stmt, r.Match) {
			r.Times--
			return r
		}
	}
	return nil
}

func (p *Proxy) record(f Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f)
	return len(p.faults) - 1
}

// withdraw gives a faulted request's rule its turn back and drops the
// fault from Faults.
func (p *Proxy) withdraw(lose pending) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lose.rule.Times++
	p.faults[lose.fault].withdrawn = true
}

// unprepared says whether f is Cassandra's Unprepared error: the EXECUTE's
// statement id is not in its prepared-statement cache (10 MiB by default),
// so nothing ran. A Cassandra that has served many test keyspaces since it
// started evicts statements between their PREPARE and their EXECUTE: the
// fault tests failed that way, with every lost answer read back as not
// applied, once the shared one had run the suites a few times.
func unprepared(f frame) bool {
	if f.opcode() != opError {
		return false
	}
	b := f.body
	if f.flags()&flagTracing != 0 {
		if len(b) < 16 {
			return false
		}
		b = b[16:]
	}
	if f.flags()&flagWarning != 0 {
		b = skipStringList(b)
	}
	if f.flags()&flagCustomPayload != 0 {
		b = skipBytesMap(b)
	}
	return len(b) >= 4 && binary.BigEndian.Uint32(b) == codeUnprepared
}

// replied notes on fault i the answer Cassandra gave and the driver lost.
func (p *Proxy) replied(i int, f frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[i].Reply = "RESULT"
	if f.opcode() == opError {
		p.faults[i].Reply = "ERROR"
	}
}

// statement names what a request runs: the text of a QUERY or PREPARE, the
// prepared text of an EXECUTE ("" when unknown).
func (c *conn) statement(f frame) string {
	body := skipRequestExtras(f)
	switch f.opcode() {
	case opQuery, opPrepare:
		s, _ := longString(body)
		return s
	case opExecute:
		id, ok := shortBytes(body)
		if !ok {
			return ""
		}
		c.p.mu.Lock()
		defer c.p.mu.Unlock()
		return c.p.prepared[string(id)]
	case opBatch:
		return c.batchStatements(body)
	}
	return ""
}

// batchStatements names a BATCH body's statements: <type byte><n short>,
// then per statement <kind byte> (0: a query's [long string], 1: a
// prepared [short bytes] id) and its values (<n short>, n [bytes]).
func (c *conn) batchStatements(b []byte) string {
	if len(b) < 3 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	b = b[3:]
	var stmts []string
	for i := 0; i < n && len(b) > 0; i++ {
		kind := b[0]
		b = b[1:]
		switch kind {
		case 0:
			q, ok := longString(b)
			if !ok {
				return strings.Join(stmts, "; ")
			}
			stmts = append(stmts, q)
			b = b[4+len(q):]
		case 1:
			id, ok := shortBytes(b)
			if !ok {
				return strings.Join(stmts, "; ")
			}
			c.p.mu.Lock()
			stmts = append(stmts, c.p.prepared[string(id)])
			c.p.mu.Unlock()
			b = b[2+len(id):]
		default:
			return strings.Join(stmts, "; ")
		}
		b = skipValues(b)
	}
	return strings.Join(stmts, "; ")
}

// skipValues skips <n short> [bytes] values (a negative length is null or
// unset and has no body).
func skipValues(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := 0; i < n; i++ {
		if len(b) < 4 {
			return nil
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l > 0 {
			if len(b) < l {
				return nil
			}
			b = b[l:]
		}
	}
	return b
}

func skipRequestExtras(f frame) []byte {
	b := f.body
	if f.flags()&flagCustomPayload != 0 {
		b = skipBytesMap(b)
	}
	return b
}

// preparedID reads the id of a RESULT Prepared answer.
func preparedID(f frame) (string, bool) {
	b := f.body
	// Response extras come in gocql's order: tracing id, warnings, payload.
	if f.flags()&flagTracing != 0 && len(b) >= 16 {
		b = b[16:]
	}
	if f.flags()&flagWarning != 0 {
		b = skipStringList(b)
	}
	if f.flags()&flagCustomPayload != 0 {
		b = skipBytesMap(b)
	}
	if len(b) < 4 || binary.BigEndian.Uint32(b) != resultPrepared {
		return "", false
	}
	id, ok := shortBytes(b[4:])
	return string(id), ok
}

// writeTimeout is the ERROR frame a coordinator sends for a write that did
// not reach its consistency in time, on the same stream as f.
func writeTimeout(f frame, writeType string) frame {
	var b bytes.Buffer
	put := func(v any) { _ = binary.Write(&b, binary.BigEndian, v) }
	str := func(s string) { put(uint16(len(s))); b.WriteString(s) }
	put(int32(codeWriteTO))
	str("Operation timed out - received only 0 responses. (injected by cqlproxy)")
	// What a one-node coordinator reports for a Paxos round at
	// LOCAL_SERIAL: none of the one replica it waited for answered.
	put(uint16(0x0009)) // consistency LOCAL_SERIAL
	put(int32(0))       // received
	put(int32(1))       // block for
	str(writeType)
	h := append([]byte(nil), f.header...)
	h[1] = 0 // no tracing, warnings or payload
	h[4] = opError
	binary.BigEndian.PutUint32(h[5:9], uint32(b.Len()))
	return frame{header: h, body: b.Bytes()}
}

func longString(b []byte) (string, bool) {
	if len(b) < 4 {
		return "", false
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 0 || len(b) < 4+n {
		return "", false
	}
	return string(b[4 : 4+n]), true
}

func shortBytes(b []byte) ([]byte, bool) {
	if len(b) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, false
	}
	return b[2 : 2+n], true
}

func skipStringList(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := 0; i < n && len(b) >= 2; i++ {
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			return nil
		}
		b = b[2+l:]
	}
	return b
}

func skipBytesMap(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := 0; i < n; i++ {
		if len(b) < 2 {
			return nil
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l+4 {
			return nil
		}
		b = b[2+l:]
		v := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if v > 0 {
			if len(b) < v {
				return nil
			}
			b = b[v:]
		}
	}
	return b
}
