package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/demo"
)

func newDemoCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	var o demo.Options
	var exit bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole federation on this machine: consent, PSI, training, scoring, privacy budget",
		Long: `Run a bank (guest) and a partner (host) node on 127.0.0.1 with development
certificates and mutual TLS, give each part of the bundled default-credit data
(about 80% of the customers shared), record the bank's consents (a share missing,
a share withdrawn), find the common consented customers with PSI, train a
federated logistic regression on encrypted values, register and serve the model,
score sample applicants, and drain one subject's privacy budget to show the
refusal. Then print a summary with URLs to try, and keep serving until Ctrl-C.

Everything is written below --dir; a second run there reuses what the first left.
--postgres and --redis (or FEDRISK_DEMO_POSTGRES_URL / FEDRISK_DEMO_REDIS_URL) run
the same on real servers, each party in its own schema and key prefix.`,
		Example: `  fedrisk demo
  fedrisk demo --customers 30000 --dir /tmp/fedrisk-demo
  fedrisk demo --postgres postgres://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/0`,
		Args: noArgs,
	}
	pg, _ := lookup("FEDRISK_DEMO_POSTGRES_URL")
	rd, _ := lookup("FEDRISK_DEMO_REDIS_URL")
	fs := cmd.Flags()
	fs.StringVar(&o.Dir, "dir", "fedrisk-demo", "directory for certificates, databases, logs and the demo's state")
	fs.IntVar(&o.BasePort, "base-port", 7000, "the bank listens on BASE+1 (psi), +2 (consent), +3 (serving), the partner on BASE+11..13; 0 picks free ports")
	fs.StringVar(&o.PostgresURL, "postgres", pg, "run both nodes on this PostgreSQL database (env FEDRISK_DEMO_POSTGRES_URL)")
	fs.StringVar(&o.Schema, "schema", "fedrisk_demo", "with --postgres: prefix of the parties' schemas (PREFIX_bank, PREFIX_partner)")
	fs.StringVar(&o.RedisURL, "redis", rd, "use this Redis as both nodes' cache (env FEDRISK_DEMO_REDIS_URL)")
	fs.IntVar(&o.Customers, "customers", 10000, "rows of the bundled data to use (0: all 30,000)")
	fs.Float64Var(&o.Missing, "consent-missing", 0.05, "share of the bank's customers who never consented")
	fs.Float64Var(&o.Withdrawn, "consent-withdrawn", 0.03, "share of the bank's customers who withdrew their consent")
	fs.IntVar(&o.Epochs, "epochs", 0, "training epochs (0: the trainer's default, with early stopping)")
	fs.StringVar(&o.Noise, "noise", "laplace", "noise on the partner's released scores: laplace, gaussian or none")
	fs.IntVar(&o.Samples, "samples", 200, "applicants to score in the scoring stage")
	fs.BoolVar(&exit, "exit", false, "stop after the summary instead of serving until Ctrl-C")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o.Out = stdout
		if err := o.Normalize(); err != nil {
			return &usageError{err}
		}
		d, err := demo.Start(cmd.Context(), o)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		d.PrintSummary(stdout)
		if !exit {
			fmt.Fprintln(stdout, "\nServing until Ctrl-C.")
			<-cmd.Context().Done()
		}
		return d.Close()
	}
	_ = stderr
	return cmd
}
