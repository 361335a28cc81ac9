package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/pki"
)

// apiClient calls a node's client API.
type apiClient struct {
	base, token string
	http        *http.Client
}

// clientFlags are the connection flags of the API commands.
type clientFlags struct {
	server, token, ca, cert, key string
}

func addClientFlags(cmd *cobra.Command, lookup env, defaultURL, envName string) *clientFlags {
	cf := &clientFlags{}
	def, ok := lookup(envName)
	if !ok {
		def = defaultURL
	}
	tok, _ := lookup("FEDRISK_TOKEN")
	fs := cmd.PersistentFlags()
	fs.StringVar(&cf.server, "server", def, "service base URL (env "+envName+")")
	fs.StringVar(&cf.token, "token", tok, "bearer token (prefer env FEDRISK_TOKEN: arguments are visible to other users)")
	fs.StringVar(&cf.ca, "tls-ca", "", "CA certificate to verify the server (https)")
	fs.StringVar(&cf.cert, "tls-client-cert", "", "client certificate (mutual TLS)")
	fs.StringVar(&cf.key, "tls-client-key", "", "client key (mutual TLS)")
	return cf
}

func (cf *clientFlags) client() (*apiClient, error) {
	c := &apiClient{base: strings.TrimRight(cf.server, "/"), token: cf.token, http: &http.Client{Timeout: 30 * time.Second}}
	if cf.ca != "" || cf.cert != "" {
		var cert *tls.Certificate
		if cf.cert != "" {
			kp, err := pki.LoadKeyPair(cf.cert, cf.key)
			if err != nil {
				return nil, &usageError{err}
			}
			cert = &kp
		}
		var pool = pki.ClientConfig(nil, nil).RootCAs
		if cf.ca != "" {
			p, err := pki.LoadCertPool(cf.ca)
			if err != nil {
				return nil, &usageError{err}
			}
			pool = p
		}
		c.http.Transport = &http.Transport{TLSClientConfig: pki.ClientConfig(cert, pool)}
	}
	return c, nil
}

// do sends body (nil for none) and decodes the JSON answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any, header ...string) (http.Header, error) {
	if _, err := url.Parse(c.base + path); err != nil {
		return nil, &usageError{err}
	}
	return (&apiclient.Client{Base: c.base, Token: c.token, HTTP: c.http}).Do(ctx, method, path, body, out, header...)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// subjectValue reads a subject identifier from a flag; "-" reads one line
// from stdin so the identifier stays out of the process list.
func subjectValue(v string, stdin io.Reader) (string, error) {
	if v == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", &usageError{fmt.Errorf("--subject -: nothing on stdin")}
		}
		v = strings.TrimSpace(line)
	}
	if v == "" {
		return "", &usageError{fmt.Errorf("--subject is required (use - to read it from stdin)")}
	}
	return v, nil
}

