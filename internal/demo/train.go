package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

// trainRecord is the training stage's outcome.
type trainRecord struct {
	Job, Version                 string
	AUCFederated, AUCCentralized float64
	EpochSeconds                 float64
	Epochs                       int
}

// train is stage 5: hetero-LR on encrypted values over the PSI's
// intersection; the centralized baseline is trained on the same rows
// joined in the clear, here only because the demo holds both parties' data.
func (d *Demo) train(ctx context.Context) error {
	d.prog.stage("Train the federated model (hetero-LR on CKKS-encrypted values)")
	var rec trainRecord
	tc := d.Guest.Clients[config.ServiceServing]
	if d.state.get("train", &rec) && d.jobSucceeded(ctx, tc, "/train/v1/jobs/"+rec.Job) {
		d.setTrain(rec)
		d.prog.reused("model %s version %s, AUC %.4f federated vs %.4f centralized", ModelID, rec.Version, rec.AUCFederated, rec.AUCCentralized)
		return nil
	}
	file, err := filepath.Rel(d.Guest.Dir, d.Guest.Input)
	if err != nil {
		return err
	}
	hostFile, err := filepath.Rel(d.Host.Dir, d.Host.Input)
	if err != nil {
		return err
	}
	var job trainjobapi.JobBody
	if _, err := tc.Do(ctx, "POST", "/train/v1/jobs", trainjobapi.CreateBody{Role: "guest", Algo: "hetero-lr", Peer: hostParty,
		File: filepath.ToSlash(file), HostFile: filepath.ToSlash(hostFile), PSIJob: d.Result.PSIJob, ModelID: ModelID, Epochs: d.opts.Epochs}, &job); err != nil {
		return fmt.Errorf("start training: %w", err)
	}
	for job.Status == "waiting" || job.Status == "running" || job.Status == "pending" {
		if err := sleep(ctx, 200e6); err != nil {
			return err
		}
		if _, err := tc.Do(ctx, "GET", "/train/v1/jobs/"+job.ID, nil, &job); err != nil {
			return err
		}
		if job.Epochs > 0 {
			d.prog.update(int64(job.EpochsDone), int64(job.Epochs))
		}
	}
	if job.Status != "succeeded" || job.Test == nil {
		return fmt.Errorf("training job %s %s: %s", job.ID, job.Status, job.Error)
	}
	rec = trainRecord{Job: job.ID, Version: job.ModelVersion, AUCFederated: job.Test.AUC, Epochs: len(job.EpochStats)}
	for _, e := range job.EpochStats {
		rec.EpochSeconds += e.Seconds
	}
	if rec.Epochs > 0 {
		rec.EpochSeconds /= float64(rec.Epochs)
	}
	if rec.AUCCentralized, err = d.centralized(ctx, job); err != nil {
		return fmt.Errorf("centralized baseline: %w", err)
	}
	if err := d.state.put("train", rec); err != nil {
		return err
	}
	d.setTrain(rec)
	d.prog.done("model %s version %s: %d epochs at %.2f s; test AUC %.4f federated vs %.4f centralized",
		ModelID, rec.Version, rec.Epochs, rec.EpochSeconds, rec.AUCFederated, rec.AUCCentralized)
	return nil
}

func (d *Demo) setTrain(rec trainRecord) {
	d.Result.TrainJob, d.Result.ModelVersion = rec.Job, rec.Version
	d.Result.AUCFederated, d.Result.AUCCentralized = rec.AUCFederated, rec.AUCCentralized
	d.Result.EpochSeconds, d.Result.Epochs = rec.EpochSeconds, rec.Epochs
}

// register is stage 6: the trained version becomes the bank's stable model.
func (d *Demo) register(ctx context.Context) error {
	d.prog.stage("Register the model and promote it to stable")
	c := d.Guest.Clients[config.ServiceServing]
	if _, err := c.Do(ctx, "POST", "/score/v1/models/"+ModelID+"/promote", map[string]string{"version": d.Result.ModelVersion, "label": "stable"}, nil); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	d.prog.done("%s version %s is stable at the bank; the partner holds its half under the same id and version", ModelID, d.Result.ModelVersion)
	return nil
}

// PrintSummary writes what the demo did and how to try it.
func (d *Demo) PrintSummary(w io.Writer) {
	r := d.Result
	g := d.Guest.URLs[config.ServiceServing]
	fmt.Fprintf(w, `
Summary
  customers            bank %d, partner %d
  consents             %d active, %d never given, %d withdrawn
  PSI                  %d customers in common (job %s)
  training             %d epochs, %.2f s per epoch
  test AUC             %.4f federated, %.4f centralized (difference %+.4f)
  model                %s version %s (stable)
  scoring              %d scores, %d degraded; latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms
  withdrawn consent    refused (%s)
  privacy budget       one subject drained after %d fresh releases, then refused (%s); lowest remaining %.2f

Try it
  export CA=%s
  curl --cacert $CA -X POST %s/score -H 'Content-Type: application/json' \
       -d '{"subject":"%s","consent_id":"%s"}'
  curl --cacert $CA %s/metrics | grep -E 'model_inference|privacy_budget'
  curl --cacert $CA %s/metrics | grep privacy_budget_remaining
  curl --cacert $CA %s/score/v1/models/%s
  logs: %s, %s
`, r.GuestCustomers, r.HostCustomers, r.Consented, r.MissingConsent, r.Withdrawn, r.Intersection, r.PSIJob,
		r.Epochs, r.EpochSeconds, r.AUCFederated, r.AUCCentralized, r.AUCFederated-r.AUCCentralized,
		ModelID, r.ModelVersion, r.Scored, r.Degraded, r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.Max,
		r.RefusedWithdrawn, r.BudgetReleases, r.BudgetRefusal, r.BudgetRemaining,
		d.Certs.CACert, g, d.sampleSubject(), d.consentRec.ActiveIDs[d.sampleSubject()], g, d.Host.URLs[config.ServiceServing], g, ModelID,
		d.logPath(guestParty), d.logPath(hostParty))
	d.printConsoles(w)
}

func (d *Demo) sampleSubject() string {
	ids := d.scoredSubjects()
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// EndpointsFile is where the demo writes its endpoints as shell variables.
func (d *Demo) EndpointsFile() string { return filepath.Join(d.opts.Dir, "demo-endpoints.env") }

// writeEndpoints writes Dir/demo-endpoints.env for scripts
// (scripts/observability-smoke.sh sources it).
func (d *Demo) writeEndpoints() error {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(v)) }
	for _, p := range []struct {
		prefix string
		party  *Party
	}{{"GUEST", d.Guest}, {"HOST", d.Host}} {
		line(p.prefix+"_PSI_URL", p.party.URLs[config.ServicePSI])
		line(p.prefix+"_CONSENT_URL", p.party.URLs[config.ServiceConsent])
		line(p.prefix+"_SERVING_URL", p.party.URLs[config.ServiceServing])
		line(p.prefix+"_CONSOLE_URL", p.party.ConsoleURL)
		line(p.prefix+"_CONSOLE_TOKEN", p.party.ConsoleToken)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	op := d.Certs.Parties["operator"]
	line("CA_FILE", abs(d.Certs.CACert))
	line("CLIENT_CERT_FILE", abs(op.ClientCert))
	line("CLIENT_KEY_FILE", abs(op.ClientKey))
	line("SAMPLE_SUBJECT", d.sampleSubject())
	line("SAMPLE_CONSENT_ID", d.consentRec.ActiveIDs[d.sampleSubject()])
	b.WriteString("DEMO_READY=1\n")
	tmp := d.EndpointsFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.EndpointsFile())
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
