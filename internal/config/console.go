package config

// Console configures the web console (service "console"): the services it
// calls and the certificate its browser-facing listener presents.
type Console struct {
	// ConsentURL, PSIURL and ServingURL are the services' base URLs;
	// empty: this node's own listen addresses.
	ConsentURL, PSIURL, ServingURL string
	// PrometheusURL, if set, is asked for the alerts firing.
	PrometheusURL string
	// TLSCertFile and TLSKeyFile serve the console over HTTPS; empty:
	// plain HTTP (behind a TLS-terminating proxy, or on loopback). The
	// services' certificate is for peers and is not used here.
	TLSCertFile, TLSKeyFile string
}

func consoleSettings() []Setting {
	url := func(key, env, flag, usage string, field func(*Config) *string) Setting {
		return Setting{Key: key, Env: env, Flag: flag, Usage: usage, Accepted: "empty or an http:// or https:// URL",
			set: func(c *Config, v string) error {
				if v != "" {
					if err := checkURL(v); err != nil {
						return err
					}
				}
				*field(c) = v
				return nil
			},
			get: func(c *Config) string { return *field(c) }}
	}
	return []Setting{
		url("console.consent_url", "FEDRISK_CONSOLE_CONSENT_URL", "console-consent-url", "consent service the console calls; empty: this node's listen.consent",
			func(c *Config) *string { return &c.Console.ConsentURL }),
		url("console.psi_url", "FEDRISK_CONSOLE_PSI_URL", "console-psi-url", "PSI service the console calls; empty: this node's listen.psi",
			func(c *Config) *string { return &c.Console.PSIURL }),
		url("console.serving_url", "FEDRISK_CONSOLE_SERVING_URL", "console-serving-url", "model-serving service (registry, training, budgets) the console calls; empty: this node's listen.serving",
			func(c *Config) *string { return &c.Console.ServingURL }),
		url("console.prometheus_url", "FEDRISK_CONSOLE_PROMETHEUS_URL", "console-prometheus-url", "Prometheus the console asks for the alerts firing; empty: no alerts shown",
			func(c *Config) *string { return &c.Console.PrometheusURL }),
		file("console.tls_cert_file", "FEDRISK_CONSOLE_TLS_CERT", "console-tls-cert", "certificate the console presents to browsers (PEM); empty: plain HTTP",
			func(c *Config) *string { return &c.Console.TLSCertFile }),
		file("console.tls_key_file", "FEDRISK_CONSOLE_TLS_KEY", "console-tls-key", "key of console.tls_cert_file",
			func(c *Config) *string { return &c.Console.TLSKeyFile }),
	}
}
