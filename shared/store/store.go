// Package store keeps the autoscaler's shared state in Cassandra: the active
// function versions discovery found, the per-version scaling state the scale
// function needs to stay idempotent across stateless replicas, and
// lightweight-transaction (LWT) locks with TTLs for coordination.
//
// The reference layout (keyspace nvcf_autoscaler, tables
// recently_invoked_functions, running_functions_without_invocations and
// locks) is kept so operators recognise it; scaling_state is ours.
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"function/shared/tlsfiles"
)

// Config says how to reach Cassandra and how to lay out the keyspace.
type Config struct {
	Hosts             []string // contact points, host or host:port
	Keyspace          string   // validated CQL identifier
	Replication       string   // CQL replication map used when creating the keyspace
	Username          string
	Password          string // never logged
	LocalDC           string // prefer this datacenter when set
	Consistency       gocql.Consistency
	SerialConsistency gocql.SerialConsistency
	Timeout           time.Duration // per request
	ConnectTimeout    time.Duration
	PageSize          int
	// TLS, when set, encrypts every connection and names the settings its
	// files came from in connection errors.
	TLS *tlsfiles.Files
	// SkipSchema leaves creating the schema to someone else (the chart's
	// schema Job, run as an administrative user) so the autoscaler's user
	// needs no CREATE permission; Open then only checks the tables exist.
	SkipSchema bool
	// Observer, when set, is told of every CQL request by kind: "read",
	// "write" or "lwt" (a conditional statement), and whether it failed.
	// Operators and the benchmark use it to count what a cycle costs.
	Observer func(kind string, failed bool)
	// OnLostAnswer, when set, is told of every write whose answer was lost
	// and how reading it back at SERIAL settled it (see LostAnswer).
	OnLostAnswer func(LostAnswer)
}

// DefaultConfig is a single local node with the reference's consistency.
func DefaultConfig() Config {
	return Config{
		Hosts:             []string{"127.0.0.1:9042"},
		Keyspace:          "nvcf_autoscaler",
		Replication:       "{'class': 'SimpleStrategy', 'replication_factor': 1}",
		Consistency:       gocql.LocalQuorum,
		SerialConsistency: gocql.LocalSerial,
		Timeout:           10 * time.Second,
		ConnectTimeout:    10 * time.Second,
		PageSize:          2000,
	}
}

var keyspaceRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	if len(c.Hosts) == 0 || c.Hosts[0] == "" {
		return errors.New("no Cassandra contact points")
	}
	if !keyspaceRE.MatchString(c.Keyspace) {
		return fmt.Errorf("keyspace %q: want a lower-case CQL identifier matching %s", c.Keyspace, keyspaceRE)
	}
	if !strings.HasPrefix(strings.TrimSpace(c.Replication), "{") {
		return fmt.Errorf("replication %q: want a CQL map such as {'class': 'SimpleStrategy', 'replication_factor': 1}", c.Replication)
	}
	if c.Timeout <= 0 || c.ConnectTimeout <= 0 {
		return errors.New("timeouts must be positive")
	}
	if c.PageSize < 1 {
		return fmt.Errorf("page size %d must be positive", c.PageSize)
	}
	return nil
}

// Store is a connected Cassandra session with the schema in place.
type Store struct {
	session *gocql.Session
	cfg     Config
	// Table names qualified with the keyspace, so one session (opened
	// without a keyspace) serves schema creation and queries alike.
	tInvoked, tRunning, tState, tLocks string
}

