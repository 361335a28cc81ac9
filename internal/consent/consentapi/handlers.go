package consentapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/web"
)

// PurposeBody creates a purpose.
type PurposeBody struct {
	ID               string `json:"id"`
	Description      string `json:"description"`
	PolicyText       string `json:"policy_text"`
	PolicyURL        string `json:"policy_url,omitempty"`
	RenewOnNewPolicy bool   `json:"renew_on_new_policy"`
	ValidityDays     int    `json:"validity_days,omitempty"`
}

// PolicyBody publishes a new policy version.
type PolicyBody struct {
	Text string `json:"text"`
}

// EvidenceBody is how a consent was collected.
type EvidenceBody struct {
	Channel     string `json:"channel"`
	CollectedAt string `json:"collected_at"` // RFC 3339
	Collector   string `json:"collector"`
	Reference   string `json:"reference,omitempty"`
}

// GrantBody grants a consent. The idempotency key may also come in the
// Idempotency-Key header.
type GrantBody struct {
	Subject        string       `json:"subject"`
	Purpose        string       `json:"purpose"`
	Party          string       `json:"party"`
	DataCategories []string     `json:"data_categories"`
	PolicyVersion  int          `json:"policy_version"`
	ExpiresAt      string       `json:"expires_at,omitempty"`
	Evidence       EvidenceBody `json:"evidence"`
	IdempotencyKey string       `json:"idempotency_key,omitempty"`
}

// SubjectBody names a subject.
type SubjectBody struct {
	Subject string `json:"subject"`
}

// MaxFilterSubjects bounds the subjects of one filter call.
const MaxFilterSubjects = 10000

// FilterBody asks which subjects have a usable consent for data from party
// under purpose (POST /consent/v1/subjects/filter).
type FilterBody struct {
	Party    string   `json:"party"`
	Purpose  string   `json:"purpose"`
	Subjects []string `json:"subjects"` // raw identifiers, at most MaxFilterSubjects
}

// FilterAnswer is the answer: Usable[i] is for Subjects[i]; malformed
// identifiers are false.
type FilterAnswer struct {
	Usable []bool `json:"usable"`
}

// IntrospectBody asks whether a token is valid for an audience and purpose.
type IntrospectBody struct {
	Token    string `json:"token"`
	Audience string `json:"audience,omitempty"` // defaults to the calling peer's party
	Purpose  string `json:"purpose"`
}

// Introspection is the answer (RFC 7662 style).
type Introspection struct {
	Active        bool   `json:"active"`
	Reason        string `json:"reason,omitempty"`
	ConsentID     string `json:"consent_id,omitempty"`
	Subject       string `json:"sub,omitempty"`
	Audience      string `json:"aud,omitempty"`
	Purpose       string `json:"purpose,omitempty"`
	PolicyVersion int    `json:"policy_version,omitempty"`
	ExpiresAt     int64  `json:"exp,omitempty"`
}

func (a *API) listPurposes(w http.ResponseWriter, r *http.Request) error {
	list, err := a.svc.ListPurposes(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []consent.Purpose{}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"purposes": list})
	return nil
}

func (a *API) createPurpose(w http.ResponseWriter, r *http.Request) error {
	var b PurposeBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	p, err := a.svc.CreatePurpose(r.Context(), consent.PurposeRequest{ID: b.ID, Description: b.Description, PolicyText: b.PolicyText,
		PolicyURL: b.PolicyURL, RenewOnNewPolicy: b.RenewOnNewPolicy, ValidityDays: b.ValidityDays, Actor: principal(r.Context()).Actor()})
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusCreated, p)
	return nil
}

func (a *API) getPurpose(w http.ResponseWriter, r *http.Request) error {
	p, err := a.svc.GetPurpose(r.Context(), r.PathValue("purpose"))
	if err != nil {
		return notFoundIfUnknown(err)
	}
	web.WriteJSON(w, http.StatusOK, p)
	return nil
}

func notFoundIfUnknown(err error) error {
	if mapped, ok := mapError(err).(*web.Error); ok && mapped.Code == "unknown_purpose" {
		return web.Errorf(http.StatusNotFound, "not_found", "unknown purpose")
	}
	return err
}

