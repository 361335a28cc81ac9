package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

func newRootCmd(lookup env, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "fedrisk",
		Short:         "Federated credit-risk platform: consent, private set intersection, federated training and scoring",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(
		newServeCmd(lookup, stderr),
		newMigrateCmd(lookup, stdout, stderr),
		newConfigCmd(lookup, stdout),
		newVersionCmd(stdout),
		newCertsCmd(stdout),
		newConsentCmd(lookup, stdin, stdout),
		newKeysCmd(lookup, stdout, stderr),
		newAuditCmd(lookup, stdout, stderr),
		newTokensCmd(lookup, stdout, stderr),
		newPSICmd(lookup, stdin, stdout, stderr),
		newBenchCmd(lookup, stdout, stderr),
		newFeaturesCmd(lookup, stdout, stderr),
		newTrainCmd(lookup, stdout, stderr),
		newModelCmd(lookup, stdout),
		newDemoCmd(lookup, stdout, stderr),
		newHealthCmd(lookup, stdout),
		newDeployCmd(stdout),
	)
	return root
}

// configFlags are the flags every command that loads the configuration has.
type configFlags struct {
	file  string
	peers []string
	cmd   *cobra.Command
}

func addConfigFlags(cmd *cobra.Command) *configFlags {
	cf := &configFlags{cmd: cmd}
	fs := cmd.Flags()
	fs.StringVarP(&cf.file, "config", "c", "", "YAML configuration file (env FEDRISK_CONFIG)")
	fs.StringArrayVar(&cf.peers, "peer", nil, "peer party as name=url[;ca_file=PATH][;spki_sha256=HEX] (repeatable; replaces peers from file and env)")
	for _, s := range config.Settings() {
		if s.Flag == "" {
			continue
		}
		usage := s.Usage
		if s.Env != "" {
			usage += " (env " + s.Env + ")"
		}
		fs.String(s.Flag, "", usage)
		if s.Bool {
			fs.Lookup(s.Flag).NoOptDefVal = "true"
		}
	}
	return cf
}

// load builds the effective configuration: defaults < file < env < flags.
func (cf *configFlags) load(lookup env) (*config.Loaded, error) {
	in := config.Inputs{Env: lookup, Flags: map[string]string{}, Peers: cf.peers}
	path := cf.file
	if path == "" {
		path, _ = lookup("FEDRISK_CONFIG")
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &config.Error{Key: "config", Source: "flag --config", Value: path, Err: err, Accepted: "a readable YAML file"}
		}
		in.FileName, in.File = path, data
	}
	for _, s := range config.Settings() {
		if s.Flag == "" {
			continue
		}
		if f := cf.cmd.Flags().Lookup(s.Flag); f != nil && f.Changed {
			in.Flags[s.Key] = f.Value.String()
		}
	}
	return config.Load(in)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func newRegistry(cfg config.Config) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fedrisk_build_info",
		Help: "Always 1; labels name the build, release track and party.",
	}, []string{"version", "release", "party", "goversion"})
	info.WithLabelValues(buildVersion(), cfg.Version, cfg.Party, runtime.Version()).Set(1)
	reg.MustRegister(info)
	return reg
}

func buildVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

func newServeCmd(lookup env, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run this party's services (consent, psi, serving) until SIGTERM",
		Long: `Run this party's services. Each listens on its own port (consent 7002, psi 7001,
serving 7003) and answers /health, /ready and /metrics. With no configuration the
node uses SQLite under ./fedrisk-data and an in-memory cache.

On SIGTERM or Ctrl-C the node stops accepting, lets in-flight requests finish
within http.shutdown_grace, and exits 0.`,
		Args: noArgs,
	}
	cf := addConfigFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		l, err := cf.load(lookup)
		if err != nil {
			return err
		}
		log := newLogger(l.Config, stderr)
		// go-redis logs through a package-level logger; main is the one
		// place allowed to set it, so its lines stay structured JSON.
		redis.SetLogger(redisLog{log.With("component", "redis")})
		warnLoopbackTrust(log, l)
		return node.Run(cmd.Context(), node.Options{
			Config:   l.Config,
			Logger:   log,
			Registry: newRegistry(l.Config),
			Build:    buildVersion(),
		})
	}
	return cmd
}

// warnLoopbackTrust says once, at the start of `fedrisk serve` (the demo
// does not go through here), what AUTH_REQUIRED=false exposes, or that
// strict security mode turned it on.
func warnLoopbackTrust(log *slog.Logger, l *config.Loaded) {
	switch {
	case l.Sources["auth_required"] == config.StrictSource:
		log.Warn("SECURITY_MODE=strict turned AUTH_REQUIRED on: client APIs need bearer tokens (fedrisk tokens create NAME ROLE), loopback callers are trusted no more")
	case !l.AuthRequired:
		msg := "SECURITY: AUTH_REQUIRED=false: every process that reaches this node from the loopback interface (127.0.0.0/8, ::1) is an admin of its client APIs, " +
			"including other users of this machine and a local reverse proxy that forwards outside requests"
		if !l.TLS.Enabled() {
			msg += "; and without TLS the peer APIs take a loopback caller's X-Fedrisk-Party header as the party it names"
		}
		log.Warn(msg + "; for anything but development set AUTH_REQUIRED=true or SECURITY_MODE=strict")
	}
}

// redisLog routes go-redis's internal messages (reconnects, dial errors)
// into the node's structured log.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}

func newMigrateCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	var status bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database schema to this binary's version",
		Args:  noArgs,
	}
	cf := addConfigFlags(cmd)
	cmd.Flags().BoolVar(&status, "status", false, "only report the schema version")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		l, err := cf.load(lookup)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		db, err := sqldb.Open(ctx, l.DatabaseURL, l.DataDir)
		if err != nil {
			return err
		}
		defer db.Close()
		if status {
			have, err := db.Version(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "database %s: schema version %d, binary %d\n", db.Location, have, sqldb.Latest())
			return db.Check(ctx)
		}
		applied, err := db.Migrate(ctx)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprintf(stdout, "database %s: up to date at schema version %d\n", db.Location, sqldb.Latest())
			return nil
		}
		names := map[int]string{}
		for _, m := range sqldb.Migrations() {
			names[m.Version] = m.Name
		}
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied %04d_%s\n", v, names[v])
		}
		fmt.Fprintf(stdout, "database %s: now at schema version %d\n", db.Location, sqldb.Latest())
		return nil
	}
	return cmd
}

func newConfigCmd(lookup env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (secrets redacted) with the source of each value",
		Args:  noArgs,
	}
	cf := addConfigFlags(print)
	print.RunE = func(cmd *cobra.Command, _ []string) error {
		l, err := cf.load(lookup)
		if err != nil {
			return err
		}
		return l.Print(stdout)
	}
	cmd.AddCommand(print)
	return cmd
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build version and the database schema version it needs",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(stdout, "fedrisk %s (%s, schema %d, %s/%s)\n", buildVersion(), runtime.Version(), sqldb.Latest(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
