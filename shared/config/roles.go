package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"function/shared/tlsfiles"
)

// Discovery configures the discovery function.
type Discovery struct {
	// Period is the PingSource's cron period. The lock TTL and the bucket
	// deadline are checked against it so one cycle cannot overlap the next.
	Period          time.Duration `envconfig:"DISCOVERY_PERIOD" default:"60s" desc:"cron period of the PingSource"`
	LockTTL         time.Duration `envconfig:"DISCOVERY_LOCK_TTL" default:"50s" desc:"discovery lock TTL; must be shorter than DISCOVERY_PERIOD"`
	Lookback        time.Duration `envconfig:"DISCOVERY_LOOKBACK" default:"600s" desc:"how far back requests or workers make a version active"`
	RowTTL          time.Duration `envconfig:"ACTIVE_ROW_TTL" default:"1800s" desc:"TTL of discovered rows; versions not seen again age out"`
	Sink            string        `envconfig:"K_SINK" desc:"where bucket events go (injected by the SinkBinding)"`
	SendConcurrency int           `envconfig:"SEND_CONCURRENCY" default:"16" desc:"bucket events sent in parallel"`
	SendAttempts    int           `envconfig:"SEND_ATTEMPTS" default:"4" desc:"attempts per bucket event before the cycle reports it failed"`
	BucketDeadline  time.Duration `envconfig:"BUCKET_DEADLINE" default:"55s" desc:"a bucket event older than this is dropped by the scale function, whatever deadline it carries (set the same value on both roles)"`
}

