package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/deployinit"
	"github.com/fedrisk/fedrisk/internal/pki"
)

func newDeployCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "deploy", Short: "Prepare a deployment (Docker Compose: deploy/compose)"}
	var (
		opts  deployinit.Options
		ecdsa bool
		hosts string
	)
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Prepare a Docker Compose directory: directories, .env with random secrets (0600), TLS certificates; never overwrites",
		Long: `Prepare the directory of deploy/compose/compose.yaml as the runbook's deploy script
does, then start the stack with: docker compose up -d

  certs/            CA, and for the party server and client certificates (RSA 4096,
                    365 days, as the runbook; --ecdsa for ECDSA P-256). The server
                    certificate covers the compose service names and --hosts.
  data/fedrisk/     the fedrisk containers' /data
  inputs/           CSV files for PSI and feature loads (/inputs in the containers)
  reports/          health and troubleshooting reports
  .env              POSTGRES_PASSWORD, REDIS_PASSWORD, ENCRYPTION_KEY,
                    FEDRISK_SUBJECT_REF_KEY, GRAFANA_ADMIN_PASSWORD (crypto/rand) and the
                    stack's settings; mode 0600

An existing .env keeps every line; only missing keys are appended. Existing
certificates are kept. The runbook's JWT_SECRET has no counterpart: consent-token
signing keys live in the database (fedrisk keys rotate jwt).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Days <= 0 {
				return &usageError{fmt.Errorf("--days must be positive, got %d", opts.Days)}
			}
			if ecdsa {
				opts.KeyType = pki.ECDSAP256
			}
			opts.Hosts = splitList(hosts)
			opts.UID, opts.GID = os.Getuid(), os.Getgid()
			res, err := deployinit.Init(opts)
			if errors.Is(err, deployinit.ErrBadOptions) {
				return &usageError{err}
			}
			if err != nil {
				return fmt.Errorf("deploy init: %w", err)
			}
			for _, p := range res.Created {
				fmt.Fprintf(stdout, "created  %s\n", p)
			}
			for _, k := range res.Added {
				fmt.Fprintf(stdout, "added    .env %s\n", k)
			}
			for _, p := range res.Kept {
				fmt.Fprintf(stdout, "kept     %s\n", p)
			}
			fmt.Fprintf(stdout, "\nnext: docker compose --project-directory %s up -d   (then: fedrisk health --stack)\n", opts.Dir)
			return nil
		},
	}
	fs := initCmd.Flags()
	fs.StringVar(&opts.Dir, "dir", ".", "the directory of compose.yaml (deploy/compose)")
	fs.StringVar(&opts.Env, "env", "dev", "dev or production")
	fs.StringVar(&opts.Party, "party", "bank", "this party's name, as in its certificates")
	fs.StringVar(&opts.Role, "role", "guest", "guest (label holder) or host (feature provider)")
	fs.StringVar(&opts.Image, "image", "localhost/fedrisk:latest", "the fedrisk image compose runs")
	fs.BoolVar(&ecdsa, "ecdsa", false, "ECDSA P-256 keys (fedrisk certs init's default) instead of the runbook's RSA 4096")
	fs.IntVar(&opts.Days, "days", 365, "certificate validity in days")
	fs.StringVar(&hosts, "hosts", "", "extra DNS names or IPs of the server certificate (e.g. the name partners use), comma-separated")
	cmd.AddCommand(initCmd)
	return cmd
}
