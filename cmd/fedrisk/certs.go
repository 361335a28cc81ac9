package main

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/pki"
)

func newCertsCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Development certificates for mutual TLS between parties"}
	var (
		out, parties, hosts string
		days                int
		rsa, force          bool
	)
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Generate a development CA and per-party server and client certificates",
		Long: `Generate a development CA and, for each party, a server certificate (localhost,
127.0.0.1, ::1, the party name and --hosts) and a client certificate that names
the party. Real deployments have one CA per institution and exchange CA
certificates; this gives a laptop or a test a working mutual-TLS setup without openssl.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := pki.DevOptions{Validity: time.Duration(days) * 24 * time.Hour, Hosts: splitList(hosts), Force: force}
			if days <= 0 {
				return &usageError{fmt.Errorf("--days must be positive, got %d", days)}
			}
			if rsa {
				opts.KeyType = pki.RSA
			}
			list := splitList(parties)
			if len(list) == 0 {
				return &usageError{fmt.Errorf("--parties must name at least one party")}
			}
			for _, party := range list {
				if err := pki.CheckPartyName(party); err != nil {
					return &usageError{fmt.Errorf("--parties: %w", err)}
				}
			}
			p, err := pki.GenerateDev(out, list, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "CA          %s\n", p.CACert)
			names := make([]string, 0, len(p.Parties))
			for name := range p.Parties {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				f := p.Parties[name]
				fmt.Fprintf(stdout, "%-11s server %s  client %s\n", name, f.ServerCert, f.ClientCert)
			}
			return nil
		},
	}
	fs := initCmd.Flags()
	fs.StringVar(&out, "out", "certs", "directory to write into")
	fs.StringVar(&parties, "parties", "bank,partner", "comma-separated party names")
	fs.StringVar(&hosts, "hosts", "", "extra DNS names or IPs for every server certificate, comma-separated")
	fs.IntVar(&days, "days", 365, "validity in days")
	fs.BoolVar(&rsa, "rsa", false, "RSA 4096 keys (as the runbook's openssl commands) instead of ECDSA P-256")
	fs.BoolVar(&force, "force", false, "overwrite existing files")
	cmd.AddCommand(initCmd)
	return cmd
}