// Scale configures the scale function.
type Scale struct {
	Concurrency     int           `envconfig:"SCALE_CONCURRENCY" default:"10" desc:"functions decided and written in parallel per bucket"`
	FunctionLockTTL time.Duration `envconfig:"FUNCTION_LOCK_TTL" default:"15s" desc:"lease of a version's write claim; bounds one NVCF write"`
	StateTTL        time.Duration `envconfig:"STATE_TTL" default:"24h" desc:"TTL of per-function scaling state"`
	RowTTL          time.Duration `envconfig:"ACTIVE_ROW_TTL" default:"1800s" desc:"TTL refreshed on rows of functions still above zero"`
	NotFoundRetry   time.Duration `envconfig:"NOT_FOUND_RETRY" default:"10m" desc:"how long a version the NVCF API called NotFound is left alone"`

	// A line per version per cycle is 100,000 lines a minute at 100,000
	// versions, nearly all of them saying the count stays what it is.
	LogUnchanged bool `envconfig:"DECISION_LOG_UNCHANGED" default:"true" desc:"a decision line at info for every version each cycle; false logs those whose requested count stays unchanged at debug (LOG_LEVEL=debug shows them), for fleets above ~10,000 versions per process"`

	Window   time.Duration `envconfig:"UTILIZATION_WINDOW" default:"70s" desc:"rate window of the utilization query"`
	Step     time.Duration `envconfig:"UTILIZATION_STEP" default:"60s" desc:"step of the utilization samples"`
	Lookback time.Duration `envconfig:"UTILIZATION_LOOKBACK" default:"600s" desc:"how many samples the policy sees"`

	PolicyMode          string        `envconfig:"POLICY_MODE" default:"target" desc:"target (target tracking) or nvcf (the reference's rules, for migrating operators)"`
	PolicyOverridesFile string        `envconfig:"POLICY_OVERRIDES_FILE" desc:"JSON file of per-function and per-version policy overrides"`
	UpThreshold         float64       `envconfig:"SCALE_UP_THRESHOLD" default:"70" desc:"utilization percent above which to scale up"`
	DownThreshold       float64       `envconfig:"SCALE_DOWN_THRESHOLD" default:"30" desc:"utilization percent below which to scale down"`
	UpFactor            float64       `envconfig:"SCALE_UP_FACTOR" default:"1.2" desc:"nvcf mode: multiply instances by this to scale up"`
	DownFactor          float64       `envconfig:"SCALE_DOWN_FACTOR" default:"0.8" desc:"nvcf mode: multiply instances by this to scale down"`
	TargetUtilization   float64       `envconfig:"TARGET_UTILIZATION" default:"75" desc:"target mode: utilization percent per instance to aim for"`
	Tolerance           float64       `envconfig:"TARGET_TOLERANCE" default:"0.1" desc:"target mode: relative change ignored"`
	Decay               float64       `envconfig:"UTILIZATION_DECAY" default:"0" desc:"exponential decay of the utilization average (0 = mean)"`
	ScaleToZero         bool          `envconfig:"SCALE_TO_ZERO" default:"true" desc:"allow idle functions to go to zero"`
	IdleTimeout         time.Duration `envconfig:"SCALE_TO_ZERO_IDLE_TIMEOUT" default:"1800s" desc:"no invocations for this long (and low utilization) scales to zero"`
	KeepAlive           string        `envconfig:"KEEP_ALIVE" default:"learned" desc:"fixed (SCALE_TO_ZERO_IDLE_TIMEOUT) or learned (per version, from its idle gaps: keep-alive, early release and pre-warming; the fixed timeout where that is no better; unset with POLICY_MODE=nvcf: fixed, as the reference)"`
	KeepAlivePercentile float64       `envconfig:"KEEP_ALIVE_PERCENTILE" default:"99" desc:"learned keep-alive: keep an idle version up to this percentile of its idle gaps, plus 10 %"`
	PrewarmPercentile   float64       `envconfig:"PREWARM_PERCENTILE" default:"5" desc:"learned keep-alive: pre-warm a released version one cold start before this percentile of its idle gaps, less 10 %"`
	DownStabilization   time.Duration `envconfig:"SCALE_DOWN_STABILIZATION" default:"120s" desc:"scale down only to the highest recommendation inside this window (unset with POLICY_MODE=nvcf: 0s, as the reference)"`
	DownFlapWindow      time.Duration `envconfig:"SCALE_DOWN_FLAP_WINDOW" default:"20m" desc:"widen the stabilization window to this while a version's load flips (a fall by a quarter and 2 instances for at least SCALE_DOWN_STABILIZATION, then back to its peak), holding it at the high phase (0 = off; unset with POLICY_MODE=nvcf: 0s, as the reference)"`
	MaxScaleUpRate      float64       `envconfig:"MAX_SCALE_UP_RATE" default:"10" desc:"at most this many times the current instances per decision (0 = unlimited; unset with POLICY_MODE=nvcf: 0)"`
	MaxScaleDownRate    float64       `envconfig:"MAX_SCALE_DOWN_RATE" default:"1.5" desc:"at most divide the current instances by this per decision (0 = unlimited; unset with POLICY_MODE=nvcf: 0)"`
	MinInstances        int           `envconfig:"MIN_INSTANCES" default:"0" desc:"default lower bound (the NVCF API also clamps to its spec)"`
	MaxInstances        int           `envconfig:"MAX_INSTANCES" default:"0" desc:"default upper bound, 0 = unbounded (the NVCF API clamps)"`

	NVCFTransport          string        `envconfig:"NVCF_TRANSPORT" default:"http" desc:"http or grpc"`
	NVCFURL                string        `envconfig:"NVCF_API_URL" desc:"base URL of the NVCF HTTP API (transport http)"`
	NVCFGRPCAddr           string        `envconfig:"NVCF_GRPC_ADDR" desc:"host:port of the nvcf.Autoscaler gRPC service (transport grpc)"`
	NVCFGRPCInsecure       bool          `envconfig:"NVCF_GRPC_INSECURE" default:"false" desc:"plaintext gRPC (local testing only)"`
	NVCFGRPCCAFile         string        `envconfig:"NVCF_GRPC_CA_FILE" desc:"CA bundle for the gRPC server's certificate (default: the system roots)"`
	NVCFGRPCCertFile       string        `envconfig:"NVCF_GRPC_CERT_FILE" desc:"client certificate for gRPC, where the server requires one (with NVCF_GRPC_KEY_FILE)"`
	NVCFGRPCKeyFile        string        `envconfig:"NVCF_GRPC_KEY_FILE" desc:"client key for gRPC (with NVCF_GRPC_CERT_FILE)"`
	NVCFAPICAFile          string        `envconfig:"NVCF_API_CA_FILE" desc:"CA bundle for an https NVCF_API_URL's certificate (default: the system roots)"`
	NVCFAPICertFile        string        `envconfig:"NVCF_API_CERT_FILE" desc:"client certificate for the HTTP API, where it requires one (with NVCF_API_KEY_FILE)"`
	NVCFAPIKeyFile         string        `envconfig:"NVCF_API_KEY_FILE" desc:"client key for the HTTP API (with NVCF_API_CERT_FILE)"`
	NVCFAccountScoped      bool          `envconfig:"NVCF_ACCOUNT_SCOPED" default:"false" desc:"use /v2/nvcf/accounts/{ncaId}/predictions/..."`
	NVCFTokenFile          string        `envconfig:"NVCF_TOKEN_FILE" desc:"static bearer token file, re-read when it changes"`
	NVCFOAuthTokenURL      string        `envconfig:"NVCF_OAUTH_TOKEN_URL" desc:"OAuth2 client-credentials token endpoint"`
	NVCFOAuthClientID      string        `envconfig:"NVCF_OAUTH_CLIENT_ID" desc:"OAuth2 client id"`
	NVCFOAuthClientSecretF string        `envconfig:"NVCF_OAUTH_CLIENT_SECRET_FILE" desc:"file holding the OAuth2 client secret, re-read when it changes"`
	NVCFOAuthCAFile        string        `envconfig:"NVCF_OAUTH_CA_FILE" desc:"CA bundle for an https NVCF_OAUTH_TOKEN_URL's certificate (default: the system roots)"`
	NVCFOAuthCertFile      string        `envconfig:"NVCF_OAUTH_CERT_FILE" desc:"client certificate for the token endpoint, where it requires one (with NVCF_OAUTH_KEY_FILE)"`
	NVCFOAuthKeyFile       string        `envconfig:"NVCF_OAUTH_KEY_FILE" desc:"client key for the token endpoint (with NVCF_OAUTH_CERT_FILE)"`
	NVCFTimeout            time.Duration `envconfig:"NVCF_TIMEOUT" default:"5s" desc:"timeout of one NVCF call"`
	NVCFRate               float64       `envconfig:"NVCF_RATE" default:"2000" desc:"client-side rate limit, requests per second"`
	NVCFBurst              int           `envconfig:"NVCF_BURST" default:"5000" desc:"client-side rate-limit burst"`
	NVCFMaxAttempts        int           `envconfig:"NVCF_MAX_ATTEMPTS" default:"4" desc:"attempts per write on 429/5xx/unavailable"`
	NVCFMaxQueueAge        time.Duration `envconfig:"NVCF_MAX_QUEUE_AGE" default:"15s" desc:"a write waiting longer than this for the limiter fails"`
	NVCFDryRun             bool          `envconfig:"NVCF_DRY_RUN" default:"false" desc:"log what would be written, write nothing"`
}