func (a *API) publishPolicy(w http.ResponseWriter, r *http.Request) error {
	var b PolicyBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	pol, err := a.svc.PublishPolicy(r.Context(), r.PathValue("purpose"), b.Text, principal(r.Context()).Actor())
	if err != nil {
		return notFoundIfUnknown(err)
	}
	web.WriteJSON(w, http.StatusCreated, pol)
	return nil
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) error {
	v, err := pathInt(r, "version")
	if err != nil {
		return err
	}
	pol, err := a.svc.GetPolicy(r.Context(), r.PathValue("purpose"), v)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, pol)
	return nil
}

func (a *API) grant(w http.ResponseWriter, r *http.Request) error {
	var b GrantBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	key := b.IdempotencyKey
	if h := r.Header.Get("Idempotency-Key"); h != "" {
		if key != "" && key != h {
			return web.Errorf(http.StatusBadRequest, "invalid_field", "idempotency_key differs from the Idempotency-Key header")
		}
		key = h
	}
	expires, err := timeOrZero("expires_at", b.ExpiresAt)
	if err != nil {
		return err
	}
	collected, err := timeOrZero("evidence.collected_at", b.Evidence.CollectedAt)
	if err != nil {
		return err
	}
	c, replay, err := a.svc.Grant(r.Context(), consent.GrantRequest{
		Subject: b.Subject, Purpose: b.Purpose, Party: b.Party, Categories: b.DataCategories,
		PolicyVersion: b.PolicyVersion, ExpiresAt: expires,
		Evidence:       consent.Evidence{Channel: b.Evidence.Channel, CollectedAt: collected, Collector: b.Evidence.Collector, Reference: b.Evidence.Reference},
		IdempotencyKey: key, Actor: principal(r.Context()).Actor(),
	})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if replay {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/consent/v1/consents/"+c.ID)
	web.WriteJSON(w, status, c)
	return nil
}

func (a *API) getConsent(w http.ResponseWriter, r *http.Request) error {
	c, err := a.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) withdraw(w http.ResponseWriter, r *http.Request) error {
	c, err := a.svc.Withdraw(r.Context(), r.PathValue("id"), principal(r.Context()).Actor())
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *API) issueToken(w http.ResponseWriter, r *http.Request) error {
	t, err := a.svc.IssueToken(r.Context(), r.PathValue("id"), principal(r.Context()).Actor())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusCreated, t)
	return nil
}

func (a *API) decodeSubject(r *http.Request) (string, error) {
	var b SubjectBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return "", err
	}
	if b.Subject == "" {
		return "", web.Errorf(http.StatusBadRequest, "invalid_field", "subject is required")
	}
	return b.Subject, nil
}

func (a *API) listSubject(w http.ResponseWriter, r *http.Request) error {
	subject, err := a.decodeSubject(r)
	if err != nil {
		return err
	}
	list, err := a.svc.ListBySubject(r.Context(), subject)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"consents": list})
	return nil
}

