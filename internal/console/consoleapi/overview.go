package consoleapi

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/console"
)

// number is one key figure of the overview.
type number struct {
	Label, Value, Note, Href string
}

type overviewData struct {
	Probes           []probe
	AlertsConfigured bool
	Alerts           []console.Alert
	Firing           int
	AlertsErr        string
	Numbers          []number
}

// overview: service health, alerts firing, key numbers.
func (a *API) overview(w http.ResponseWriter, r *http.Request, rq *req) error {
	ctx := r.Context()
	cat := rq.cat
	d := overviewData{AlertsConfigured: rq.api.prom != nil}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() { d.Probes = rq.api.probeAll(ctx) })
	if d.AlertsConfigured {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			body, err := rq.api.alerts(actx)
			if err == nil {
				var alerts []console.Alert
				if alerts, err = console.ParseAlerts(body); err == nil {
					mu.Lock()
					d.Alerts = alerts
					for _, al := range alerts {
						if al.State == "firing" {
							d.Firing++
						}
					}
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			d.AlertsErr = shortErr(err)
			mu.Unlock()
		})
	}
	nums := map[string]number{}
	add := func(key string, n number) {
		mu.Lock()
		nums[key] = n
		mu.Unlock()
	}
	if rq.sess.user.Has(roleRead) {
		nctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		wg.Go(func() {
			ps, err := rq.api.purposes(nctx)
			n := number{Label: cat.T("overview.n.purposes"), Value: "—", Href: "/consents"}
			if err == nil {
				n.Value = console.Int(int64(len(ps)))
			}
			add("1", n)
		})
		wg.Go(func() {
			jobs, err := rq.api.psiJobs(nctx)
			n := number{Label: cat.T("overview.n.psi"), Value: "—", Href: "/psi"}
			if err == nil {
				n.Value = console.Int(int64(len(jobs)))
				running := 0
				for _, j := range jobs {
					if j.Status == "running" || j.Status == "pending" {
						running++
					}
				}
				for _, j := range jobs { // newest first
					if j.Status == "done" && j.IntersectionSize != nil {
						n.Note = cat.F("overview.n.psi_last", console.Int(*j.IntersectionSize))
						break
					}
				}
				if running > 0 {
					n.Note = cat.F("overview.n.running", running)
				}
			}
			add("2", n)
		})
		wg.Go(func() {
			jobs, err := rq.api.trainJobs(nctx)
			n := number{Label: cat.T("overview.n.training"), Value: "—", Href: "/training"}
			if err == nil {
				n.Value = console.Int(int64(len(jobs)))
				sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Created.After(jobs[j].Created) })
				for _, j := range jobs {
					if j.Test != nil && j.Status == "succeeded" {
						n.Note = cat.F("overview.n.auc", j.Test.AUC)
						break
					}
				}
			}
			add("3", n)
		})
		wg.Go(func() {
			ms, err := rq.api.models(nctx)
			n := number{Label: cat.T("overview.n.models"), Value: "—", Href: "/models"}
			if err == nil {
				n.Value = console.Int(int64(len(ms)))
				for _, m := range ms {
					if m.ID == a.opts.DefaultModel {
						if v := m.Labels["stable"]; v != "" {
							n.Note = cat.F("overview.n.stable", m.ID, v)
						}
					}
				}
			}
			add("4", n)
		})
		if a.opts.Role == "host" {
			wg.Go(func() {
				bs, more, err := rq.api.budgets(nctx, 10000)
				n := number{Label: cat.T("overview.n.budgets_low"), Value: "—", Href: "/budgets"}
				if err == nil {
					low := 0
					for _, b := range bs {
						if b.RemainingFraction < console.LowFraction {
							low++
						}
					}
					n.Value = console.Int(int64(low))
					n.Note = cat.F("overview.n.budgets_of", console.Int(int64(len(bs))))
					if more {
						n.Note += "+"
					}
				}
				add("5", n)
			})
		}
		wg.Go(func() {
			page, err := rq.api.auditPage(nctx, 0, 1, "")
			n := number{Label: cat.T("overview.n.audit"), Value: "—", Href: "/audit"}
			if err == nil {
				n.Value = console.Int(page.Head)
			}
			add("6", n)
		})
	}
	wg.Wait()
	for _, k := range []string{"1", "2", "3", "4", "5", "6"} {
		if n, ok := nums[k]; ok {
			d.Numbers = append(d.Numbers, n)
		}
	}
	return a.render(w, r, rq, http.StatusOK, "overview", cat.T("overview.title"), d)
}

// security: the emergency-relevant settings each service reports.
func (a *API) security(w http.ResponseWriter, r *http.Request, rq *req) error {
	ctx := r.Context()
	probes := rq.api.probeAll(ctx)
	return a.render(w, r, rq, http.StatusOK, "security", rq.cat.T("security.title"), struct {
		Probes       []probe
		AuthRequired bool
		ConsoleTLS   bool
	}{probes, a.opts.AuthRequired, secureRequest(r)})
}

// probeAll probes the three services at once.
func (b *backend) probeAll(ctx context.Context) []probe {
	svcs := []struct {
		name, prefix string
		c            *apiclient.Client
	}{{"consent-service", "/consent", b.consent}, {"psi-service", "/psi", b.psi}, {"model-serving", "/score", b.serving}}
	out := make([]probe, len(svcs))
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Go(func() { out[i] = b.probe(ctx, s.name, s.c, s.prefix) })
	}
	wg.Wait()
	return out
}
