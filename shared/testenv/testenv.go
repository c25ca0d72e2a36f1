// Package testenv tells integration tests where the real local servers are
// (Cassandra, VictoriaMetrics, Prometheus) and decides what a missing server
// means: a skip for a bare `go test ./...`, a failure under CI=true or the
// README's test command (which sets AUTOSCALER_REQUIRE_SERVERS=1).
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Defaults match e2e/stack/stack.sh; each can be overridden by its variable.
const (
	DefaultCassandra = "127.0.0.1:9042"
	DefaultVM        = "http://127.0.0.1:8428"
	DefaultProm      = "http://127.0.0.1:9090"
)

// runHint names the command that brings the servers up and runs every test.
const runHint = "run `make test` (it starts the local stack) or `make stack-up` first"

// Required reports whether a missing server must fail the test instead of
// skipping it.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("AUTOSCALER_REQUIRE_SERVERS") == "1"
}

// CassandraHosts returns the contact points of the test Cassandra.
func CassandraHosts() []string {
	return strings.Split(getenv("TEST_CASSANDRA_HOSTS", DefaultCassandra), ",")
}

// VMURL returns the base URL of the test VictoriaMetrics.
func VMURL() string { return strings.TrimRight(getenv("TEST_VM_URL", DefaultVM), "/") }

// PromURL returns the base URL of the test Prometheus.
func PromURL() string { return strings.TrimRight(getenv("TEST_PROM_URL", DefaultProm), "/") }

// RequireCassandra returns the contact points once CQL's port accepts a
// connection; otherwise it skips or fails the test (see Required).
func RequireCassandra(t testing.TB) []string {
	t.Helper()
	hosts := CassandraHosts()
	if err := dialTCP(hosts[0]); err != nil {
		missing(t, "Cassandra", hosts[0], err)
	}
	return hosts
}

// RequireVM returns VictoriaMetrics' base URL once its /health answers.
func RequireVM(t testing.TB) string {
	t.Helper()
	u := VMURL()
	if err := httpOK(u + "/health"); err != nil {
		missing(t, "VictoriaMetrics", u, err)
	}
	return u
}

// RequireProm returns Prometheus' base URL once its /-/ready answers.
func RequireProm(t testing.TB) string {
	t.Helper()
	u := PromURL()
	if err := httpOK(u + "/-/ready"); err != nil {
		missing(t, "Prometheus", u, err)
	}
	return u
}

func missing(t testing.TB, what, addr string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s is not reachable at %s (%v); %s", what, addr, err, runHint)
	if Required() {
		t.Fatal(msg)
	}
	t.Skip("integration test skipped: " + msg)
}

func dialTCP(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func httpOK(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
