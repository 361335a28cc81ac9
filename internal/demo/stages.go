package demo

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// createSchema creates a PostgreSQL schema if it does not exist.
func createSchema(ctx context.Context, base, schema string) error {
	db, err := sqldb.Open(ctx, base, "")
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema)
	return err
}

// consentRecord is the consents stage's outcome.
type consentRecord struct {
	Consented, Missing, Withdrawn int
	// WithdrawnIDs and ActiveIDs map samples of subjects to their
	// consent ids: active ones the partner also has (the scoring stages
	// score them) and withdrawn ones (their scores are refused).
	WithdrawnIDs map[string]string
	ActiveIDs    map[string]string
}

// consents is stage 2: the bank records its customers' consents to obtain
// data from the partner; a share never consented and a share withdraws.
func (d *Demo) consents(ctx context.Context) error {
	d.prog.stage("Record the bank's customers' consents (some missing, some withdrawn)")
	var rec consentRecord
	if d.state.get("consents", &rec) {
		d.setConsents(rec)
		d.prog.reused("%d consented, %d never asked, %d withdrawn", rec.Consented, rec.Missing, rec.Withdrawn)
		return nil
	}
	c := d.Guest.Clients[config.ServiceConsent]
	_, err := c.Do(ctx, "POST", "/consent/v1/purposes", consentapi.PurposeBody{ID: Purpose,
		Description: "Assess the credit risk of loan applicants with data from the bank's partners.",
		PolicyText:  "The bank assesses your credit risk with data its partner holds about you; you can withdraw at any time."}, nil)
	if err != nil && apiclient.CodeOf(err) != "purpose_exists" {
		return fmt.Errorf("create the purpose: %w", err)
	}
	rec = consentRecord{WithdrawnIDs: map[string]string{}, ActiveIDs: map[string]string{}}
	var asked []string
	for _, id := range d.Guest.IDs {
		if fateOf(id, d.opts.Missing, d.opts.Withdrawn) == fateMissing {
			rec.Missing++
			continue
		}
		asked = append(asked, id)
	}
	host := make(map[string]bool, len(d.Host.IDs))
	for _, id := range d.Host.IDs {
		host[id] = true
	}
	var mu sync.Mutex
	err = forEach(ctx, asked, 8, d.prog, func(ctx context.Context, id string) error {
		var out struct {
			ID string `json:"id"`
		}
		body := consentapi.GrantBody{Subject: id, Purpose: Purpose, Party: hostParty,
			DataCategories: []string{"credit.limit", "credit.repayment_history", "demographics"}, PolicyVersion: 1,
			Evidence:       consentapi.EvidenceBody{Channel: "online_banking", Collector: "fedrisk-demo", CollectedAt: time.Now().UTC().Format(time.RFC3339)},
			IdempotencyKey: "demo-" + id}
		if _, err := c.Do(ctx, "POST", "/consent/v1/consents", body, &out); err != nil {
			return fmt.Errorf("grant: %w", err)
		}
		withdraw := fateOf(id, d.opts.Missing, d.opts.Withdrawn) == fateWithdrawn
		if withdraw {
			if _, err := c.Do(ctx, "POST", "/consent/v1/consents/"+out.ID+"/withdraw", map[string]string{"reason": "customer request"}, nil); err != nil && apiclient.CodeOf(err) != "consent_not_active" {
				return fmt.Errorf("withdraw: %w", err)
			}
		}
		mu.Lock()
		if withdraw {
			rec.Withdrawn++
			if len(rec.WithdrawnIDs) < 20 {
				rec.WithdrawnIDs[id] = out.ID
			}
		} else {
			rec.Consented++
			if len(rec.ActiveIDs) < 20 && host[id] {
				rec.ActiveIDs[id] = out.ID
			}
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	if err := d.state.put("consents", rec); err != nil {
		return err
	}
	d.setConsents(rec)
	d.prog.done("%d consented, %d never asked, %d withdrawn", rec.Consented, rec.Missing, rec.Withdrawn)
	return nil
}

func (d *Demo) setConsents(rec consentRecord) {
	d.Result.Consented, d.Result.MissingConsent, d.Result.Withdrawn = rec.Consented, rec.Missing, rec.Withdrawn
	d.consentRec = rec
}

// psiRecord is the PSI stage's outcome.
type psiRecord struct {
	Guest, Host  string
	Intersection int64
	Excluded     int64
}

// psi is stage 3: the partner starts its side, the bank runs ECDH-PSI over
// the consented customers only, in mode both so the partner learns its own
// rows of the intersection for training.
func (d *Demo) psi(ctx context.Context) error {
	d.prog.stage("Find the common consented customers with private set intersection")
	var rec psiRecord
	if d.state.get("psi", &rec) && d.jobSucceeded(ctx, d.Guest.Clients[config.ServicePSI], "/psi/v1/jobs/"+rec.Guest) {
		d.Result.PSIJob, d.Result.HostPSIJob, d.Result.Intersection = rec.Guest, rec.Host, rec.Intersection
		d.prog.reused("%d customers in common (job %s)", rec.Intersection, rec.Guest)
		return nil
	}
	var host, guest psiapi.JobBody
	hc, gc := d.Host.Clients[config.ServicePSI], d.Guest.Clients[config.ServicePSI]
	if _, err := hc.Do(ctx, "POST", "/psi/v1/jobs", psiapi.CreateJobBody{Role: "host", Peer: guestParty, Mode: "both",
		Input: psiapi.InputBody{Kind: "csv", Path: d.Host.Input, Column: "id"}}, &host); err != nil {
		return fmt.Errorf("start the partner's PSI job: %w", err)
	}
	if _, err := gc.Do(ctx, "POST", "/psi/v1/jobs", psiapi.CreateJobBody{Role: "guest", Peer: hostParty, PeerJob: host.ID, Mode: "both",
		Purpose: Purpose, Input: psiapi.InputBody{Kind: "csv", Path: d.Guest.Input, Column: "id"}}, &guest); err != nil {
		return fmt.Errorf("start the bank's PSI job: %w", err)
	}
	for {
		if _, err := gc.Do(ctx, "GET", "/psi/v1/jobs/"+guest.ID, nil, &guest); err != nil {
			return err
		}
		d.prog.update(guest.Progress.DoneItems, max(guest.Progress.TotalItems, 1))
		if guest.Status != "pending" && guest.Status != "running" {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if guest.Status != "done" || guest.IntersectionSize == nil {
		return fmt.Errorf("PSI job %s %s: %s", guest.ID, guest.Status, guest.Error)
	}
	// The host's side ends when the guest reveals the intersection.
	if err := d.waitJob(ctx, hc, "/psi/v1/jobs/"+host.ID); err != nil {
		return fmt.Errorf("the partner's PSI job: %w", err)
	}
	rec = psiRecord{Guest: guest.ID, Host: host.ID, Intersection: *guest.IntersectionSize, Excluded: guest.Excluded}
	if err := d.state.put("psi", rec); err != nil {
		return err
	}
	d.Result.PSIJob, d.Result.HostPSIJob, d.Result.Intersection = rec.Guest, rec.Host, rec.Intersection
	d.prog.done("%d customers in common; %d of the bank's excluded for lack of consent", rec.Intersection, rec.Excluded)
	return nil
}

// waitJob polls a job (PSI or training) until it leaves pending/running.
func (d *Demo) waitJob(ctx context.Context, c *apiclient.Client, path string) error {
	for {
		var j struct {
			Status, Error string
		}
		if _, err := c.Do(ctx, "GET", path, nil, &j); err != nil {
			return err
		}
		switch j.Status {
		case "pending", "running", "waiting":
		case "succeeded", "done": // training jobs succeed, PSI jobs are done
			return nil
		default:
			return fmt.Errorf("job %s: %s", j.Status, j.Error)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// jobSucceeded reports whether the job at path exists and succeeded.
func (d *Demo) jobSucceeded(ctx context.Context, c *apiclient.Client, path string) bool {
	var j struct{ Status string }
	_, err := c.Do(ctx, "GET", path, nil, &j)
	return err == nil && (j.Status == "succeeded" || j.Status == "done")
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