func (a *API) export(w http.ResponseWriter, r *http.Request) error {
	subject, err := a.decodeSubject(r)
	if err != nil {
		return err
	}
	out, err := a.svc.Export(r.Context(), subject, principal(r.Context()).Actor())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) deleteSubject(w http.ResponseWriter, r *http.Request) error {
	subject, err := a.decodeSubject(r)
	if err != nil {
		return err
	}
	out, err := a.svc.DeleteSubject(r.Context(), subject, principal(r.Context()).Actor())
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

// filterSubjects answers which of up to MaxFilterSubjects identifiers have
// a usable consent for (party, purpose). The identifiers are neither logged
// nor stored, and errors never quote them.
func (a *API) filterSubjects(w http.ResponseWriter, r *http.Request) error {
	var b FilterBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	switch {
	case b.Subjects == nil:
		return web.Errorf(http.StatusBadRequest, "invalid_field", "subjects is required (a list of identifiers)")
	case len(b.Subjects) > MaxFilterSubjects:
		return web.Errorf(http.StatusBadRequest, "too_many_subjects", "at most %d subjects per call, got %d", MaxFilterSubjects, len(b.Subjects))
	}
	usable, err := a.svc.FilterUsable(r.Context(), b.Party, b.Purpose, b.Subjects)
	if err != nil {
		return err
	}
	if len(usable) != len(b.Subjects) {
		return fmt.Errorf("filter: %d answers for %d subjects", len(usable), len(b.Subjects))
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, FilterAnswer{Usable: usable})
	return nil
}

// introspect answers 200 with active=false for a rejected token (RFC 7662):
// the question was well formed, the answer is no.
func (a *API) introspect(w http.ResponseWriter, r *http.Request) error {
	var b IntrospectBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	p := principal(r.Context())
	aud := b.Audience
	if p.Kind == "peer" {
		if aud != "" && aud != p.Name {
			return web.Errorf(http.StatusForbidden, "forbidden", "a peer may introspect tokens for its own audience only")
		}
		aud = p.Name
	}
	if aud == "" || b.Purpose == "" || b.Token == "" {
		return web.Errorf(http.StatusBadRequest, "invalid_field", "token, audience and purpose are required")
	}
	claims, err := a.svc.Verify(r.Context(), b.Token, consent.Expect{Audience: aud, Purpose: b.Purpose}, p.Actor())
	if err != nil {
		mapped, ok := mapError(err).(*web.Error)
		if !ok || mapped.Status != http.StatusUnauthorized {
			return err
		}
		web.WriteJSON(w, http.StatusOK, Introspection{Active: false, Reason: mapped.Code[len("token_"):]})
		return nil
	}
	web.WriteJSON(w, http.StatusOK, Introspection{Active: true, ConsentID: claims.ConsentID, Subject: claims.Subject, Audience: aud,
		Purpose: claims.Purpose, PolicyVersion: claims.PolicyVersion, ExpiresAt: claims.ExpiresAt.Unix()})
	return nil
}

// revocationStream is a server-sent-events stream of revocations for the
// calling party, read from the audit log every StreamEvery, each event
// carrying its log seq as the SSE id; a heartbeat ("ping") goes out on every
// tick, so a host knows how fresh its view is and trusts its cache only
// while heartbeats arrive. A host that reconnects with Last-Event-ID misses
// nothing.
func (a *API) revocationStream(w http.ResponseWriter, r *http.Request) error {
	if a.revs == nil {
		return web.Errorf(http.StatusNotImplemented, "not_available", "revocation stream not available")
	}
	p := principal(r.Context())
	party := r.URL.Query().Get("party")
	switch {
	case p.Kind == "peer":
		if party != "" && party != p.Name {
			return web.Errorf(http.StatusForbidden, "forbidden", "a peer may follow its own revocations only")
		}
		party = p.Name
	case party != "":
		if err := consent.CheckParty(party); err != nil {
			return err
		}
	}
	ctx := r.Context()
	head, err := a.revs.Head(ctx)
	if err != nil {
		return err
	}
	last := head
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 || n > head {
			return web.Errorf(http.StatusBadRequest, "invalid_last_event_id", "Last-Event-ID must be a seq this stream sent")
		}
		last = n
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a long-lived stream
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(a.opts.StreamEvery)
	defer tick.Stop()
	for {
		events, upTo, err := a.revs.Since(ctx, party, last, 1000)
		if err != nil {
			a.opts.Log.WarnContext(ctx, "revocation stream: read failed", "err", err)
			return nil // the host reconnects and resumes; its cache stops counting meanwhile
		}
		for _, ev := range events {
			data := ev.ConsentID
			if ev.Kind == "purge" {
				data = ev.Purpose
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Kind, data)
		}
		last = upTo
		fmt.Fprintf(w, "id: %d\nevent: ping\ndata: \n\n", last)
		if err := rc.Flush(); err != nil {
			return nil
		}
		var wake <-chan struct{}
		if a.opts.Wake != nil {
			wake = a.opts.Wake()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.stop:
			return nil
		case <-tick.C:
		case <-wake:
		}
	}
}
