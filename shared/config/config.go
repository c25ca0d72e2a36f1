// Package config reads each role's settings from the environment (and from
// func-go's ./cfg file, which arrives merged into the same map) once, at
// Start, and validates them there: a bad value stops the function from
// becoming ready with an error that names the variable and the form it
// expects, instead of surfacing as a strange decision hours later.
//
// Secrets are read from files named by *_FILE variables (or, for the
// Cassandra password, from the environment) and are never printed: String
// methods of types holding them redact.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kelseyhightower/envconfig"

	"function/shared/buckets"
	"function/shared/tlsfiles"
)

// Role selects which handlers a process serves. The chart may run one image
// as two Knative Services (discovery: one at a time; scale: many).
type Role string

// The roles.
const (
	RoleAll       Role = "all"
	RoleDiscovery Role = "discovery"
	RoleScale     Role = "scale"
)

// Serves reports whether the role includes r.
func (r Role) Serves(other Role) bool { return r == RoleAll || r == other }

// Cassandra is how to reach the store.
type Cassandra struct {
	Hosts             []string      `envconfig:"CASSANDRA_HOSTS" default:"127.0.0.1:9042" desc:"comma-separated contact points, host[:port]"`
	Keyspace          string        `envconfig:"CASSANDRA_KEYSPACE" default:"nvcf_autoscaler" desc:"keyspace, created if missing"`
	ReplicationFactor int           `envconfig:"CASSANDRA_REPLICATION_FACTOR" default:"1" desc:"SimpleStrategy replication factor used when creating the keyspace"`
	Replication       string        `envconfig:"CASSANDRA_REPLICATION" desc:"full CQL replication map; overrides CASSANDRA_REPLICATION_FACTOR (e.g. {'class':'NetworkTopologyStrategy','dc1':3})"`
	Username          string        `envconfig:"CASSANDRA_USERNAME" desc:"user for password authentication"`
	Password          string        `envconfig:"CASSANDRA_PASSWORD" desc:"password (prefer CASSANDRA_PASSWORD_FILE)"`
	PasswordFile      string        `envconfig:"CASSANDRA_PASSWORD_FILE" desc:"file holding the password"`
	LocalDC           string        `envconfig:"CASSANDRA_LOCAL_DC" desc:"prefer coordinators in this datacenter"`
	Consistency       string        `envconfig:"CASSANDRA_CONSISTENCY" default:"LOCAL_QUORUM" desc:"consistency of reads and writes"`
	SerialConsistency string        `envconfig:"CASSANDRA_SERIAL_CONSISTENCY" default:"LOCAL_SERIAL" desc:"SERIAL or LOCAL_SERIAL for lightweight transactions"`
	CQLTimeout        time.Duration `envconfig:"CASSANDRA_TIMEOUT" default:"10s" desc:"per-request timeout"`
	PageSize          int           `envconfig:"CASSANDRA_PAGE_SIZE" default:"2000" desc:"rows per page when reading a bucket"`
	EnsureSchema      bool          `envconfig:"CASSANDRA_ENSURE_SCHEMA" default:"true" desc:"create the keyspace and tables at start; false only checks they exist (the chart's schema Job creates them)"`
	// TLS is explicit rather than implied by a CA file, so that a typo in a
	// file setting cannot silently leave the connection in plaintext: every
	// TLS file set without it is refused.
	TLS           bool   `envconfig:"CASSANDRA_TLS" default:"false" desc:"connect with TLS (Cassandra's client_encryption_options)"`
	TLSCAFile     string `envconfig:"CASSANDRA_TLS_CA_FILE" desc:"CA bundle for the nodes' certificates (default: the system roots)"`
	TLSCertFile   string `envconfig:"CASSANDRA_TLS_CERT_FILE" desc:"client certificate, for nodes that require one (with CASSANDRA_TLS_KEY_FILE)"`
	TLSKeyFile    string `envconfig:"CASSANDRA_TLS_KEY_FILE" desc:"client key (with CASSANDRA_TLS_CERT_FILE)"`
	TLSVerifyHost bool   `envconfig:"CASSANDRA_TLS_VERIFY_HOST" default:"true" desc:"check that a node's certificate names the address dialled (the chain is always checked)"`
}