func newConsentCmd(lookup env, stdin io.Reader, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "consent", Short: "Grant, inspect, withdraw and export consents through a consent service"}
	cf := addClientFlags(cmd, lookup, "http://127.0.0.1:7002", "FEDRISK_CONSENT_URL")
	call := func(cmd *cobra.Command, method, path string, body any, header ...string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		var out any
		if _, err := c.do(cmd.Context(), method, path, body, &out, header...); err != nil {
			return err
		}
		return printJSON(stdout, out)
	}

	var g consentapi.GrantBody
	var categories, collectedAt string
	grant := &cobra.Command{
		Use: "grant", Short: "Record a consent (prints it with its signed receipt)", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := subjectValue(g.Subject, stdin)
			if err != nil {
				return err
			}
			body := g
			body.Subject = s
			body.DataCategories = splitList(categories)
			body.Evidence.CollectedAt = collectedAt
			if body.Evidence.CollectedAt == "" {
				body.Evidence.CollectedAt = time.Now().UTC().Format(time.RFC3339)
			}
			return call(cmd, http.MethodPost, "/consent/v1/consents", body)
		},
	}
	fs := grant.Flags()
	fs.StringVar(&g.Subject, "subject", "", "subject identifier, or - to read it from stdin")
	fs.StringVar(&g.Purpose, "purpose", "credit_risk_assessment", "purpose id")
	fs.StringVar(&g.Party, "party", "", "host party the data may come from")
	fs.StringVar(&categories, "categories", "", "data categories, comma-separated")
	fs.IntVar(&g.PolicyVersion, "policy-version", 0, "policy version the subject agreed to")
	fs.StringVar(&g.ExpiresAt, "expires-at", "", "RFC 3339 expiry (default: the purpose's validity)")
	fs.StringVar(&g.Evidence.Channel, "channel", "", "collection channel (mobile_app, branch, web, ...)")
	fs.StringVar(&g.Evidence.Collector, "collector", "", "who collected the consent")
	fs.StringVar(&g.Evidence.Reference, "reference", "", "evidence reference (form number, recording id)")
	fs.StringVar(&collectedAt, "collected-at", "", "RFC 3339 time of consent (default: now)")
	fs.StringVar(&g.IdempotencyKey, "idempotency-key", "", "makes a retried grant safe")

	get := &cobra.Command{Use: "get ID", Short: "Show a consent", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodGet, "/consent/v1/consents/"+url.PathEscape(args[0]), nil)
		}}
	withdraw := &cobra.Command{Use: "withdraw ID", Short: "Withdraw a consent (its tokens stop verifying at once)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodPost, "/consent/v1/consents/"+url.PathEscape(args[0])+"/withdraw", nil)
		}}
	token := &cobra.Command{Use: "token ID", Short: "Issue a consent token for an active consent", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodPost, "/consent/v1/consents/"+url.PathEscape(args[0])+"/tokens", nil)
		}}
	subjectCmd := func(use, short, path string) *cobra.Command {
		var subject string
		c := &cobra.Command{Use: use, Short: short, Args: noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				s, err := subjectValue(subject, stdin)
				if err != nil {
					return err
				}
				return call(cmd, http.MethodPost, path, consentapi.SubjectBody{Subject: s})
			}}
		c.Flags().StringVar(&subject, "subject", "", "subject identifier, or - to read it from stdin")
		return c
	}
	var pb consentapi.PurposeBody
	purpose := &cobra.Command{Use: "purpose", Short: "Purposes and policy versions (admin)"}
	purposeCreate := &cobra.Command{Use: "create", Short: "Create a purpose at policy version 1", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, http.MethodPost, "/consent/v1/purposes", pb)
		}}
	pf := purposeCreate.Flags()
	pf.StringVar(&pb.ID, "id", "credit_risk_assessment", "purpose id")
	pf.StringVar(&pb.Description, "description", "", "what the purpose is")
	pf.StringVar(&pb.PolicyText, "policy-text", "", "text of policy version 1")
	pf.StringVar(&pb.PolicyURL, "policy-url", "", "where the policy is published")
	pf.BoolVar(&pb.RenewOnNewPolicy, "renew-on-new-policy", false, "consents need renewal when a new policy version is published")
	pf.IntVar(&pb.ValidityDays, "validity-days", 0, "consent lifetime in days (default 365)")
	var policyText string
	purposePublish := &cobra.Command{Use: "publish PURPOSE", Short: "Publish the next policy version", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodPost, "/consent/v1/purposes/"+url.PathEscape(args[0])+"/policies", consentapi.PolicyBody{Text: policyText})
		}}
	purposePublish.Flags().StringVar(&policyText, "text", "", "policy text")
	purposeList := &cobra.Command{Use: "list", Short: "List purposes", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, http.MethodGet, "/consent/v1/purposes", nil)
		}}
	purpose.AddCommand(purposeCreate, purposePublish, purposeList)

	cmd.AddCommand(grant, get, withdraw, token,
		subjectCmd("list", "List a subject's consents", "/consent/v1/subjects/consents"),
		subjectCmd("export", "Export everything held about a subject", "/consent/v1/subjects/export"),
		subjectCmd("delete", "Delete a subject: withdraw its consents and destroy its data key", "/consent/v1/subjects/delete"),
		purpose)
	return cmd
}
