package store

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gocql/gocql"
	"github.com/stretchr/testify/require"
)

// The chart's schema Job runs charts/nvcf-autoscaler/files/schema.cql with
// cqlsh; it must create exactly what EnsureSchema creates, or installs that
// use the Job would start on a schema the code does not expect.
func TestChartSchemaMatchesCode(t *testing.T) {
	raw, err := os.ReadFile("../../charts/nvcf-autoscaler/files/schema.cql")
	require.NoError(t, err)
	var chart []string
	for _, stmt := range strings.Split(stripComments(string(raw)), ";") {
		if s := normalize(stmt); s != "" {
			chart = append(chart, s)
		}
	}
	var code []string
	for _, stmt := range SchemaStatements("__KEYSPACE__", "__REPLICATION__") {
		code = append(code, normalize(stmt))
	}
	require.Equal(t, code, chart, "charts/nvcf-autoscaler/files/schema.cql differs from SchemaStatements")
}

var space = regexp.MustCompile(`\s+`)

func normalize(s string) string {
	s = space.ReplaceAllString(strings.TrimSpace(s), " ")
	s = strings.ReplaceAll(s, "( ", "(")
	return strings.ReplaceAll(s, " )", ")")
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestStatementKind(t *testing.T) {
	for stmt, want := range map[string]string{
		"SELECT release_version FROM system.local":                                          "read",
		" select * from ks.locks where lock_name = ?":                                       "read",
		"INSERT INTO ks.locks (lock_name, node_id) VALUES (?, ?) IF NOT EXISTS USING TTL 5": "lwt",
		"UPDATE ks.locks USING TTL 5 SET expires_at = ? WHERE lock_name = ? IF node_id = ?": "lwt",
		"DELETE FROM ks.locks WHERE lock_name = ? IF node_id = ?":                           "lwt",
		"UPDATE ks.scaling_state SET x = ? WHERE a = ? IF EXISTS":                           "lwt",
		"INSERT INTO ks.recently_invoked_functions (a) VALUES (?) USING TTL 600":            "write",
		"CREATE TABLE IF NOT EXISTS ks.locks (lock_name text PRIMARY KEY)":                  "write",
		"ALTER TABLE ks.scaling_state ADD IF NOT EXISTS watch_since timestamp":              "write",
		"ALTER TABLE ks.scaling_state ADD IF NOT EXISTS cost_weight double":                 "write",
	} {
		require.Equal(t, want, statementKind(stmt), stmt)
	}
}

// A write claim is a conditional batch of two statements and one Paxos
// round: it counts as one LWT, not an LWT and a write; a plain batch
// counts statement by statement.
func TestConditionalBatchCountsAsOneLWT(t *testing.T) {
	var kinds []string
	o := observer(func(kind string, _ bool) { kinds = append(kinds, kind) })
	o.ObserveBatch(context.Background(), gocql.ObservedBatch{Statements: []string{
		"UPDATE ks.scaling_state USING TTL ? SET claim_owner = ? WHERE function_id = ? AND function_version_id = ? IF claim_owner = ?",
		"UPDATE ks.scaling_state USING TTL ? SET claim_live = ? WHERE function_id = ? AND function_version_id = ?",
	}})
	require.Equal(t, []string{"lwt"}, kinds)
	kinds = nil
	o.ObserveBatch(context.Background(), gocql.ObservedBatch{Statements: []string{
		"INSERT INTO ks.recently_invoked_functions (a) VALUES (?) USING TTL 600",
		"INSERT INTO ks.recently_invoked_functions (a) VALUES (?) USING TTL 600",
	}})
	require.Equal(t, []string{"write", "write"}, kinds)
}
