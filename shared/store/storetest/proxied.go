// Package storetest opens a store whose Cassandra answers can be lost on
// purpose, for handler tests that show what a timeout of an LWT (a lock's
// or a write claim's) or of a cycle record does to a decision (against the real local Cassandra).
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"function/shared/store"
	"function/shared/testenv/cqlproxy"
)

// Statements a test faults, by a piece of their text (see shared/store).
const (
	Acquire = "IF NOT EXISTS USING TTL"
	// Claim is a version's write claim (a conditional batch).
	Claim    = "IF claim_owner = ?"
	Refresh  = "IF node_id = ?"
	Release  = "DELETE FROM"
	ReadLock = "SELECT node_id, acquired_at, expires_at FROM"
	Record   = "SET last_requested = ?"
	// ReadState is one version's state row read: the read-back of a
	// write claim or a cycle record (not the bucket's range scan).
	ReadState = "scaling_state WHERE function_id = ? AND function_version_id = ?"
)

// Proxied is a store reached through a fault-injecting proxy, and what it
// reported through OnLostAnswer.
type Proxied struct {
	Store *store.Store
	Proxy *cqlproxy.Proxy

	mu     sync.Mutex
	losses []string
}

// Timeout is CASSANDRA_TIMEOUT through the proxy: each lost answer costs
// that long, and every request that is not faulted must finish inside it
// even on a loaded machine, or the tests would see a loss they did not
// cause.
const Timeout = 1500 * time.Millisecond

// Open opens cfg's keyspace (already created) through a proxy to cfg's
// first host, with Timeout as CASSANDRA_TIMEOUT, and closes it when the
// test ends.
func Open(t testing.TB, cfg store.Config) *Proxied {
	t.Helper()
	p := &Proxied{Proxy: cqlproxy.Start(t, cfg.Hosts[0])}
	cfg.Hosts = []string{p.Proxy.Addr}
	cfg.Timeout = Timeout
	cfg.SkipSchema = true
	cfg.OnLostAnswer = func(a store.LostAnswer) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.losses = append(p.losses, a.Op+" "+a.Cause+" "+a.Resolved)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open store through the proxy: %v", err)
	}
	t.Cleanup(st.Close)
	p.Store = st
	return p
}

// TakeLosses returns the lost answers reported since the last call, each
// as "op cause resolved".
func (p *Proxied) TakeLosses() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.losses
	p.losses = nil
	return out
}
