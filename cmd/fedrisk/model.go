package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
)

// newModelCmd is `fedrisk model`: the model registry through this node's
// serving API.
func newModelCmd(lookup env, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "List, inspect, promote and roll back registered models through this node's serving API",
		Long: `List, inspect, promote and roll back the model halves this party holds, through
the model registry of its serving API (default http://127.0.0.1:7003, --server or
FEDRISK_SERVING_URL).

Versions are numbered 1, 2, ... per model id. The labels stable and canary each
point at one version; scoring uses stable unless told otherwise. A promotion takes
effect at once; rollback moves a label back to where it pointed before its latest
promotion. Versions are never deleted.`,
	}
	cf := addClientFlags(cmd, lookup, "http://127.0.0.1:7003", "FEDRISK_SERVING_URL")
	cmd.AddCommand(newModelListCmd(cf, stdout), newModelShowCmd(cf, stdout), newModelPromoteCmd(cf, stdout), newModelRollbackCmd(cf, stdout))
	return cmd
}

const modelsPath = "/score/v1/models"

func modelPath(id string, rest ...string) string {
	p := modelsPath + "/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// checkModelArgs validates a model id and version locally, so a typo is a
// usage error (exit 2) before any request.
func checkModelArgs(id, version string) error {
	if err := registry.ValidModelID(id); err != nil {
		return &usageError{err}
	}
	if version == "" || version == registry.LabelStable || version == registry.LabelCanary {
		return nil
	}
	if _, err := registry.ParseVersion(version); err != nil {
		return &usageError{err}
	}
	return nil
}

func checkLabel(label string) error {
	if err := registry.ValidLabel(label); err != nil {
		return &usageError{fmt.Errorf("--label: %w", err)}
	}
	return nil
}

func newModelListCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [MODEL_ID]",
		Short: "List every model, or one model's versions, labels and label history",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
				return &usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				var out registryapi.ModelsResponse
				if _, err := c.do(cmd.Context(), http.MethodGet, modelsPath, nil, &out); err != nil {
					return err
				}
				if asJSON {
					return printJSON(stdout, out)
				}
				if len(out.Models) == 0 {
					fmt.Fprintln(stdout, "no models registered")
					return nil
				}
				return printVersions(stdout, out.Models)
			}
			if err := checkModelArgs(args[0], ""); err != nil {
				return err
			}
			var m registryapi.ModelBody
			if _, err := c.do(cmd.Context(), http.MethodGet, modelPath(args[0]), nil, &m); err != nil {
				return err
			}
			if asJSON {
				return printJSON(stdout, m)
			}
			if err := printVersions(stdout, []registryapi.ModelBody{m}); err != nil {
				return err
			}
			if len(m.History) > 0 {
				fmt.Fprintln(stdout, "\nlabel history:")
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				for _, h := range m.History {
					prev := h.Previous
					if prev == "" {
						prev = "-"
					}
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s -> %s\t%s\n", h.At.UTC().Format(time.RFC3339), h.Label, h.Action, prev, h.Version, h.Actor)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func printVersions(w io.Writer, ms []registryapi.ModelBody) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tVERSION\tROLE\tLABELS\tCREATED\tREGISTERED BY\tDIGEST")
	for _, m := range ms {
		for _, v := range m.Versions {
			labels := strings.Join(v.Labels, ",")
			if labels == "" {
				labels = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.12s\n", v.ModelID, v.Version, v.Role, labels,
				v.Created.UTC().Format(time.RFC3339), v.RegisteredBy, v.Digest)
		}
	}
	return tw.Flush()
}

func newModelShowCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var (
		asJSON       bool
		export, role string
	)
	cmd := &cobra.Command{
		Use:   "show MODEL_ID VERSION",
		Short: "Show one version's metadata and model card; --export writes this party's half",
		Long: `Show one version's metadata and model card. VERSION is a number or a label
(stable, canary). --export FILE writes this party's half document, byte for byte as
registered, after checking its SHA-256 against the registry's digest (- for stdout;
needs the operator role).`,
		Example: `  fedrisk model show credit-risk 2
  fedrisk model show credit-risk stable --export credit-risk-guest.json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, version := args[0], args[1]
			if err := checkModelArgs(id, version); err != nil {
				return err
			}
			if role != "" {
				if err := registry.ValidRole(role); err != nil {
					return &usageError{fmt.Errorf("--role: %w", err)}
				}
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := ""
			if role != "" {
				q = "?role=" + role
			}
			var v registryapi.VersionBody
			if _, err := c.do(cmd.Context(), http.MethodGet, modelPath(id, "versions", version)+q, nil, &v); err != nil {
				return err
			}
			if export != "" {
				// The version, not the label: the label may move meanwhile.
				if err := exportHalf(cmd.Context(), c, v, export, stdout); err != nil {
					return err
				}
				if export == "-" {
					return nil
				}
			}
			if asJSON {
				return printJSON(stdout, v)
			}
			labels := strings.Join(v.Labels, ", ")
			if labels == "" {
				labels = "-"
			}
			fmt.Fprintf(stdout, "model:          %s\nversion:        %s\nrole:           %s\nlabels:         %s\ndigest:         %s\ncreated:        %s\nregistered by:  %s\n",
				v.ModelID, v.Version, v.Role, labels, v.Digest, v.Created.UTC().Format(time.RFC3339), v.RegisteredBy)
			if export != "" {
				fmt.Fprintf(stdout, "exported to:    %s\n", export)
			}
			if len(v.Card) == 0 {
				fmt.Fprintln(stdout, "card:           none")
				return nil
			}
			fmt.Fprintln(stdout, "card:")
			var card any
			if err := json.Unmarshal(v.Card, &card); err != nil {
				return fmt.Errorf("decode model card: %w", err)
			}
			b, err := json.MarshalIndent(card, "  ", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  %s\n", b)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print the API's JSON")
	fs.StringVar(&export, "export", "", "write this party's half document to FILE (- for stdout)")
	fs.StringVar(&role, "role", "", "guest or host, when this party holds both halves of the version")
	return cmd
}

func exportHalf(ctx context.Context, c *apiClient, v registryapi.VersionBody, file string, stdout io.Writer) error {
	var doc json.RawMessage
	h, err := c.do(ctx, http.MethodGet, modelPath(v.ModelID, "versions", v.Version, "half")+"?role="+v.Role, nil, &doc)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(doc)
	if got := hex.EncodeToString(sum[:]); got != v.Digest || h.Get(registryapi.DigestHeader) != v.Digest {
		return fmt.Errorf("the half document of %s version %s does not match its digest %s", v.ModelID, v.Version, v.Digest)
	}
	if file == "-" {
		_, err := stdout.Write(append(doc, '\n'))
		return err
	}
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		return fmt.Errorf("--export: %w", err)
	}
	return nil
}

func newModelPromoteCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var label string
	cmd := &cobra.Command{
		Use:     "promote MODEL_ID VERSION [--label stable|canary]",
		Short:   "Point a label (default stable) at a version, at once",
		Example: "  fedrisk model promote credit-risk 3 --label canary\n  fedrisk model promote credit-risk 3",
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkModelArgs(args[0], ""); err != nil {
				return err
			}
			if _, err := registry.ParseVersion(args[1]); err != nil {
				return &usageError{err}
			}
			if err := checkLabel(label); err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var ch registryapi.ChangeBody
			if _, err := c.do(cmd.Context(), http.MethodPost, modelPath(args[0], "promote"), registryapi.PromoteRequest{Version: args[1], Label: label}, &ch); err != nil {
				return err
			}
			return printChange(stdout, ch)
		},
	}
	cmd.Flags().StringVar(&label, "label", registry.LabelStable, "stable or canary")
	return cmd
}

func newModelRollbackCmd(cf *clientFlags, stdout io.Writer) *cobra.Command {
	var label string
	cmd := &cobra.Command{
		Use:   "rollback MODEL_ID [--label stable|canary]",
		Short: "Move a label (default stable) back to the version it pointed at before its latest promotion",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkModelArgs(args[0], ""); err != nil {
				return err
			}
			if err := checkLabel(label); err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var ch registryapi.ChangeBody
			if _, err := c.do(cmd.Context(), http.MethodPost, modelPath(args[0], "rollback"), registryapi.RollbackRequest{Label: label}, &ch); err != nil {
				return err
			}
			return printChange(stdout, ch)
		},
	}
	cmd.Flags().StringVar(&label, "label", registry.LabelStable, "stable or canary")
	return cmd
}

func printChange(w io.Writer, c registryapi.ChangeBody) error {
	if !c.Changed {
		_, err := fmt.Fprintf(w, "%s %s already points at version %s: nothing changed\n", c.ModelID, c.Label, c.Version)
		return err
	}
	prev := c.Previous
	if prev == "" {
		prev = "none"
	}
	_, err := fmt.Fprintf(w, "%s %s: version %s -> %s (%s by %s)\n", c.ModelID, c.Label, prev, c.Version, c.Action, c.Actor)
	return err
}
