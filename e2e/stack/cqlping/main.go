// Command cqlping tells stack.sh whether Cassandra really serves CQL: it
// opens a gocql session (the same driver the functions use) and reads
// system.local. A listening port is not enough: Cassandra binds 9042 a
// moment before it can answer queries.
//
// With -lwt it also proves the two features the autoscaler's locks depend
// on, on this node: a lightweight transaction (INSERT ... IF NOT EXISTS and
// a conditional UPDATE) and a TTL that really expires.
//
// Exit status: 0 ready (and, with -lwt, both checks passed), 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

func main() {
	hosts := flag.String("hosts", "127.0.0.1:9042", "comma-separated host:port contact points")
	timeout := flag.Duration("timeout", 5*time.Second, "overall deadline for the check")
	lwt := flag.Bool("lwt", false, "also check LWT and TTL in keyspace -keyspace")
	keyspace := flag.String("keyspace", "stack_check", "scratch keyspace for -lwt (created with RF 1)")
	quiet := flag.Bool("q", false, "print nothing on success")
	verbose := flag.Bool("v", false, "keep the driver's own log lines (noisy while the node boots)")
	tlsDir := flag.String("tls", "", "connect with TLS: a directory made by certs.sh (ca.pem verifies the node, client.pem and client-key.pem authenticate)")
	flag.Parse()

	if !*verbose {
		// While Cassandra boots every poll would print the driver's dial
		// errors; stack.sh shows the server log instead when it gives up.
		gocql.Logger = log.New(io.Discard, "", 0)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, strings.Split(*hosts, ","), *tlsDir, *lwt, *keyspace, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "cqlping:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, hosts []string, tlsDir string, lwt bool, keyspace string, quiet bool) error {
	deadline, _ := ctx.Deadline()
	cluster := gocql.NewCluster(hosts...)
	// Protocol v4 skips the driver's version negotiation, which costs a
	// failed handshake per poll against Cassandra 5.
	cluster.ProtoVersion = 4
	cluster.ConnectTimeout = time.Until(deadline)
	cluster.Timeout = time.Until(deadline)
	cluster.NumConns = 1
	cluster.Consistency = gocql.One
	cluster.SerialConsistency = gocql.LocalSerial
	if tlsDir != "" {
		cluster.SslOpts = &gocql.SslOptions{
			CaPath:                 filepath.Join(tlsDir, "ca.pem"),
			CertPath:               filepath.Join(tlsDir, "client.pem"),
			KeyPath:                filepath.Join(tlsDir, "client-key.pem"),
			EnableHostVerification: true,
		}
	}
	// No ReconnectionPolicy with MaxRetries 0: gocql v1.7.0 then leaves a
	// nil connection in the pool and the first query panics in Pick.

	session, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("connect %s: %w", strings.Join(hosts, ","), err)
	}
	defer session.Close()

	var release string
	if err := session.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Scan(&release); err != nil {
		return fmt.Errorf("read system.local: %w", err)
	}
	if !quiet {
		fmt.Printf("cassandra %s at %s\n", release, strings.Join(hosts, ","))
	}
	if !lwt {
		return nil
	}
	if err := checkLWTAndTTL(ctx, session, keyspace); err != nil {
		return err
	}
	if !quiet {
		fmt.Println("LWT ok (IF NOT EXISTS and IF owner = ?), TTL ok (row expired)")
	}
	return nil
}

// checkLWTAndTTL takes a lock row the way the autoscaler does (insert if
// absent, with a TTL), shows a second owner is refused, renews it
// conditionally, then waits for the TTL to free it.
func checkLWTAndTTL(ctx context.Context, s *gocql.Session, ks string) error {
	stmts := []string{
		fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, ks),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.locks (name text PRIMARY KEY, owner text)`, ks),
	}
	for _, q := range stmts {
		if err := s.Query(q).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("schema %q: %w", q, err)
		}
	}

	name := fmt.Sprintf("cqlping-%d", time.Now().UnixNano())
	insert := fmt.Sprintf(`INSERT INTO %s.locks (name, owner) VALUES (?, ?) IF NOT EXISTS USING TTL 2`, ks)

	applied, err := cas(ctx, s, insert, name, "a")
	if err != nil || !applied {
		return fmt.Errorf("LWT: first INSERT IF NOT EXISTS applied=%v: %w", applied, orNil(err))
	}
	applied, err = cas(ctx, s, insert, name, "b")
	if err != nil || applied {
		return fmt.Errorf("LWT: second owner's INSERT IF NOT EXISTS applied=%v, want false: %w", applied, orNil(err))
	}
	renew := fmt.Sprintf(`UPDATE %s.locks USING TTL 2 SET owner = ? WHERE name = ? IF owner = ?`, ks)
	applied, err = cas(ctx, s, renew, "a", name, "a")
	if err != nil || !applied {
		return fmt.Errorf("LWT: owner's conditional UPDATE applied=%v: %w", applied, orNil(err))
	}

	// TTL 2 s from the renewal; poll a little past it.
	stop := time.Now().Add(6 * time.Second)
	for {
		var owner string
		err := s.Query(fmt.Sprintf(`SELECT owner FROM %s.locks WHERE name = ?`, ks), name).
			WithContext(ctx).Consistency(gocql.One).Scan(&owner)
		if errors.Is(err, gocql.ErrNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("TTL: read lock row: %w", err)
		}
		if time.Now().After(stop) {
			return fmt.Errorf("TTL: row %s still present (owner %s) 6 s after a 2 s TTL", name, owner)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("TTL: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}

	applied, err = cas(ctx, s, insert, name, "b")
	if err != nil || !applied {
		return fmt.Errorf("LWT after TTL: second owner's INSERT IF NOT EXISTS applied=%v: %w", applied, orNil(err))
	}
	return nil
}

func cas(ctx context.Context, s *gocql.Session, stmt string, args ...any) (bool, error) {
	return s.Query(stmt, args...).WithContext(ctx).MapScanCAS(map[string]any{})
}

// orNil keeps fmt's %w from printing "%!w(<nil>)" when the failure was a
// wrong answer rather than an error.
func orNil(err error) error {
	if err == nil {
		return errors.New("no error")
	}
	return err
}