// Settings is everything a process needs; the role-specific parts are
// validated only when the role serves them.
type Settings struct {
	Common
	Discovery Discovery `ignored:"true"`
	Scale     Scale     `ignored:"true"`
}

// Load reads and validates the settings for the role named by
// AUTOSCALER_ROLE. The error lists every problem at once, each naming its
// variable, so an operator fixes a manifest in one go.
func Load(cfg map[string]string) (Settings, error) {
	var s Settings
	err := withCfg(cfg, func() error {
		if err := load(&s.Common); err != nil {
			return err
		}
		if err := load(&s.Discovery); err != nil {
			return err
		}
		var err error
		s.Scale, err = loadScale()
		return err
	})
	if err != nil {
		return s, err
	}
	errs := []error{s.Common.validate()}
	if s.Role.Serves(RoleDiscovery) {
		errs = append(errs, s.Discovery.validate())
	}
	if s.Role.Serves(RoleScale) {
		errs = append(errs, s.Scale.validate())
		// The scale function cuts every bucket's deadline back to its cycle
		// plus BUCKET_DEADLINE, so it needs a sane value even without the
		// discovery role.
		if !s.Role.Serves(RoleDiscovery) && s.Discovery.BucketDeadline <= 0 {
			errs = append(errs, fmt.Errorf("BUCKET_DEADLINE=%s: want a positive duration (the same as discovery's)", s.Discovery.BucketDeadline))
		}
	}
	// A cycle up to MAX_CLOCK_SKEW ahead is accepted and recorded as applied;
	// the next tick must come after it, or real cycles would be skipped.
	if s.ClockSkew >= s.Discovery.Period {
		errs = append(errs, fmt.Errorf("MAX_CLOCK_SKEW=%s: want less than DISCOVERY_PERIOD (%s)", s.ClockSkew, s.Discovery.Period))
	}
	return s, errors.Join(errs...)
}