// Open connects, creates the keyspace and tables if they are missing, and
// returns a ready store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cassandra config: %w", err)
	}
	cluster := gocql.NewCluster(cfg.Hosts...)
	cluster.Consistency = cfg.Consistency
	cluster.SerialConsistency = cfg.SerialConsistency
	cluster.Timeout = cfg.Timeout
	cluster.ConnectTimeout = cfg.ConnectTimeout
	cluster.PageSize = cfg.PageSize
	// Schema changes wait for agreement; a single node agrees at once.
	cluster.MaxWaitSchemaAgreement = 30 * time.Second
	cluster.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	cluster.ReconnectionPolicy = &gocql.ConstantReconnectionPolicy{MaxRetries: 1 << 20, Interval: time.Second}
	if cfg.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	if cfg.LocalDC != "" {
		cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(cfg.LocalDC))
	} else {
		cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	}
	var tc *tls.Config
	if cfg.TLS != nil {
		var err error
		tc, err = cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("cassandra tls: %w", err)
		}
		// Not SslOpts: gocql's own dialer names no host when tc verifies
		// by itself (InsecureSkipVerify, so that a rotated CA file is
		// seen), and with host verification on it would set
		// InsecureSkipVerify back to false, verifying against the
		// system roots instead of the CA file.
		d := &net.Dialer{Timeout: cluster.ConnectTimeout}
		if cluster.SocketKeepalive > 0 {
			d.KeepAlive = cluster.SocketKeepalive
		}
		cluster.HostDialer = tlsHostDialer{dialer: d, tls: tc}
	}
	if cfg.Observer != nil {
		o := observer(cfg.Observer)
		cluster.QueryObserver, cluster.BatchObserver = o, o
	}
	session, err := cluster.CreateSession()
	if err != nil {
		if cfg.TLS != nil {
			addr := cfg.Hosts[0]
			if _, _, splitErr := net.SplitHostPort(addr); splitErr != nil {
				addr = net.JoinHostPort(addr, "9042")
			}
			err = cfg.TLS.Diagnose(ctx, addr, tc, err)
		}
		return nil, fmt.Errorf("connect to cassandra %s: %w", strings.Join(cfg.Hosts, ","), err)
	}
	q := func(t string) string { return cfg.Keyspace + "." + t }
	s := &Store{
		session:  session,
		cfg:      cfg,
		tInvoked: q(tableInvoked),
		tRunning: q(tableRunning),
		tState:   q(tableState),
		tLocks:   q(tableLocks),
	}
	prepare := s.EnsureSchema
	if cfg.SkipSchema {
		prepare = s.CheckSchema
	}
	if err := prepare(ctx); err != nil {
		session.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the session.
func (s *Store) Close() { s.session.Close() }

// Ping runs the cheapest query that proves a coordinator answers.
func (s *Store) Ping(ctx context.Context) error {
	var v string
	if err := s.session.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Consistency(gocql.One).Scan(&v); err != nil {
		return fmt.Errorf("ping cassandra: %w", err)
	}
	return nil
}

// Table names, unqualified.
const (
	tableInvoked = "recently_invoked_functions"
	tableRunning = "running_functions_without_invocations"
	tableState   = "scaling_state"
	tableLocks   = "locks"
)

// SchemaStatements is the whole schema as CQL for keyspace and replication
// (a CQL map). Every statement is idempotent: it creates what is missing and
// never alters or drops what exists. The Helm chart's schema Job runs the
// same statements (charts/nvcf-autoscaler/files/schema.cql; a test keeps the
// two identical).
func SchemaStatements(keyspace, replication string) []string {
	q := func(t string) string { return keyspace + "." + t }
	return []string{
		fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s`, keyspace, replication),
		// Default TTLs match the reference; writes set their own TTL.
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			function_id text, function_version_id text, nca_id text, last_updated_at timestamp,
			PRIMARY KEY ((function_id, function_version_id))) WITH default_time_to_live = 600`, q(tableInvoked)),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			function_id text, function_version_id text, nca_id text, last_updated_at timestamp,
			PRIMARY KEY ((function_id, function_version_id))) WITH default_time_to_live = 600`, q(tableRunning)),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			function_id text, function_version_id text,
			last_requested int, last_cycle bigint, last_written_at timestamp,
			status text, not_found_at timestamp, recommendations text, watch_since timestamp,
			cost_seconds_per_request double, cost_weight double, cost_window_end timestamp,
			PRIMARY KEY ((function_id, function_version_id)))`, q(tableState)),
		// Columns added after the first release: existing installs get them
		// on upgrade without a manual migration.
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS watch_since timestamp`, q(tableState)),
		// The metric source: discovery's evidence in the active rows, the
		// remembered choice in the scaling state.
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS source text`, q(tableInvoked)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS source text`, q(tableRunning)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS source text`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cost_seconds_per_request double`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cost_weight double`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cost_window_end timestamp`, q(tableState)),
		// What the NVCF API said it targets after the last write, so a
		// request it clamped is reported every cycle without writing again.
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS applied_target int`, q(tableState)),
		// The estimated queue of a version (requests routed, not yet
		// served) and the end of the last window folded into it.
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS backlog_requests double`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS backlog_window_end timestamp`, q(tableState)),
		// The estimate the last window was folded onto: whether that
		// window served a queue (policy.Backlog.Prior).
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS backlog_prior double`, q(tableState)),
		// The write claim: one Paxos round per NVCF write (claims.go).
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS claim_owner text`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS claim_cycle bigint`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS claim_requested int`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS claim_live text`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS settled_claim text`, q(tableState)),
		// Keep-alive learning: the idle histogram and the burst bounds it
		// was folded to, the cold start and the one being measured, and
		// the pending pre-warm.
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS idle_histogram text`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS burst_end timestamp`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS idle_folded_to timestamp`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cold_start_seconds double`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cold_start_weight double`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cold_start_at timestamp`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS cold_from timestamp`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS prewarm_at timestamp`, q(tableState)),
		fmt.Sprintf(`ALTER TABLE %s ADD IF NOT EXISTS prewarm_for timestamp`, q(tableState)),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			lock_name text PRIMARY KEY, node_id text, acquired_at timestamp, expires_at timestamp)`, q(tableLocks)),
	}
}

// EnsureSchema creates what is missing; it never alters or drops, so running
// it from every replica on every start is safe.
func (s *Store) EnsureSchema(ctx context.Context) error {
	for _, stmt := range SchemaStatements(s.cfg.Keyspace, s.cfg.Replication) {
		if err := s.session.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("ensure schema (%s): %w", firstLine(stmt), err)
		}
	}
	return nil
}

// CheckSchema reports the tables missing from the keyspace, for installs
// where the schema is created by someone else.
func (s *Store) CheckSchema(ctx context.Context) error {
	have := map[string]bool{}
	iter := s.session.Query(`SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?`, s.cfg.Keyspace).WithContext(ctx).Iter()
	var name string
	for iter.Scan(&name) {
		have[name] = true
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("check schema of keyspace %s: %w", s.cfg.Keyspace, err)
	}
	var missing []string
	for _, t := range []string{tableInvoked, tableRunning, tableState, tableLocks} {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("keyspace %s lacks tables %s: run the schema Job (cassandra.schemaJob.enabled) or set CASSANDRA_ENSURE_SCHEMA=true", s.cfg.Keyspace, strings.Join(missing, ", "))
	}
	return nil
}

// observer classifies requests for Config.Observer. Schema statements and
// the system-table ping count as reads and writes like any other.
type observer func(kind string, failed bool)

func (o observer) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	o(statementKind(q.Statement), q.Err != nil)
}

// ObserveBatch counts a conditional batch (a write claim) as the one
// Paxos round it is, and any other batch statement by statement.
func (o observer) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	for _, stmt := range b.Statements {
		if statementKind(stmt) == "lwt" {
			o("lwt", b.Err != nil)
			return
		}
	}
	for _, stmt := range b.Statements {
		o(statementKind(stmt), b.Err != nil)
	}
}

var conditional = regexp.MustCompile(`(?is)\sIF\s+(NOT\s+EXISTS|EXISTS|\w+\s*(=|!=|<|>|IN\b))`)

// kinds remembers each statement text's kind: the texts are a few dozen
// templates (values travel as bind markers), while the regexp behind
// classifyStatement cost 8% of the scale function's CPU, and half a CPU
// second of discovery's, in a 100,000-version cycle that ran it on every
// request. Bounded, in case a caller ever inlines values in its text.
var kinds struct {
	sync.Mutex
	m map[string]string
}

const maxKinds = 1024

func statementKind(stmt string) string {
	kinds.Lock()
	k, ok := kinds.m[stmt]
	kinds.Unlock()
	if ok {
		return k
	}
	k = classifyStatement(stmt)
	kinds.Lock()
	if kinds.m == nil {
		kinds.m = map[string]string{}
	}
	if len(kinds.m) < maxKinds {
		kinds.m[stmt] = k
	}
	kinds.Unlock()
	return k
}

func classifyStatement(stmt string) string {
	verb, _, _ := strings.Cut(strings.TrimSpace(stmt), " ")
	switch strings.ToUpper(verb) {
	case "SELECT":
		return "read"
	case "INSERT", "UPDATE", "DELETE":
		if conditional.MatchString(stmt) {
			return "lwt"
		}
	}
	// Other writes, and schema statements (their IF [NOT] EXISTS is no
	// Paxos round).
	return "write"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '('); i > 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// ttlSeconds converts a TTL for CQL, which counts whole seconds; a
// sub-second TTL would become 0, which Cassandra reads as "never expire".
func ttlSeconds(ttl time.Duration) (int, error) {
	secs := int(ttl / time.Second)
	if secs < 1 {
		return 0, fmt.Errorf("ttl %s is below Cassandra's 1 s resolution", ttl)
	}
	return secs, nil
}
