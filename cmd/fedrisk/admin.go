package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/node"
)

// withResources runs fn on the node's resources, opened as `serve` opens
// them (the database migrated, the key manager, the audit log, the API
// tokens, the cache).
func withResources(ctx context.Context, cf *configFlags, lookup env, stderr io.Writer, fn func(r *node.Resources) error) error {
	l, err := cf.load(lookup)
	if err != nil {
		return err
	}
	r, err := node.Open(ctx, l.Config, node.OpenOptions{Log: newLogger(l.Config, stderr), Admin: true})
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}

func newKeysCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Signing keys and key-encryption keys of the consent service"}
	rotate := &cobra.Command{
		Use:   "rotate jwt|encryption",
		Short: "Rotate the token-signing key or the key-encryption key (online, resumable)",
		Long: `jwt: the next key (already published in the JWKS) becomes current, the current one is
retired (it keeps verifying what it signed) and a new next key is generated.

encryption: a new key-encryption-key version becomes active and every data key is
re-wrapped under it in batches, with progress; if interrupted, run it again to finish.
The old version is retired once no data key uses it. Records stay readable throughout.`,
		Args:      exactArgs(1),
		ValidArgs: []string{"jwt", "encryption"},
	}
	cf := addConfigFlags(rotate)
	rotate.RunE = func(cmd *cobra.Command, args []string) error {
		if args[0] != "jwt" && args[0] != "encryption" {
			return &usageError{fmt.Errorf("unknown key kind %q: accepted values: jwt, encryption", args[0])}
		}
		return withResources(cmd.Context(), cf, lookup, stderr, func(r *node.Resources) error {
			km := r.Keys
			alog := r.Audit
			if args[0] == "jwt" {
				kid, err := km.RotateSigning(cmd.Context())
				if err != nil {
					return err
				}
				if _, err := alog.Append(cmd.Context(), audit.Event{Actor: "cli", Action: "key.rotate", Object: kid, Details: map[string]string{"kind": "jwt"}}); err != nil {
					return fmt.Errorf("key rotated, but the audit entry failed: %w", err)
				}
				fmt.Fprintf(stdout, "signing key rotated: current kid %s\n", kid)
				return nil
			}
			last := -1
			v, err := km.RotateKEK(cmd.Context(), func(done, total int) {
				pct := 100
				if total > 0 {
					pct = done * 100 / total
				}
				if pct != last {
					fmt.Fprintf(stdout, "\rre-wrapping data keys: %d/%d (%d%%)", done, total, pct)
					last = pct
				}
			})
			fmt.Fprintln(stdout)
			if err != nil {
				return fmt.Errorf("%w (run the command again to resume)", err)
			}
			if _, err := alog.Append(cmd.Context(), audit.Event{Actor: "cli", Action: "key.rotate", Object: fmt.Sprintf("kek:v%d", v), Details: map[string]string{"kind": "encryption"}}); err != nil {
				return fmt.Errorf("key rotated, but the audit entry failed: %w", err)
			}
			fmt.Fprintf(stdout, "key-encryption key rotated: active version %d\n", v)
			return printKEKs(cmd.Context(), km, stdout)
		})
	}
	status := &cobra.Command{Use: "status", Short: "Show key-encryption-key versions and signing keys", Args: noArgs}
	scf := addConfigFlags(status)
	status.RunE = func(cmd *cobra.Command, _ []string) error {
		return withResources(cmd.Context(), scf, lookup, stderr, func(r *node.Resources) error {
			km := r.Keys
			if err := printKEKs(cmd.Context(), km, stdout); err != nil {
				return err
			}
			set, err := km.JWKS(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SIGNING KEY\tSTATUS")
			for _, k := range set.Keys {
				fmt.Fprintf(tw, "%s\t%s\n", k.Kid, k.Status)
			}
			return tw.Flush()
		})
	}
	cmd.AddCommand(rotate, status)
	return cmd
}

func printKEKs(ctx context.Context, km *keys.Manager, w io.Writer) error {
	list, err := km.KEKStatus(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEK VERSION\tSTATE\tDATA KEYS\tCREATED")
	for _, k := range list {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", k.Version, k.State, k.DataKeys, k.CreatedAt.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func newAuditCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The tamper-evident audit log"}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the hash chain and the signed checkpoints; name the first bad entry",
		Args:  noArgs,
	}
	cf := addConfigFlags(verify)
	verify.RunE = func(cmd *cobra.Command, _ []string) error {
		return withResources(cmd.Context(), cf, lookup, stderr, func(r *node.Resources) error {
			km := r.Keys
			rep, err := r.Audit.Verify(cmd.Context(), consentnode.CheckpointKeys{M: km})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "entries: %d, signed checkpoints: %d, head: %x\n", rep.Entries, rep.Checkpoints, rep.Head)
			if rep.FirstBad != nil {
				return fmt.Errorf("audit log TAMPERED: first bad entry seq %d: %s", rep.FirstBad.Seq, rep.FirstBad.Reason)
			}
			fmt.Fprintln(stdout, "audit log intact")
			return nil
		})
	}
	cmd.AddCommand(verify)
	return cmd
}

func newTokensCmd(lookup env, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Bearer tokens of the client APIs (AUTH_REQUIRED=true)"}
	create := &cobra.Command{Use: "create NAME ROLE", Short: "Create a token for NAME with ROLE (admin, operator, analyst, partner); the secret is printed once", Args: exactArgs(2)}
	ccf := addConfigFlags(create)
	create.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		role, err := auth.ParseRole(args[1])
		if err != nil {
			return &usageError{err}
		}
		return withResources(cmd.Context(), ccf, lookup, stderr, func(r *node.Resources) error {
			secret, tok, err := r.Tokens.Create(cmd.Context(), name, role)
			if err != nil {
				return err
			}
			if _, err := r.Audit.Append(cmd.Context(), audit.Event{Actor: "cli", Action: "auth.token_create", Object: tok.ID, Details: map[string]string{"role": string(role), "name": name}}); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "created %s (%s, role %s); the secret below is not stored and cannot be shown again\n", tok.ID, tok.Name, tok.Role)
			fmt.Fprintln(stdout, secret)
			return nil
		})
	}
	list := &cobra.Command{Use: "list", Short: "List tokens (never their secrets)", Args: noArgs}
	lcf := addConfigFlags(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return withResources(cmd.Context(), lcf, lookup, stderr, func(r *node.Resources) error {
			toks, err := r.Tokens.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tREVOKED")
			for _, t := range toks {
				revoked := "-"
				if t.RevokedAt != nil {
					revoked = t.RevokedAt.Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedAt.Format("2006-01-02 15:04"), revoked)
			}
			return tw.Flush()
		})
	}
	revoke := &cobra.Command{Use: "revoke ID", Short: "Revoke a token", Args: exactArgs(1)}
	rcf := addConfigFlags(revoke)
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		return withResources(cmd.Context(), rcf, lookup, stderr, func(r *node.Resources) error {
			if err := r.Tokens.Revoke(cmd.Context(), args[0]); err != nil {
				return err
			}
			if _, err := r.Audit.Append(cmd.Context(), audit.Event{Actor: "cli", Action: "auth.token_revoke", Object: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %s\n", args[0])
			return nil
		})
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