// LoadScale reads the scale function's settings from cfg and the
// environment, with the mode-dependent defaults applied, without
// validating them (Load does). The policy benchmark uses it to measure
// exactly what a mode's defaults are.
//
// In nvcf mode the guards the reference autoscaler does not have default
// to off, and keep-alive to its fixed idle timeout, so that
// POLICY_MODE=nvcf alone replays the reference (the migration path); an
// operator who sets one explicitly keeps it.
func LoadScale(cfg map[string]string) (Scale, error) {
	var s Scale
	err := withCfg(cfg, func() error {
		var err error
		s, err = loadScale()
		return err
	})
	return s, err
}

// loadScale is LoadScale inside withCfg.
func loadScale() (Scale, error) {
	var s Scale
	if err := load(&s); err != nil {
		return s, err
	}
	if s.PolicyMode != "nvcf" {
		return s, nil
	}
	asReference := map[string]func(){
		"SCALE_DOWN_STABILIZATION": func() { s.DownStabilization = 0 },
		"SCALE_DOWN_FLAP_WINDOW":   func() { s.DownFlapWindow = 0 },
		"MAX_SCALE_UP_RATE":        func() { s.MaxScaleUpRate = 0 },
		"MAX_SCALE_DOWN_RATE":      func() { s.MaxScaleDownRate = 0 },
		"KEEP_ALIVE":               func() { s.KeepAlive = "fixed" },
	}
	for key, reset := range asReference {
		if _, set := os.LookupEnv(key); !set {
			reset()
		}
	}
	return s, nil
}

func (d *Discovery) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// PingSource schedules have minute granularity; shorter periods exist
	// for the accelerated local loop, where a stand-in sends the ticks.
	if d.Period < time.Second {
		add("DISCOVERY_PERIOD=%s: want at least 1s (1m or more with a PingSource)", d.Period)
	}
	if d.LockTTL < time.Second || d.LockTTL >= d.Period {
		add("DISCOVERY_LOCK_TTL=%s: want at least 1s and shorter than DISCOVERY_PERIOD (%s) so a dead leader's lock frees before the next tick", d.LockTTL, d.Period)
	}
	if d.Lookback < 10*time.Second {
		add("DISCOVERY_LOOKBACK=%s: want at least 10s", d.Lookback)
	}
	if d.RowTTL < d.Period {
		add("ACTIVE_ROW_TTL=%s: want at least DISCOVERY_PERIOD (%s), or rows vanish between cycles", d.RowTTL, d.Period)
	}
	if d.Sink == "" {
		add("K_SINK is not set: want the URL bucket events are sent to (a SinkBinding injects it)")
	} else if err := checkURL("K_SINK", d.Sink, "the Broker's ingress needs none"); err != nil {
		errs = append(errs, err)
	}
	if d.SendConcurrency < 1 {
		add("SEND_CONCURRENCY=%d: want an integer >= 1", d.SendConcurrency)
	}
	if d.SendAttempts < 1 {
		add("SEND_ATTEMPTS=%d: want an integer >= 1", d.SendAttempts)
	}
	if d.BucketDeadline <= 0 || d.BucketDeadline > d.Period {
		add("BUCKET_DEADLINE=%s: want a positive duration no longer than DISCOVERY_PERIOD (%s)", d.BucketDeadline, d.Period)
	}
	return errors.Join(errs...)
}

// NVCFGRPCTLSFiles is the gRPC connection's TLS material (unused with
// NVCF_GRPC_INSECURE).
func (s Scale) NVCFGRPCTLSFiles() tlsfiles.Files {
	return tlsfiles.Files{
		CAFile: s.NVCFGRPCCAFile, CASetting: "NVCF_GRPC_CA_FILE",
		CertFile: s.NVCFGRPCCertFile, CertSetting: "NVCF_GRPC_CERT_FILE",
		KeyFile: s.NVCFGRPCKeyFile, KeySetting: "NVCF_GRPC_KEY_FILE",
	}
}

