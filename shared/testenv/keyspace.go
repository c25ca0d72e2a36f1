package testenv

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// Keyspace returns a fresh keyspace name starting with prefix and drops
// that keyspace when the test ends. Every keyspace costs the test Cassandra
// heap for as long as it exists (its tables' memtables and metrics): left
// behind by each run, a few dozen runs exhausted the stack's heap and
// Cassandra died of OutOfMemoryError under everyone's tests.
//
// Register it before opening anything on the keyspace, so the drop runs
// after those are closed (cleanups run last-registered first).
func Keyspace(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e9, rand.IntN(1e6))
	t.Cleanup(func() {
		c := gocql.NewCluster(CassandraHosts()...)
		c.Timeout = 30 * time.Second // dropping a keyspace flushes its tables
		c.ConnectTimeout = 5 * time.Second
		s, err := c.CreateSession()
		if err != nil {
			t.Logf("keyspace %s not dropped: %v", name, err)
			return
		}
		defer s.Close()
		if err := s.Query(`DROP KEYSPACE IF EXISTS ` + name).Exec(); err != nil {
			t.Logf("keyspace %s not dropped: %v", name, err)
		}
	})
	return name
}
