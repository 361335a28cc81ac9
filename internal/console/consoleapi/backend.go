package consoleapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
	"github.com/fedrisk/fedrisk/internal/web"
)

// backend calls the services with one session's token.
type backend struct {
	consent, psi, serving *apiclient.Client
	prom                  *apiclient.Client // nil when no Prometheus is configured
}

func (a *API) backend(token string) *backend {
	mk := func(base string, c *http.Client) *apiclient.Client {
		return &apiclient.Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: c}
	}
	b := &backend{consent: mk(a.opts.ConsentURL, a.opts.HTTP), psi: mk(a.opts.PSIURL, a.opts.HTTP), serving: mk(a.opts.ServingURL, a.opts.HTTP)}
	if a.opts.PrometheusURL != "" {
		b.prom = &apiclient.Client{Base: strings.TrimRight(a.opts.PrometheusURL, "/"), HTTP: a.opts.PrometheusHTTP}
	}
	return b
}

func get[T any](ctx context.Context, c *apiclient.Client, path string) (T, error) {
	var out T
	_, err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

func post[T any](ctx context.Context, c *apiclient.Client, path string, body any, header ...string) (T, error) {
	var out T
	_, err := c.Do(ctx, http.MethodPost, path, body, &out, header...)
	return out, err
}

// serviceInfo is GET {prefix}/info (node.Info; kept apart to avoid an
// import of the node).
type serviceInfo struct {
	Service       string `json:"service"`
	Party         string `json:"party"`
	Role          string `json:"role"`
	Build         string `json:"build"`
	Release       string `json:"release"`
	SchemaVersion int    `json:"schema_version"`
	SecurityMode  string `json:"security_mode"`
	AuthRequired  *bool  `json:"auth_required"`
	AuditLevel    string `json:"audit_level"`
}

// probe is one service's health as the overview shows it.
type probe struct {
	Name, URL     string
	Health, Ready bool
	HealthErr     string
	NotReady      string // why /ready refused
	Checks        []web.CheckResult
	Info          serviceInfo
	InfoErr       string
	TLS           bool
	LatencyMs     float64
}

func (b *backend) probe(ctx context.Context, name string, c *apiclient.Client, prefix string) probe {
	p := probe{Name: name, URL: c.Base, TLS: strings.HasPrefix(c.Base, "https://")}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Text(ctx, "/health"); err != nil {
		p.HealthErr = shortErr(err)
	} else {
		p.Health = true
	}
	p.LatencyMs = float64(time.Since(start).Microseconds()) / 1000
	var rb web.ReadyBody
	if _, err := c.Do(ctx, http.MethodGet, "/ready", nil, &rb); err == nil {
		p.Ready, p.Checks = true, rb.Checks
	} else {
		p.NotReady = shortErr(err) // a 503 names the failed checks
	}
	info, err := get[serviceInfo](ctx, c, prefix+"/info")
	if err != nil {
		p.InfoErr = shortErr(err)
	}
	p.Info = info
	return p
}

// shortErr is an error for a page: the service's code and message, or the
// transport failure without the URL.
func shortErr(err error) string {
	if e, ok := err.(*apiclient.Error); ok {
		if len(e.Message) > 200 {
			return e.Code + ": " + e.Message[:200] + "…"
		}
		return e.Code + ": " + e.Message
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// The services' paths.
const (
	pathPurposes  = "/consent/v1/purposes"
	pathConsents  = "/consent/v1/consents"
	pathSubject   = "/consent/v1/subjects/consents"
	pathWhoAmI    = "/consent/v1/whoami"
	pathAudit     = "/consent/v1/audit"
	pathAuditVer  = "/consent/v1/audit/verify"
	pathJWKS      = "/consent/.well-known/jwks.json"
	pathPSIJobs   = "/psi/v1/jobs"
	pathTrainJobs = "/train/v1/jobs"
	pathModels    = "/score/v1/models"
	pathScore     = "/score"
	pathBudgets   = "/score/v1/budgets"
	pathPolicies  = "/score/v1/budgets/policies"
)

func (b *backend) whoami(ctx context.Context) (consentapi.WhoAmI, error) {
	return get[consentapi.WhoAmI](ctx, b.consent, pathWhoAmI)
}

func (b *backend) purposes(ctx context.Context) ([]consent.Purpose, error) {
	out, err := get[struct {
		Purposes []consent.Purpose `json:"purposes"`
	}](ctx, b.consent, pathPurposes)
	return out.Purposes, err
}

func (b *backend) policy(ctx context.Context, purpose string, version int) (consent.Policy, error) {
	return get[consent.Policy](ctx, b.consent, fmt.Sprintf("%s/%s/policies/%d", pathPurposes, url.PathEscape(purpose), version))
}

func (b *backend) subjectConsents(ctx context.Context, subject string) ([]consent.Consent, error) {
	out, err := post[struct {
		Consents []consent.Consent `json:"consents"`
	}](ctx, b.consent, pathSubject, consentapi.SubjectBody{Subject: subject})
	return out.Consents, err
}

func (b *backend) consentByID(ctx context.Context, id string) (consent.Consent, error) {
	return get[consent.Consent](ctx, b.consent, pathConsents+"/"+url.PathEscape(id))
}

func (b *backend) grant(ctx context.Context, g consentapi.GrantBody, idempotencyKey string) (consent.Consent, error) {
	return post[consent.Consent](ctx, b.consent, pathConsents, g, "Idempotency-Key", idempotencyKey)
}

func (b *backend) withdraw(ctx context.Context, id string) (consent.Consent, error) {
	return post[consent.Consent](ctx, b.consent, pathConsents+"/"+url.PathEscape(id)+"/withdraw", struct{}{})
}

func (b *backend) jwks(ctx context.Context) ([]byte, error) {
	s, err := b.consent.Text(ctx, pathJWKS)
	return []byte(s), err
}

func (b *backend) auditPage(ctx context.Context, after int64, limit int, action string) (consentapi.AuditPage, error) {
	q := url.Values{"after": {fmt.Sprint(after)}, "limit": {fmt.Sprint(limit)}}
	if action != "" {
		q.Set("action", action)
	}
	return get[consentapi.AuditPage](ctx, b.consent, pathAudit+"?"+q.Encode())
}

func (b *backend) auditVerify(ctx context.Context) (consentapi.AuditReport, error) {
	return get[consentapi.AuditReport](ctx, b.consent, pathAuditVer)
}

func (b *backend) psiJobs(ctx context.Context) ([]psiapi.JobBody, error) {
	out, err := get[struct {
		Jobs []psiapi.JobBody `json:"jobs"`
	}](ctx, b.psi, pathPSIJobs+"?limit=200")
	return out.Jobs, err
}

func (b *backend) psiJob(ctx context.Context, id string) (psiapi.JobBody, error) {
	return get[psiapi.JobBody](ctx, b.psi, pathPSIJobs+"/"+url.PathEscape(id))
}

func (b *backend) trainJobs(ctx context.Context) ([]trainjobapi.JobBody, error) {
	out, err := get[struct {
		Jobs []trainjobapi.JobBody `json:"jobs"`
	}](ctx, b.serving, pathTrainJobs)
	return out.Jobs, err
}

func (b *backend) trainJob(ctx context.Context, id string) (trainjobapi.JobBody, error) {
	return get[trainjobapi.JobBody](ctx, b.serving, pathTrainJobs+"/"+url.PathEscape(id))
}

func (b *backend) models(ctx context.Context) ([]registryapi.ModelBody, error) {
	out, err := get[registryapi.ModelsResponse](ctx, b.serving, pathModels)
	return out.Models, err
}

func (b *backend) model(ctx context.Context, id string) (registryapi.ModelBody, error) {
	return get[registryapi.ModelBody](ctx, b.serving, pathModels+"/"+url.PathEscape(id))
}

func (b *backend) version(ctx context.Context, id, version, role string, half bool) (registryapi.VersionBody, error) {
	q := url.Values{}
	if role != "" {
		q.Set("role", role)
	}
	if half {
		q.Set("half", "1")
	}
	p := pathModels + "/" + url.PathEscape(id) + "/versions/" + url.PathEscape(version)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return get[registryapi.VersionBody](ctx, b.serving, p)
}

func (b *backend) promote(ctx context.Context, id, version, label string) (registryapi.ChangeBody, error) {
	return post[registryapi.ChangeBody](ctx, b.serving, pathModels+"/"+url.PathEscape(id)+"/promote", registryapi.PromoteRequest{Version: version, Label: label})
}

func (b *backend) rollback(ctx context.Context, id, label string) (registryapi.ChangeBody, error) {
	return post[registryapi.ChangeBody](ctx, b.serving, pathModels+"/"+url.PathEscape(id)+"/rollback", registryapi.RollbackRequest{Label: label})
}

func (b *backend) score(ctx context.Context, body servingapi.ScoreBody) (servingapi.ScoreAnswer, error) {
	return post[servingapi.ScoreAnswer](ctx, b.serving, pathScore, body)
}

// budgets reads up to max budgets, a page of 1,000 at a time; more reports
// whether there were more.
func (b *backend) budgets(ctx context.Context, max int) (out []servingapi.BudgetBody, more bool, err error) {
	after := ""
	for len(out) < max {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		page, err := get[servingapi.BudgetsAnswer](ctx, b.serving, pathBudgets+"?"+q.Encode())
		if err != nil {
			return out, false, err
		}
		out = append(out, page.Budgets...)
		if page.Next == "" {
			return out, false, nil
		}
		after = page.Next
	}
	return out, true, nil
}

func (b *backend) policies(ctx context.Context) ([]servingapi.PolicyBody, error) {
	out, err := get[servingapi.PoliciesAnswer](ctx, b.serving, pathPolicies)
	return out.Policies, err
}

func (b *backend) metrics(ctx context.Context, c *apiclient.Client) ([]byte, error) {
	s, err := c.Text(ctx, "/metrics")
	return []byte(s), err
}

func (b *backend) alerts(ctx context.Context) ([]byte, error) {
	s, err := b.prom.Text(ctx, "/api/v1/alerts")
	return []byte(s), err
}