// NVCFAPITLSFiles is the HTTP API's TLS material, for an https
// NVCF_API_URL.
func (s Scale) NVCFAPITLSFiles() tlsfiles.Files {
	return tlsfiles.Files{
		CAFile: s.NVCFAPICAFile, CASetting: "NVCF_API_CA_FILE",
		CertFile: s.NVCFAPICertFile, CertSetting: "NVCF_API_CERT_FILE",
		KeyFile: s.NVCFAPIKeyFile, KeySetting: "NVCF_API_KEY_FILE",
	}
}

// NVCFOAuthTLSFiles is the OAuth2 token endpoint's TLS material, for an
// https NVCF_OAUTH_TOKEN_URL. It is its own: a self-hosted control plane's
// identity service often sits behind another CA than its API.
func (s Scale) NVCFOAuthTLSFiles() tlsfiles.Files {
	return tlsfiles.Files{
		CAFile: s.NVCFOAuthCAFile, CASetting: "NVCF_OAUTH_CA_FILE",
		CertFile: s.NVCFOAuthCertFile, CertSetting: "NVCF_OAUTH_CERT_FILE",
		KeyFile: s.NVCFOAuthKeyFile, KeySetting: "NVCF_OAUTH_KEY_FILE",
	}
}

// checkHTTPSFiles refuses TLS files given for a URL they cannot apply to
// (a typo'd scheme would otherwise send in plaintext what the operator
// meant to protect) and reads them now, so a missing or unusable file
// stops Start with its setting named instead of failing every write.
func checkHTTPSFiles(f tlsfiles.Files, urlSetting, rawURL string) error {
	if f.CAFile == "" && !f.HasClientCert() {
		return nil
	}
	if !strings.HasPrefix(rawURL, "https://") {
		return fmt.Errorf("%s, %s and %s apply only to an https %s (it is %q)", f.CASetting, f.CertSetting, f.KeySetting, urlSetting, SafeURL(rawURL))
	}
	_, err := f.Config()
	return err
}