// TLSFiles is the Cassandra connection's TLS material, nil without TLS.
func (c Cassandra) TLSFiles() *tlsfiles.Files {
	if !c.TLS {
		return nil
	}
	return &tlsfiles.Files{
		CAFile: c.TLSCAFile, CASetting: "CASSANDRA_TLS_CA_FILE",
		CertFile: c.TLSCertFile, CertSetting: "CASSANDRA_TLS_CERT_FILE",
		KeyFile: c.TLSKeyFile, KeySetting: "CASSANDRA_TLS_KEY_FILE",
		SkipHostVerification: !c.TLSVerifyHost, HostSetting: "CASSANDRA_TLS_VERIFY_HOST",
	}
}

// TSDB is how to reach the Prometheus-compatible store.
type TSDB struct {
	URL          string        `envconfig:"TSDB_URL" desc:"base URL of Prometheus, VictoriaMetrics, Thanos or Mimir (required)"`
	Auth         string        `envconfig:"TSDB_AUTH" default:"none" desc:"none, token or mtls"`
	TokenFile    string        `envconfig:"TSDB_TOKEN_FILE" desc:"bearer token file (auth=token), re-read when it changes"`
	CAFile       string        `envconfig:"TSDB_CA_FILE" desc:"CA bundle for the TSDB's certificate"`
	CertFile     string        `envconfig:"TSDB_CERT_FILE" desc:"client certificate (auth=mtls)"`
	KeyFile      string        `envconfig:"TSDB_KEY_FILE" desc:"client key (auth=mtls)"`
	QueryTimeout time.Duration `envconfig:"TSDB_TIMEOUT" default:"30s" desc:"HTTP timeout of one query"`
	// NVCF's series name the environment per family (worker
	// environment=prod|stage, control plane environment=production|staging,
	// gateway and latency aws_env=prd|stg); self-hosted series carry none,
	// hence the default of ignoring it.
	Environment string `envconfig:"TSDB_ENVIRONMENT" default:"production" desc:"NVCF environment whose series are read: production or staging (each family's label is filtered its own way)"`
	IgnoreEnv   bool   `envconfig:"TSDB_IGNORE_ENV" default:"true" desc:"read every environment, ignoring TSDB_ENVIRONMENT (self-hosted series carry no environment labels); false on NVCF-hosted metrics"`
	EnvLabel    string `envconfig:"TSDB_ENV_LABEL" desc:"one more label to filter every selector on (off when empty)"`
	EnvValue    string `envconfig:"TSDB_ENV_VALUE" desc:"value of TSDB_ENV_LABEL"`
	// MaxSelectorBytes is tsdb.DefaultMaxSelectorBytes: its queries fit
	// VictoriaMetrics' default -search.maxQueryLen (16 KiB), the longest
	// being about 2.5 times the id list.
	MaxSelectorBytes int `envconfig:"TSDB_MAX_SELECTOR_BYTES" default:"5120" desc:"longest version-id list in one batched selector; a bucket with more is split into several queries (the longest query is about 2.5 times this: raise it with VictoriaMetrics' -search.maxQueryLen)"`
}

// TLSFiles is the TSDB connection's TLS material: used for https URLs.
func (t TSDB) TLSFiles() tlsfiles.Files {
	return tlsfiles.Files{
		CAFile: t.CAFile, CASetting: "TSDB_CA_FILE",
		CertFile: t.CertFile, CertSetting: "TSDB_CERT_FILE",
		KeyFile: t.KeyFile, KeySetting: "TSDB_KEY_FILE",
	}
}

