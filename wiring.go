package function

import (
	"log/slog"

	"github.com/gocql/gocql"

	"function/shared/config"
	"function/shared/nvcf"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// consistency maps a validated consistency name onto gocql's constant.
func consistency(name string) gocql.Consistency {
	c, err := gocql.ParseConsistencyWrapper(name)
	if err != nil {
		return gocql.LocalQuorum // unreachable: config validated the name
	}
	return c
}

func serialConsistency(name string) gocql.SerialConsistency {
	if name == "SERIAL" {
		return gocql.Serial
	}
	return gocql.LocalSerial
}

func tsdbConfig(s config.Settings, m *telemetry.Metrics) tsdb.Config {
	return tsdb.Config{
		URL:       s.URL,
		Auth:      s.Auth,
		TokenFile: s.TokenFile,
		TLS:       s.TSDB.TLSFiles(),
		Timeout:   s.QueryTimeout,
		Observer:  m.ObserveTSDB,
		OnQuery:   m.CountQuery,

		MaxSelectorBytes: s.MaxSelectorBytes,
	}
}

func nvcfConfig(s config.Scale, log *slog.Logger, m *telemetry.Metrics) nvcf.Config {
	return nvcf.Config{
		Transport:             s.NVCFTransport,
		BaseURL:               s.NVCFURL,
		GRPCAddr:              s.NVCFGRPCAddr,
		GRPCInsecure:          s.NVCFGRPCInsecure,
		GRPCTLS:               s.NVCFGRPCTLSFiles(),
		APITLS:                s.NVCFAPITLSFiles(),
		AccountScoped:         s.NVCFAccountScoped,
		TokenFile:             s.NVCFTokenFile,
		OAuthTokenURL:         s.NVCFOAuthTokenURL,
		OAuthClientID:         s.NVCFOAuthClientID,
		OAuthClientSecretFile: s.NVCFOAuthClientSecretF,
		OAuthTLS:              s.NVCFOAuthTLSFiles(),
		Timeout:               s.NVCFTimeout,
		Rate:                  s.NVCFRate,
		Burst:                 s.NVCFBurst,
		MaxQueueAge:           s.NVCFMaxQueueAge,
		MaxAttempts:           s.NVCFMaxAttempts,
		DryRun:                s.NVCFDryRun,
		Logger:                log,
		Observer:              nvcf.Observer(m.ObserveNVCF),
		OnLimiterQueue:        m.LimiterQueue,
		OnLimiterWait:         m.LimiterWaited,
	}
}