func (s *Scale) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Concurrency < 1 {
		add("SCALE_CONCURRENCY=%d: want an integer >= 1", s.Concurrency)
	}
	if s.FunctionLockTTL < 2*time.Second {
		add("FUNCTION_LOCK_TTL=%s: want at least 2s", s.FunctionLockTTL)
	}
	if s.StateTTL < time.Hour {
		add("STATE_TTL=%s: want at least 1h", s.StateTTL)
	}
	if s.RowTTL < 10*time.Second {
		add("ACTIVE_ROW_TTL=%s: want at least 10s", s.RowTTL)
	}
	if s.Step < time.Second || s.Window < s.Step/2 || s.Lookback < s.Step {
		add("UTILIZATION_STEP=%s, UTILIZATION_WINDOW=%s, UTILIZATION_LOOKBACK=%s: want step >= 1s, window >= step/2 and lookback >= step", s.Step, s.Window, s.Lookback)
	}
	switch s.PolicyMode {
	case "nvcf", "target":
	default:
		add("POLICY_MODE=%q: want nvcf or target", s.PolicyMode)
	}
	switch s.KeepAlive {
	case "fixed", "learned":
	default:
		add("KEEP_ALIVE=%q: want fixed or learned", s.KeepAlive)
	}
	if !(s.PrewarmPercentile > 0 && s.PrewarmPercentile < s.KeepAlivePercentile && s.KeepAlivePercentile < 100) {
		add("PREWARM_PERCENTILE=%v, KEEP_ALIVE_PERCENTILE=%v: want 0 < prewarm < keep-alive < 100", s.PrewarmPercentile, s.KeepAlivePercentile)
	}
	if s.PolicyOverridesFile != "" {
		if _, err := os.Stat(s.PolicyOverridesFile); err != nil {
			add("POLICY_OVERRIDES_FILE=%q: %v", s.PolicyOverridesFile, errors.Unwrap(err))
		}
	}
	grpcTLSSet := s.NVCFGRPCCAFile != "" || s.NVCFGRPCCertFile != "" || s.NVCFGRPCKeyFile != ""
	switch s.NVCFTransport {
	case "http":
		if grpcTLSSet {
			add("NVCF_GRPC_CA_FILE, NVCF_GRPC_CERT_FILE and NVCF_GRPC_KEY_FILE apply only with NVCF_TRANSPORT=grpc")
		}
		if err := checkHTTPSFiles(s.NVCFAPITLSFiles(), "NVCF_API_URL", s.NVCFURL); err != nil {
			errs = append(errs, err)
		}
		if !s.NVCFDryRun && s.NVCFURL == "" {
			add("NVCF_API_URL is not set: want the NVCF API base URL (or NVCF_DRY_RUN=true)")
		} else if s.NVCFURL != "" {
			if err := checkURL("NVCF_API_URL", s.NVCFURL, "use NVCF_TOKEN_FILE or NVCF_OAUTH_CLIENT_SECRET_FILE"); err != nil {
				errs = append(errs, err)
			}
		}
	case "grpc":
		if s.NVCFAPICAFile != "" || s.NVCFAPICertFile != "" || s.NVCFAPIKeyFile != "" {
			add("NVCF_API_CA_FILE, NVCF_API_CERT_FILE and NVCF_API_KEY_FILE apply only with NVCF_TRANSPORT=http (use NVCF_GRPC_CA_FILE, NVCF_GRPC_CERT_FILE and NVCF_GRPC_KEY_FILE)")
		}
		if !s.NVCFDryRun && s.NVCFGRPCAddr == "" {
			add("NVCF_GRPC_ADDR is not set: want host:port of nvcf.Autoscaler (or NVCF_DRY_RUN=true)")
		}
		if s.NVCFGRPCInsecure && grpcTLSSet {
			add("NVCF_GRPC_INSECURE=true turns TLS off, yet NVCF_GRPC_CA_FILE, NVCF_GRPC_CERT_FILE or NVCF_GRPC_KEY_FILE is set: choose one")
		} else if _, err := s.NVCFGRPCTLSFiles().Config(); err != nil && !s.NVCFGRPCInsecure {
			errs = append(errs, err)
		}
	default:
		add("NVCF_TRANSPORT=%q: want http or grpc", s.NVCFTransport)
	}
	if s.NVCFOAuthTokenURL != "" {
		if err := checkURL("NVCF_OAUTH_TOKEN_URL", s.NVCFOAuthTokenURL, "use NVCF_OAUTH_CLIENT_ID and NVCF_OAUTH_CLIENT_SECRET_FILE"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkHTTPSFiles(s.NVCFOAuthTLSFiles(), "NVCF_OAUTH_TOKEN_URL", s.NVCFOAuthTokenURL); err != nil {
		errs = append(errs, err)
	}
	if s.NVCFOAuthTokenURL != "" && (s.NVCFOAuthClientID == "" || s.NVCFOAuthClientSecretF == "") {
		add("NVCF_OAUTH_TOKEN_URL needs NVCF_OAUTH_CLIENT_ID and NVCF_OAUTH_CLIENT_SECRET_FILE")
	}
	if s.NVCFOAuthTokenURL != "" && s.NVCFTokenFile != "" {
		add("NVCF_OAUTH_TOKEN_URL and NVCF_TOKEN_FILE are exclusive: choose one way to authenticate")
	}
	if s.NVCFTimeout <= 0 || s.NVCFTimeout >= s.FunctionLockTTL {
		add("NVCF_TIMEOUT=%s: want a positive duration shorter than FUNCTION_LOCK_TTL (%s), so a write finishes while its claim is held", s.NVCFTimeout, s.FunctionLockTTL)
	}
	if s.NVCFRate <= 0 || s.NVCFBurst < 1 {
		add("NVCF_RATE=%g, NVCF_BURST=%d: want a positive rate and a burst >= 1", s.NVCFRate, s.NVCFBurst)
	}
	if s.NVCFMaxAttempts < 1 {
		add("NVCF_MAX_ATTEMPTS=%d: want an integer >= 1", s.NVCFMaxAttempts)
	}
	if s.MinInstances < 0 || (s.MaxInstances != 0 && s.MaxInstances < s.MinInstances) {
		add("MIN_INSTANCES=%d, MAX_INSTANCES=%d: want 0 <= min and max = 0 (unbounded) or max >= min", s.MinInstances, s.MaxInstances)
	}
	return errors.Join(errs...)
}