// Common is shared by every role.
type Common struct {
	Role     Role   `envconfig:"AUTOSCALER_ROLE" default:"all" desc:"all, discovery or scale"`
	NodeID   string `envconfig:"NODE_ID" desc:"owner name used in locks (default: hostname-pid)"`
	LogLevel string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	Buckets  int    `envconfig:"BUCKETS" default:"128" desc:"token-range buckets the ring is split into"`
	// ClockSkew bounds how far ahead of a replica's clock a tick or a bucket
	// cycle may be: a cycle becomes each version's last applied one, so one
	// from the future would make real cycles look like replays.
	ClockSkew time.Duration `envconfig:"MAX_CLOCK_SKEW" default:"10s" desc:"how far a tick's time or a bucket's cycle may be ahead of this replica's clock; a tick beyond it is taken as now, a bucket beyond it is refused (400)"`
	// MaxEventBytes bounds a request body: without it a 200 MB body was
	// read whole (RSS 25 -> 550 MB) before being refused, and a few at once
	// would pass the chart's memory limit. The largest event the autoscaler
	// is sent (an activation in structured mode, ids at their 128-character
	// maximum, with the attributes a Broker adds) is under 2 KiB.
	MaxEventBytes int64 `envconfig:"MAX_EVENT_BYTES" default:"65536" desc:"largest request body accepted; a larger one is refused with 413 before it is read"`
	// MetricsAddress serves /metrics beside func-go's port, which only
	// carries CloudEvents and health.
	MetricsAddress string `envconfig:"METRICS_ADDRESS" desc:"host:port for /metrics (off when empty; the chart sets :9095)"`
	MetricsPprof   bool   `envconfig:"METRICS_PPROF" default:"false" desc:"also serve Go's /debug/pprof on METRICS_ADDRESS (for profiling)"`
	// Four series per version: fine for thousands, a cost for 100k.
	MetricsPerVersion bool `envconfig:"METRICS_PER_VERSION" default:"true" desc:"per-version gauges (current, desired, utilization, status); turn off above ~10,000 versions per process"`
	// Tracing is off unless an exporter is named; the OTLP exporter reads
	// its endpoint, headers and timeout from the standard
	// OTEL_EXPORTER_OTLP_* variables itself.
	TracesExporter   string  `envconfig:"OTEL_TRACES_EXPORTER" default:"none" desc:"none (tracing off), otlp (OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or stdout"`
	ServiceName      string  `envconfig:"OTEL_SERVICE_NAME" desc:"service.name of the spans (default: nvcf-autoscaler-<role>)"`
	TracesSamplerArg float64 `envconfig:"OTEL_TRACES_SAMPLER_ARG" default:"1" desc:"fraction of new traces sampled, in [0, 1]; spans with a parent follow its decision"`
	Cassandra
	TSDB
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// envMu serializes the loads: cfg's values are put in the process
// environment for envconfig to read, and taken out again.
var envMu sync.Mutex

// withCfg runs f with cfg's values (func-go's merged env and ./cfg) in the
// process environment where it has none, the environment winning as in
// func-go, and unsets them again afterwards: a load must not leave its
// values behind to override the next caller's (tests and the policy
// benchmark load many settings in one process).
func withCfg(cfg map[string]string, f func() error) error {
	envMu.Lock()
	defer envMu.Unlock()
	var added []string
	defer func() {
		for _, k := range added {
			_ = os.Unsetenv(k)
		}
	}()
	for k, v := range cfg {
		if _, set := os.LookupEnv(k); !set {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("config: set %s: %w", k, err)
			}
			added = append(added, k)
		}
	}
	return f()
}

// load fills spec from the process environment (inside withCfg: and cfg).
func load(spec any) error {
	if err := envconfig.Process("", spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("config: %s=%q is not a valid %s", pe.KeyName, pe.Value, pe.TypeName)
		}
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// validate checks the settings every role shares and resolves secret files.
func (c *Common) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch c.Role {
	case RoleAll, RoleDiscovery, RoleScale:
	default:
		add("AUTOSCALER_ROLE=%q: want all, discovery or scale", c.Role)
	}
	if c.NodeID == "" {
		host, _ := os.Hostname()
		c.NodeID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.TracesExporter {
	case "", "none":
		c.TracesExporter = "none"
	case "otlp", "stdout":
	default:
		add("OTEL_TRACES_EXPORTER=%q: want none, otlp or stdout", c.TracesExporter)
	}
	if c.ServiceName == "" {
		c.ServiceName = "nvcf-autoscaler-" + string(c.Role)
	}
	if !(c.TracesSamplerArg >= 0 && c.TracesSamplerArg <= 1) {
		add("OTEL_TRACES_SAMPLER_ARG=%g: want a fraction in [0, 1]", c.TracesSamplerArg)
	}
	if c.MaxEventBytes < 1024 {
		add("MAX_EVENT_BYTES=%d: want at least 1024 bytes (an event is a few hundred)", c.MaxEventBytes)
	}
	if c.ClockSkew < 0 {
		add("MAX_CLOCK_SKEW=%s: want a duration >= 0 such as 10s", c.ClockSkew)
	}
	if err := buckets.Validate(c.Buckets); err != nil {
		add("BUCKETS=%d: want an integer in [1, %d]", c.Buckets, buckets.MaxCount)
	}

	if len(c.Hosts) == 0 || c.Hosts[0] == "" {
		add("CASSANDRA_HOSTS is empty: want host[:port][,host[:port]...]")
	}
	if !regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`).MatchString(c.Keyspace) {
		add("CASSANDRA_KEYSPACE=%q: want a lower-case identifier ([a-z][a-z0-9_]*, at most 48 characters)", c.Keyspace)
	}
	if c.Replication == "" {
		if c.ReplicationFactor < 1 {
			add("CASSANDRA_REPLICATION_FACTOR=%d: want an integer >= 1", c.ReplicationFactor)
		}
		c.Replication = fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", c.ReplicationFactor)
	} else if !strings.HasPrefix(strings.TrimSpace(c.Replication), "{") {
		add("CASSANDRA_REPLICATION=%q: want a CQL map such as {'class': 'NetworkTopologyStrategy', 'dc1': 3}", c.Replication)
	}
	if _, err := ParseConsistency(c.Consistency); err != nil {
		add("CASSANDRA_CONSISTENCY=%q: %v", c.Consistency, err)
	}
	if c.SerialConsistency != "SERIAL" && c.SerialConsistency != "LOCAL_SERIAL" {
		add("CASSANDRA_SERIAL_CONSISTENCY=%q: want SERIAL or LOCAL_SERIAL", c.SerialConsistency)
	}
	if c.CQLTimeout <= 0 {
		add("CASSANDRA_TIMEOUT=%s: want a positive duration such as 10s", c.CQLTimeout)
	}
	if c.PageSize < 1 {
		add("CASSANDRA_PAGE_SIZE=%d: want an integer >= 1", c.PageSize)
	}
	if f := c.Cassandra.TLSFiles(); f != nil {
		// Read now, so a missing or unreadable file stops Start with its
		// setting named instead of surfacing as a connect retry loop.
		if _, err := f.Config(); err != nil {
			errs = append(errs, err)
		}
	} else if c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" {
		add("CASSANDRA_TLS_CA_FILE, CASSANDRA_TLS_CERT_FILE and CASSANDRA_TLS_KEY_FILE apply only with CASSANDRA_TLS=true: set it, or the connection stays plaintext")
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			add("CASSANDRA_PASSWORD_FILE=%q: cannot read: %v", c.PasswordFile, errors.Unwrap(err))
		} else {
			c.Password = strings.TrimRight(string(b), "\r\n")
		}
	}

	if c.URL == "" {
		add("TSDB_URL is not set: want the base URL of a Prometheus-compatible API, e.g. http://victoria-metrics:8428")
	} else if err := checkURL("TSDB_URL", c.URL, "put the token in a file and set TSDB_AUTH=token and TSDB_TOKEN_FILE"); err != nil {
		errs = append(errs, err)
	}
	switch c.Auth {
	case "none":
	case "token":
		if c.TokenFile == "" {
			add("TSDB_AUTH=token needs TSDB_TOKEN_FILE")
		}
	case "mtls":
		if c.CertFile == "" || c.KeyFile == "" {
			add("TSDB_AUTH=mtls needs TSDB_CERT_FILE and TSDB_KEY_FILE")
		}
	default:
		add("TSDB_AUTH=%q: want none, token or mtls", c.Auth)
	}
	if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
		if !strings.HasPrefix(c.URL, "https://") {
			add("TSDB_CA_FILE, TSDB_CERT_FILE and TSDB_KEY_FILE apply only to an https TSDB_URL (it is %q)", SafeURL(c.URL))
		} else if _, err := c.TSDB.TLSFiles().Config(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxSelectorBytes < 1 {
		add("TSDB_MAX_SELECTOR_BYTES=%d: want a positive number of bytes", c.MaxSelectorBytes)
	}
	if c.QueryTimeout <= 0 {
		add("TSDB_TIMEOUT=%s: want a positive duration such as 30s", c.QueryTimeout)
	}
	if c.EnvLabel != "" && !labelNameRE.MatchString(c.EnvLabel) {
		add("TSDB_ENV_LABEL=%q: want a Prometheus label name matching %s", c.EnvLabel, labelNameRE)
	}
	if c.Environment != "production" && c.Environment != "staging" {
		add("TSDB_ENVIRONMENT=%q: want production or staging", c.Environment)
	}
	if (c.EnvLabel == "") != (c.EnvValue == "") {
		add("TSDB_ENV_LABEL and TSDB_ENV_VALUE must be set together")
	}
	return errors.Join(errs...)
}

// userinfoRE finds the credentials of a URL, parsable or not: everything
// between the scheme and the last '@' before the path.
var userinfoRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@`)

// SafeURL is raw with any credentials replaced by Redacted, for messages.
// The whole userinfo goes, not only the password: a bare token is often
// passed as the user name.
func SafeURL(raw string) string { return userinfoRE.ReplaceAllString(raw, "${1}"+Redacted+"@") }

// checkURL validates an absolute http(s) URL setting. Credentials in it are
// refused rather than redacted where printed: a URL is logged, repeated in
// errors and kept in a ConfigMap, while secrets belong in files (fixes
// names the file setting to use). No message repeats them.
func checkURL(name, raw, fix string) error {
	if userinfoRE.MatchString(raw) {
		return fmt.Errorf("%s=%q carries credentials: %s (a URL is printed in logs and kept in a ConfigMap; secrets are read from files)", name, SafeURL(raw), fix)
	}
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s=%q: want an absolute http(s) URL", name, SafeURL(raw))
	}
	return nil
}

// EnvFilter is the environment the TSDB selectors filter on: empty when
// TSDB_IGNORE_ENV is set.
func (t TSDB) EnvFilter() string {
	if t.IgnoreEnv {
		return ""
	}
	return t.Environment
}

// ParseConsistency accepts Cassandra's consistency names.
func ParseConsistency(s string) (string, error) {
	switch s {
	case "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE":
		return s, nil
	}
	return "", errors.New("want one of ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE, ALL")
}

// Redacted is what String methods print instead of a secret.
const Redacted = "[redacted]"

// String describes the settings without any secret, for the start-up log.
func (c Common) String() string {
	pw := ""
	if c.Password != "" {
		pw = Redacted
	}
	return fmt.Sprintf("role=%s node=%s buckets=%d cassandra=%s keyspace=%s user=%q password=%s cassandra_tls=%t tsdb=%s auth=%s traces=%s",
		c.Role, c.NodeID, c.Buckets, strings.Join(c.Hosts, ","), c.Keyspace, c.Username, pw, c.TLS, SafeURL(c.URL), c.Auth, c.TracesExporter)
}
