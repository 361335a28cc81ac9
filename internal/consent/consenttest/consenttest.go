// Package consenttest is the conformance suite of consent.Store: every
// backend runs the same cases (see consent/sqlconsent's tests, on SQLite and,
// with FEDRISK_TEST_POSTGRES_URL set, PostgreSQL).
//
// Besides each method's contract the suite checks the two properties the
// store exists for: the database keeps one active consent per (subject,
// purpose, party) and one subject per blind index under concurrent grants,
// and every state change commits together with exactly one audit entry,
// leaving a chain that verifies (a failed change leaves no entry, and no
// subject row if the subject was new).
package consenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/consent"
)

// Run runs the suite. newStore returns a store over a fresh, empty database
// and the audit log that store appends to.
//
// Most cases share one store and run in parallel, each on purposes and
// subjects of its own, so they also race each other on one audit chain;
// after them, that chain must verify and hold one entry per successful
// state change. Cases that sweep expired consents (a store-wide operation)
// get a store of their own and check its log themselves.
func Run(t *testing.T, newStore func(t *testing.T) (consent.Store, *sqlaudit.Log)) {
	shared := newEnv(t, newStore)
	cases := []struct {
		name string
		own  bool // needs a store of its own
		fn   func(t *testing.T, e *env)
	}{
		{"PurposesAndPolicies", false, testPurposes},
		{"ConcurrentPublishPolicy", false, testConcurrentPublish},
		{"NeedsRenewal", false, testNeedsRenewal},
		{"GrantGetList", false, testGrantGetList},
		{"IdempotentReplay", false, testIdempotentReplay},
		{"IdempotencyConflict", false, testIdempotencyConflict},
		{"DuplicateActiveGrant", false, testDuplicateActive},
		{"Supersede", false, testSupersede},
		{"GrantOverExpired", false, testGrantOverExpired},
		{"Withdraw", false, testWithdraw},
		{"WithdrawAfterExpiry", false, testWithdrawAfterExpiry},
		{"ExpirySweep", true, testExpirySweep},
		{"DeleteSubject", false, testDeleteSubject},
		{"UnknownIDs", false, testUnknown},
		{"FailedGrantLeavesNothing", false, testFailedGrant},
		{"ConcurrentDuplicateGrants", false, testConcurrentDuplicates},
		{"ConcurrentNewSubject", false, testConcurrentNewSubject},
		{"ConcurrentNewSubjectPurposes", false, testConcurrentNewSubjectPurposes},
		{"ConcurrentIdempotentReplays", false, testConcurrentReplays},
		{"ConcurrentGrantWithdraw", false, testConcurrentGrantWithdraw},
		{"ConcurrentDeleteAndGrant", false, testConcurrentDeleteAndGrant},
	}
	t.Run("Cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				e := shared
				if tc.own {
					e = newEnv(t, newStore)
				}
				tc.fn(t, e)
				if tc.own {
					e.verifyLog(t)
				}
			})
		}
	})
	t.Run("AuditLogVerifies", func(t *testing.T) { shared.verifyLog(t) })
}

// t0 is the suite's clock: every time is relative to it, so nothing
// depends on the wall clock.
var t0 = time.UnixMicro(1_750_000_000_123_456).UTC()

const year = 365 * 24 * time.Hour

var ctx = context.Background()

// env is a store, its audit log and the number of successful state changes
// made through it, which is the number of entries the log must hold.
type env struct {
	st      consent.Store
	log     *sqlaudit.Log
	changes atomic.Int64
}

func newEnv(t *testing.T, newStore func(t *testing.T) (consent.Store, *sqlaudit.Log)) *env {
	st, log := newStore(t)
	return &env{st: st, log: log}
}

// counted records a successful state change.
func (e *env) counted(err error) error {
	if err == nil {
		e.changes.Add(1)
	}
	return err
}

func rid(prefix string) string {
	return prefix + hex.EncodeToString(rbytes(8))
}

func rbytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// ---- fixtures ----

func (e *env) createPurpose(t *testing.T, renew bool) consent.Purpose {
	t.Helper()
	p := consent.Purpose{ID: rid("p_"), Description: "credit risk assessment", PolicyVersion: 1,
		PolicyURL: "https://bank.example/policy", RenewOnNewPolicy: renew, DefaultValidity: 90 * 24 * time.Hour, CreatedAt: t0}
	must(t, e.counted(e.st.CreatePurpose(ctx, p, policy(p.ID, 1), event("purpose.create", "", p.ID))))
	return p
}

func policy(purpose string, v int) consent.Policy {
	return consent.Policy{Purpose: purpose, Version: v, Text: fmt.Sprintf("policy %d of %s", v, purpose), PublishedAt: t0.Add(time.Duration(v) * time.Hour)}
}

func (e *env) publish(purpose string, v int) error {
	return e.counted(e.st.PublishPolicy(ctx, policy(purpose, v), event("purpose.publish_policy", "", purpose)))
}

func event(action, subject, object string) audit.Event {
	return audit.Event{At: t0, Actor: "test", Action: action, Subject: subject, Object: object}
}

func newSubject() consent.Subject {
	return consent.Subject{ID: rid("sub_"), BlindIndex: rbytes(32), Pseudonym: rid("ps_"), DataKeyID: rid("dk_"),
		IdentifierEnc: rbytes(48), CreatedAt: t0}
}

// sameIdentity is what a second request for the same identifier builds
// before it knows the subject exists: a new id and data key, the same blind
// index and pseudonym (both derived from the identifier).
func sameIdentity(s consent.Subject) consent.Subject {
	n := newSubject()
	n.BlindIndex, n.Pseudonym = s.BlindIndex, s.Pseudonym
	return n
}

func newConsent(s consent.Subject, p consent.Purpose, party string) consent.Consent {
	id := rid("cns_")
	return consent.Consent{
		ID: id, SubjectID: s.ID, SubjectRef: s.Pseudonym, Purpose: p.ID, Party: party,
		Categories: []string{"credit.history", "income"}, PolicyVersion: p.PolicyVersion,
		GrantedAt: t0, ExpiresAt: t0.Add(year), Status: consent.StatusActive,
		Evidence: consent.Evidence{Channel: "web", CollectedAt: t0.Add(-time.Minute), Collector: "test", Reference: "form-7"},
		Receipt:  "receipt-of-" + id, RequestHash: rbytes(32), UpdatedAt: t0,
	}
}

func (e *env) grant(s consent.Subject, c consent.Consent, supersede string) (consent.Consent, bool, error) {
	ev := event("consent.grant", s.Pseudonym, c.ID)
	ev.Details = map[string]string{"purpose": c.Purpose, "party": c.Party}
	if supersede != "" {
		ev.Details["supersedes"] = supersede
	}
	got, replay, err := e.st.Grant(ctx, s, c, supersede, ev)
	if err == nil && !replay {
		e.changes.Add(1)
	}
	return got, replay, err
}

func (e *env) mustGrant(t *testing.T, s consent.Subject, c consent.Consent, supersede string) consent.Consent {
	t.Helper()
	got, replay, err := e.grant(s, c, supersede)
	if err != nil || replay {
		t.Fatalf("grant %s: replay=%v err=%v", c.ID, replay, err)
	}
	return got
}

func (e *env) withdraw(ref, id string, at time.Time) (consent.Consent, error) {
	c, err := e.st.Withdraw(ctx, id, at, event("consent.withdraw", ref, id))
	return c, e.counted(err)
}

func (e *env) deleteSubject(s consent.Subject, at time.Time) ([]string, error) {
	ids, err := e.st.DeleteSubject(ctx, s.ID, at, event("subject.delete", s.Pseudonym, ""))
	if err == nil {
		e.changes.Add(int64(len(ids))) // one consent.withdraw entry per consent it withdrew
	}
	return ids, e.counted(err)
}

func (e *env) expireDue(now time.Time, limit int) ([]consent.Consent, error) {
	var n int64
	out, err := e.st.ExpireDue(ctx, now, limit, func(c consent.Consent) audit.Event {
		n++
		return event("consent.expire", c.SubjectRef, c.ID)
	})
	if err == nil {
		e.changes.Add(n)
	}
	return out, err
}

// entries returns the audit entries about a subject, oldest first.
func (e *env) entries(t *testing.T, ref string) []audit.Entry {
	t.Helper()
	es, err := e.log.List(ctx, sqlaudit.Filter{Subject: ref, Limit: sqlaudit.MaxLimit})
	must(t, err)
	return es
}

func actions(es []audit.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Action+":"+e.Object)
	}
	return out
}

// verifyLog checks that the log verifies and holds one entry per counted
// change, numbered 1..n.
func (e *env) verifyLog(t *testing.T) {
	t.Helper()
	rep, err := e.log.Verify(ctx, nil)
	must(t, err)
	if rep.FirstBad != nil {
		t.Fatalf("audit log does not verify: %v", rep.FirstBad)
	}
	var n int64
	for after := int64(0); ; {
		page, err := e.log.List(ctx, sqlaudit.Filter{AfterSeq: after, Limit: sqlaudit.MaxLimit})
		must(t, err)
		for _, en := range page {
			if n++; en.Seq != n {
				t.Fatalf("entry %d has seq %d", n, en.Seq)
			}
		}
		if len(page) < sqlaudit.MaxLimit {
			break
		}
		after = page[len(page)-1].Seq
	}
	if want := e.changes.Load(); n != want || rep.Entries != want {
		t.Fatalf("audit log holds %d entries (verify read %d), want one per successful change: %d", n, rep.Entries, want)
	}
}

// show renders a consent for comparison: times as Unix microseconds.
func show(c consent.Consent) string {
	withdrawn := "-"
	if c.WithdrawnAt != nil {
		withdrawn = fmt.Sprint(c.WithdrawnAt.UnixMicro())
	}
	return fmt.Sprintf("id=%s subject=%s ref=%s purpose=%s party=%s categories=%q policy=%d granted=%d expires=%d status=%s withdrawn=%s "+
		"evidence=%s/%d/%s/%s receipt=%s key=%q hash=%x renewal=%t updated=%d",
		c.ID, c.SubjectID, c.SubjectRef, c.Purpose, c.Party, c.Categories, c.PolicyVersion, c.GrantedAt.UnixMicro(), c.ExpiresAt.UnixMicro(),
		c.Status, withdrawn, c.Evidence.Channel, c.Evidence.CollectedAt.UnixMicro(), c.Evidence.Collector, c.Evidence.Reference,
		c.Receipt, c.IdempotencyKey, c.RequestHash, c.NeedsRenewal, c.UpdatedAt.UnixMicro())
}

func sameConsent(t *testing.T, what string, got, want consent.Consent) {
	t.Helper()
	if g, w := show(got), show(want); g != w {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

func showSubject(s consent.Subject) string {
	deleted := "-"
	if s.DeletedAt != nil {
		deleted = fmt.Sprint(s.DeletedAt.UnixMicro())
	}
	return fmt.Sprintf("id=%s blind=%x pseudonym=%s key=%s enc=%x created=%d deleted=%s",
		s.ID, s.BlindIndex, s.Pseudonym, s.DataKeyID, s.IdentifierEnc, s.CreatedAt.UnixMicro(), deleted)
}

func showPurpose(p consent.Purpose) string {
	return fmt.Sprintf("id=%s desc=%q policy=%d url=%q renew=%t validity=%s created=%d",
		p.ID, p.Description, p.PolicyVersion, p.PolicyURL, p.RenewOnNewPolicy, p.DefaultValidity, p.CreatedAt.UnixMicro())
}

func showPolicy(p consent.Policy) string {
	return fmt.Sprintf("%s v%d %q published=%d", p.Purpose, p.Version, p.Text, p.PublishedAt.UnixMicro())
}

// race runs fn(0..n-1) in n goroutines released together.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// ---- cases ----

func testPurposes(t *testing.T, e *env) {
	p := e.createPurpose(t, true)
	got, err := e.st.GetPurpose(ctx, p.ID)
	must(t, err)
	if showPurpose(got) != showPurpose(p) {
		t.Fatalf("GetPurpose:\n got  %s\n want %s", showPurpose(got), showPurpose(p))
	}
	again := p
	again.Description = "another"
	wantErr(t, "CreatePurpose twice", e.st.CreatePurpose(ctx, again, policy(p.ID, 1), event("purpose.create", "", p.ID)), consent.ErrPurposeExists)

	pol, err := e.st.GetPolicy(ctx, p.ID, 1)
	must(t, err)
	if showPolicy(pol) != showPolicy(policy(p.ID, 1)) {
		t.Fatalf("GetPolicy v1 = %s", showPolicy(pol))
	}
	_, err = e.st.GetPolicy(ctx, p.ID, 2)
	wantErr(t, "GetPolicy of an unpublished version", err, consent.ErrNotFound)

	wantErr(t, "publish v3 over v1", e.publish(p.ID, 3), consent.ErrOutdatedPolicy)
	wantErr(t, "publish v1 again", e.publish(p.ID, 1), consent.ErrOutdatedPolicy)
	wantErr(t, "publish for an unknown purpose", e.publish(rid("p_"), 2), consent.ErrUnknownPurpose)
	must(t, e.publish(p.ID, 2))
	wantErr(t, "publish v2 twice", e.publish(p.ID, 2), consent.ErrOutdatedPolicy)

	got, err = e.st.GetPurpose(ctx, p.ID)
	must(t, err)
	p.PolicyVersion = 2
	if showPurpose(got) != showPurpose(p) {
		t.Fatalf("GetPurpose after publishing v2:\n got  %s\n want %s", showPurpose(got), showPurpose(p))
	}
	for v := 1; v <= 2; v++ {
		pol, err := e.st.GetPolicy(ctx, p.ID, v)
		must(t, err)
		if showPolicy(pol) != showPolicy(policy(p.ID, v)) {
			t.Fatalf("GetPolicy v%d = %s", v, showPolicy(pol))
		}
	}

	q := consent.Purpose{ID: rid("p_"), Description: "", PolicyVersion: 1, CreatedAt: t0.Add(time.Second)}
	must(t, e.counted(e.st.CreatePurpose(ctx, q, policy(q.ID, 1), event("purpose.create", "", q.ID))))
	list, err := e.st.ListPurposes(ctx)
	must(t, err)
	if !slices.IsSortedFunc(list, func(a, b consent.Purpose) int { return compareStrings(a.ID, b.ID) }) {
		t.Errorf("ListPurposes is not sorted by id")
	}
	for _, want := range []consent.Purpose{p, q} {
		i := slices.IndexFunc(list, func(x consent.Purpose) bool { return x.ID == want.ID })
		if i < 0 {
			t.Fatalf("ListPurposes lacks %s", want.ID)
		}
		if showPurpose(list[i]) != showPurpose(want) {
			t.Fatalf("ListPurposes:\n got  %s\n want %s", showPurpose(list[i]), showPurpose(want))
		}
	}
	_, err = e.st.GetPurpose(ctx, rid("p_"))
	wantErr(t, "GetPurpose unknown", err, consent.ErrUnknownPurpose)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testConcurrentPublish(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	errs := make([]error, 8)
	race(len(errs), func(i int) { errs[i] = e.publish(p.ID, 2) })
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, consent.ErrOutdatedPolicy):
			t.Fatalf("concurrent publish: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent publishers of v2 succeeded, want 1", ok)
	}
	got, err := e.st.GetPurpose(ctx, p.ID)
	must(t, err)
	if got.PolicyVersion != 2 {
		t.Fatalf("policy version = %d, want 2", got.PolicyVersion)
	}
}

func testNeedsRenewal(t *testing.T, e *env) {
	renew, keep := e.createPurpose(t, true), e.createPurpose(t, false)
	s := newSubject()
	cr := newConsent(s, renew, "host-a")
	cr.IdempotencyKey = rid("key_")
	cn := newConsent(s, keep, "host-a")
	for _, c := range []consent.Consent{e.mustGrant(t, s, cr, ""), e.mustGrant(t, s, cn, "")} {
		if c.NeedsRenewal {
			t.Fatalf("consent %s needs renewal under the current policy", c.ID)
		}
	}
	must(t, e.publish(renew.ID, 2))
	must(t, e.publish(keep.ID, 2))

	wantRenewal := map[string]bool{cr.ID: true, cn.ID: false}
	check := func(what string, c consent.Consent, err error) {
		t.Helper()
		must(t, err)
		if c.NeedsRenewal != wantRenewal[c.ID] {
			t.Fatalf("%s: consent %s NeedsRenewal = %v, want %v", what, c.ID, c.NeedsRenewal, wantRenewal[c.ID])
		}
		if c.Usable(t0) == wantRenewal[c.ID] {
			t.Fatalf("%s: consent %s Usable = %v", what, c.ID, c.Usable(t0))
		}
	}
	for _, id := range []string{cr.ID, cn.ID} {
		c, err := e.st.GetConsent(ctx, id)
		check("GetConsent", c, err)
	}
	c, err := e.st.ActiveConsent(ctx, s.ID, renew.ID, "host-a")
	check("ActiveConsent", c, err)
	c, err = e.st.FindByIdempotencyKey(ctx, cr.IdempotencyKey)
	check("FindByIdempotencyKey", c, err)
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListConsents: %d consents, want 2", len(list))
	}
	for _, c := range list {
		check("ListConsents", c, nil)
	}

	// Renewal under the new policy supersedes the old consent.
	renew.PolicyVersion = 2
	cr2 := newConsent(s, renew, "host-a")
	got := e.mustGrant(t, s, cr2, cr.ID)
	if got.NeedsRenewal || got.PolicyVersion != 2 {
		t.Fatalf("renewed consent: NeedsRenewal = %v, policy %d", got.NeedsRenewal, got.PolicyVersion)
	}
	old, err := e.st.GetConsent(ctx, cr.ID)
	must(t, err)
	if old.Status != consent.StatusSuperseded {
		t.Fatalf("renewed-away consent is %s, want superseded", old.Status)
	}
}

func testGrantGetList(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	c1 := newConsent(s, p, "host-a")
	c1.IdempotencyKey = rid("key_")
	got, replay, err := e.grant(s, c1, "")
	must(t, err)
	if replay {
		t.Fatal("first grant reported as a replay")
	}
	sameConsent(t, "Grant", got, c1)
	c, err := e.st.GetConsent(ctx, c1.ID)
	must(t, err)
	sameConsent(t, "GetConsent", c, c1)
	c, err = e.st.FindByIdempotencyKey(ctx, c1.IdempotencyKey)
	must(t, err)
	sameConsent(t, "FindByIdempotencyKey", c, c1)
	c, err = e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
	must(t, err)
	sameConsent(t, "ActiveConsent", c, c1)

	sub, err := e.st.GetSubject(ctx, s.ID)
	must(t, err)
	if showSubject(sub) != showSubject(s) {
		t.Fatalf("GetSubject:\n got  %s\n want %s", showSubject(sub), showSubject(s))
	}
	sub, err = e.st.FindSubject(ctx, s.BlindIndex)
	must(t, err)
	if showSubject(sub) != showSubject(s) {
		t.Fatalf("FindSubject:\n got  %s\n want %s", showSubject(sub), showSubject(s))
	}

	// A second consent of the now existing subject: no idempotency key, no
	// request hash, granted later.
	c2 := newConsent(s, p, "host-b")
	c2.RequestHash, c2.GrantedAt, c2.UpdatedAt = nil, t0.Add(time.Second), t0.Add(time.Second)
	got = e.mustGrant(t, s, c2, "")
	sameConsent(t, "second Grant", got, c2)
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListConsents: %d consents, want 2", len(list))
	}
	sameConsent(t, "ListConsents[0]", list[0], c1)
	sameConsent(t, "ListConsents[1]", list[1], c2)
	if es := e.entries(t, s.Pseudonym); len(es) != 2 || es[0].Object != c1.ID || es[1].Object != c2.ID {
		t.Fatalf("audit entries: %v", actions(es))
	}
}

func testIdempotentReplay(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	c := newConsent(s, p, "host-a")
	c.IdempotencyKey = rid("key_")
	first := e.mustGrant(t, s, c, "")
	before := len(e.entries(t, s.Pseudonym))

	retry := c
	retry.ID, retry.Receipt = rid("cns_"), "another receipt"
	got, replay, err := e.grant(s, retry, "")
	must(t, err)
	if !replay {
		t.Fatal("retry with the same key and request: replay = false")
	}
	sameConsent(t, "replay", got, first)
	if n := len(e.entries(t, s.Pseudonym)); n != before {
		t.Fatalf("replay appended audit entries: %d, want %d", n, before)
	}
	if list, err := e.st.ListConsents(ctx, s.ID); err != nil || len(list) != 1 {
		t.Fatalf("ListConsents after replay: %d consents, %v", len(list), err)
	}
	_, err = e.st.GetConsent(ctx, retry.ID)
	wantErr(t, "GetConsent of the replayed request's id", err, consent.ErrNotFound)

	// A replay returns the consent as it is now.
	_, err = e.withdraw(s.Pseudonym, c.ID, t0.Add(time.Hour))
	must(t, err)
	got, replay, err = e.grant(s, retry, "")
	must(t, err)
	if !replay || got.ID != c.ID || got.Status != consent.StatusWithdrawn {
		t.Fatalf("replay after withdrawal: replay=%v id=%s status=%s", replay, got.ID, got.Status)
	}
}

func testIdempotencyConflict(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	c := newConsent(s, p, "host-a")
	c.IdempotencyKey = rid("key_")
	e.mustGrant(t, s, c, "")
	before := len(e.entries(t, s.Pseudonym))

	other := newConsent(s, p, "host-b")
	other.IdempotencyKey = c.IdempotencyKey
	_, _, err := e.grant(s, other, "")
	wantErr(t, "same key, other request", err, consent.ErrIdempotencyConflict)
	_, err = e.st.GetConsent(ctx, other.ID)
	wantErr(t, "conflicting consent", err, consent.ErrNotFound)

	n := newSubject()
	nc := newConsent(n, p, "host-a")
	nc.IdempotencyKey = c.IdempotencyKey
	_, _, err = e.grant(n, nc, "")
	wantErr(t, "same key, other subject", err, consent.ErrIdempotencyConflict)
	_, err = e.st.GetSubject(ctx, n.ID)
	wantErr(t, "subject of the conflicting request", err, consent.ErrNotFound)
	if got := len(e.entries(t, s.Pseudonym)) + len(e.entries(t, n.Pseudonym)); got != before {
		t.Fatalf("conflicts appended audit entries: %d, want %d", got, before)
	}
}

func testDuplicateActive(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	e.mustGrant(t, s, newConsent(s, p, "host-a"), "")

	dup := newConsent(s, p, "host-a")
	_, _, err := e.grant(s, dup, "")
	wantErr(t, "second active grant", err, consent.ErrConsentExists)
	dupKey := newConsent(s, p, "host-a")
	dupKey.IdempotencyKey = rid("key_")
	_, _, err = e.grant(s, dupKey, "")
	wantErr(t, "second active grant with a key", err, consent.ErrConsentExists)
	_, err = e.st.FindByIdempotencyKey(ctx, dupKey.IdempotencyKey)
	wantErr(t, "key of a failed grant", err, consent.ErrNotFound)

	e.mustGrant(t, s, newConsent(s, p, "host-b"), "") // another party is another consent
	if es := e.entries(t, s.Pseudonym); len(es) != 2 {
		t.Fatalf("audit entries: %v, want the two successful grants", actions(es))
	}
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListConsents: %d consents, want 2", len(list))
	}
}

func testSupersede(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	a := e.mustGrant(t, s, newConsent(s, p, "host-a"), "")
	bc := newConsent(s, p, "host-a")
	bc.GrantedAt, bc.UpdatedAt = t0.Add(time.Minute), t0.Add(time.Minute)
	b := e.mustGrant(t, s, bc, a.ID)
	sameConsent(t, "superseding grant", b, bc)

	old, err := e.st.GetConsent(ctx, a.ID)
	must(t, err)
	if old.Status != consent.StatusSuperseded || !old.UpdatedAt.Equal(bc.UpdatedAt) || old.WithdrawnAt != nil {
		t.Fatalf("superseded consent: %s", show(old))
	}
	cur, err := e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
	must(t, err)
	if cur.ID != b.ID {
		t.Fatalf("ActiveConsent = %s, want %s", cur.ID, b.ID)
	}

	_, _, err = e.grant(s, newConsent(s, p, "host-a"), a.ID)
	wantErr(t, "superseding a superseded consent", err, consent.ErrNotActive)
	_, _, err = e.grant(s, newConsent(s, p, "host-a"), rid("cns_"))
	wantErr(t, "superseding an unknown consent", err, consent.ErrNotFound)
	x := e.mustGrant(t, s, newConsent(s, p, "host-b"), "")
	_, _, err = e.grant(s, newConsent(s, p, "host-a"), x.ID)
	wantErr(t, "superseding another party's consent", err, consent.ErrInvalid)
	if es := e.entries(t, s.Pseudonym); len(es) != 3 {
		t.Fatalf("audit entries: %v, want 3 grants", actions(es))
	}
}

func testGrantOverExpired(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	short := func(party string) consent.Consent {
		c := newConsent(s, p, party)
		c.ExpiresAt = t0.Add(time.Hour)
		return c
	}
	later := func(party string) consent.Consent {
		c := newConsent(s, p, party)
		c.GrantedAt, c.UpdatedAt = t0.Add(2*time.Hour), t0.Add(2*time.Hour)
		return c
	}
	// A consent past its expiry that the sweep has not reached does not
	// block a new one; it is recorded as expired.
	a := e.mustGrant(t, s, short("host-a"), "")
	_, _, err := e.grant(s, newConsent(s, p, "host-a"), "")
	wantErr(t, "grant beside an unexpired consent", err, consent.ErrConsentExists)
	b := e.mustGrant(t, s, later("host-a"), "")
	old, err := e.st.GetConsent(ctx, a.ID)
	must(t, err)
	if old.Status != consent.StatusExpired {
		t.Fatalf("consent replaced after its expiry is %s, want expired", old.Status)
	}
	cur, err := e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
	must(t, err)
	if cur.ID != b.ID {
		t.Fatalf("ActiveConsent = %s, want %s", cur.ID, b.ID)
	}
	// Or the caller names it to be superseded.
	c := e.mustGrant(t, s, short("host-b"), "")
	e.mustGrant(t, s, later("host-b"), c.ID)
	old, err = e.st.GetConsent(ctx, c.ID)
	must(t, err)
	if old.Status != consent.StatusSuperseded && old.Status != consent.StatusExpired {
		t.Fatalf("superseded expired consent is %s", old.Status)
	}
}

func testWithdraw(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	a := e.mustGrant(t, s, newConsent(s, p, "host-a"), "")
	at := t0.Add(time.Hour)
	got, err := e.withdraw(s.Pseudonym, a.ID, at)
	must(t, err)
	want := a
	want.Status, want.WithdrawnAt, want.UpdatedAt = consent.StatusWithdrawn, &at, at
	sameConsent(t, "Withdraw", got, want)
	stored, err := e.st.GetConsent(ctx, a.ID)
	must(t, err)
	sameConsent(t, "GetConsent after Withdraw", stored, want)

	_, err = e.withdraw(s.Pseudonym, a.ID, at.Add(time.Minute))
	wantErr(t, "second Withdraw", err, consent.ErrNotActive)
	_, err = e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
	wantErr(t, "ActiveConsent after Withdraw", err, consent.ErrNotFound)
	_, err = e.withdraw(s.Pseudonym, rid("cns_"), at)
	wantErr(t, "Withdraw unknown", err, consent.ErrNotFound)

	// Consenting again after a withdrawal is a new consent.
	b := e.mustGrant(t, s, newConsent(s, p, "host-a"), "")
	if es := e.entries(t, s.Pseudonym); len(es) != 3 || es[1].Action != "consent.withdraw" || es[1].Object != a.ID || es[2].Object != b.ID {
		t.Fatalf("audit entries: %v", actions(es))
	}
}

func testWithdrawAfterExpiry(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	grant := func(party string) consent.Consent {
		c := newConsent(s, p, party)
		c.ExpiresAt = t0.Add(time.Hour)
		return e.mustGrant(t, s, c, "")
	}
	a, b := grant("host-a"), grant("host-b")
	for _, at := range []time.Time{t0.Add(time.Hour), t0.Add(2 * time.Hour)} {
		_, err := e.withdraw(s.Pseudonym, a.ID, at)
		wantErr(t, "Withdraw at or after expiry", err, consent.ErrNotActive)
	}
	c, err := e.st.GetConsent(ctx, a.ID)
	must(t, err)
	if c.Status != consent.StatusActive || c.EffectiveStatus(t0.Add(time.Hour)) != consent.StatusExpired {
		t.Fatalf("unswept expired consent: status %s, effective %s", c.Status, c.EffectiveStatus(t0.Add(time.Hour)))
	}
	_, err = e.withdraw(s.Pseudonym, b.ID, t0.Add(time.Hour-time.Microsecond))
	must(t, err)
	if es := e.entries(t, s.Pseudonym); len(es) != 3 {
		t.Fatalf("audit entries: %v, want 2 grants and 1 withdrawal", actions(es))
	}
}

func testExpirySweep(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	byParty := map[string]consent.Consent{}
	for party, d := range map[string]time.Duration{"host-a": time.Hour, "host-b": 2 * time.Hour, "host-c": 3 * time.Hour, "host-d": year} {
		c := newConsent(s, p, party)
		c.ExpiresAt = t0.Add(d)
		byParty[party] = e.mustGrant(t, s, c, "")
	}
	sweep := func(now time.Time, limit int, want ...string) {
		t.Helper()
		got, err := e.expireDue(now, limit)
		must(t, err)
		var ids, wantIDs []string
		for _, c := range got {
			ids = append(ids, c.ID)
			if c.Status != consent.StatusExpired || !c.UpdatedAt.Equal(now) {
				t.Fatalf("swept consent: %s", show(c))
			}
		}
		for _, party := range want {
			wantIDs = append(wantIDs, byParty[party].ID)
		}
		if !slices.Equal(ids, wantIDs) {
			t.Fatalf("ExpireDue(%s, %d) = %v, want %v", now.Sub(t0), limit, ids, wantIDs)
		}
	}
	sweep(t0.Add(time.Hour-time.Microsecond), 10)
	sweep(t0.Add(time.Hour), 10, "host-a") // expiring at now is expired (Consent.EffectiveStatus)
	sweep(t0.Add(200*time.Minute), 1, "host-b")
	sweep(t0.Add(200*time.Minute), 10, "host-c")
	sweep(t0.Add(200*time.Minute), 10)

	_, err := e.withdraw(s.Pseudonym, byParty["host-a"].ID, t0.Add(30*time.Minute))
	wantErr(t, "Withdraw of a swept consent", err, consent.ErrNotActive)
	c, err := e.st.GetConsent(ctx, byParty["host-a"].ID)
	must(t, err)
	if c.Status != consent.StatusExpired || c.WithdrawnAt != nil {
		t.Fatalf("expired consent: %s", show(c))
	}
	// An expired consent leaves room for a new one.
	renewed := newConsent(s, p, "host-a")
	renewed.ExpiresAt = t0.Add(year + time.Hour)
	byParty["host-a"] = e.mustGrant(t, s, renewed, "")
	sweep(t0.Add(2*year), 10, "host-d", "host-a")
	es, err := e.log.List(ctx, sqlaudit.Filter{Action: "consent.expire", Limit: sqlaudit.MaxLimit})
	must(t, err)
	if len(es) != 5 {
		t.Fatalf("%d consent.expire entries, want 5", len(es))
	}
}

func testDeleteSubject(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	a := e.mustGrant(t, s, newConsent(s, p, "host-a"), "")
	b := e.mustGrant(t, s, newConsent(s, p, "host-b"), "")
	bAt := t0.Add(time.Minute)
	_, err := e.withdraw(s.Pseudonym, b.ID, bAt)
	must(t, err)
	cc := newConsent(s, p, "host-c")
	cc.ExpiresAt = t0.Add(time.Hour)
	c := e.mustGrant(t, s, cc, "")
	d := e.mustGrant(t, s, newConsent(s, p, "host-d"), "")

	at := t0.Add(2 * time.Hour)
	ids, err := e.deleteSubject(s, at)
	must(t, err)
	want := []string{a.ID, d.ID}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("DeleteSubject withdrew %v, want %v", ids, want)
	}

	sub, err := e.st.GetSubject(ctx, s.ID)
	must(t, err)
	if sub.DeletedAt == nil || !sub.DeletedAt.Equal(at) || len(sub.IdentifierEnc) != 0 || !bytes.Equal(sub.BlindIndex, s.BlindIndex) || sub.Pseudonym != s.Pseudonym {
		t.Fatalf("deleted subject: %s", showSubject(sub))
	}
	sub, err = e.st.FindSubject(ctx, s.BlindIndex)
	must(t, err)
	if sub.ID != s.ID || sub.DeletedAt == nil {
		t.Fatalf("FindSubject of a deleted subject: %s", showSubject(sub))
	}

	wantStatus := map[string]consent.Status{a.ID: consent.StatusWithdrawn, b.ID: consent.StatusWithdrawn, c.ID: consent.StatusExpired, d.ID: consent.StatusWithdrawn}
	wantWithdrawn := map[string]time.Time{a.ID: at, b.ID: bAt, d.ID: at}
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	if len(list) != 4 {
		t.Fatalf("ListConsents: %d consents, want 4", len(list))
	}
	for _, c := range list {
		w, ok := wantWithdrawn[c.ID]
		if c.Status != wantStatus[c.ID] || ok != (c.WithdrawnAt != nil) || ok && !c.WithdrawnAt.Equal(w) {
			t.Fatalf("after deletion: %s", show(c))
		}
	}

	_, err = e.deleteSubject(s, at.Add(time.Minute))
	wantErr(t, "DeleteSubject twice", err, consent.ErrSubjectDeleted)
	_, err = e.deleteSubject(newSubject(), at)
	wantErr(t, "DeleteSubject unknown", err, consent.ErrNotFound)
	_, _, err = e.grant(s, newConsent(s, p, "host-a"), "")
	wantErr(t, "Grant for a deleted subject", err, consent.ErrSubjectDeleted)
	n := sameIdentity(s)
	_, _, err = e.grant(n, newConsent(n, p, "host-a"), "")
	wantErr(t, "Grant for a deleted identifier", err, consent.ErrSubjectDeleted)
	_, err = e.st.GetSubject(ctx, n.ID)
	wantErr(t, "subject of a refused grant", err, consent.ErrNotFound)

	es := e.entries(t, s.Pseudonym)
	deletes := 0
	for _, en := range es {
		if en.Action == "subject.delete" {
			deletes++
		}
	}
	// The deletion withdrew the two consents still active, each with an
	// entry of its own.
	if len(es) != 8 || deletes != 1 {
		t.Fatalf("audit entries: %v, want 4 grants, 1 withdrawal, 2 withdrawals by the deletion and 1 deletion", actions(es))
	}
}

func testUnknown(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	id := rid("cns_")
	_, err := e.st.GetConsent(ctx, id)
	wantErr(t, "GetConsent", err, consent.ErrNotFound)
	_, err = e.st.FindByIdempotencyKey(ctx, rid("key_"))
	wantErr(t, "FindByIdempotencyKey", err, consent.ErrNotFound)
	_, err = e.st.FindByIdempotencyKey(ctx, "")
	wantErr(t, "FindByIdempotencyKey empty", err, consent.ErrNotFound)
	_, err = e.st.GetSubject(ctx, rid("sub_"))
	wantErr(t, "GetSubject", err, consent.ErrNotFound)
	_, err = e.st.FindSubject(ctx, rbytes(32))
	wantErr(t, "FindSubject", err, consent.ErrNotFound)
	_, err = e.st.ActiveConsent(ctx, rid("sub_"), p.ID, "host-a")
	wantErr(t, "ActiveConsent", err, consent.ErrNotFound)
	_, err = e.st.GetPolicy(ctx, rid("p_"), 1)
	wantErr(t, "GetPolicy", err, consent.ErrNotFound)
	_, err = e.st.GetPurpose(ctx, rid("p_"))
	wantErr(t, "GetPurpose", err, consent.ErrUnknownPurpose)
	_, err = e.withdraw("", id, t0)
	wantErr(t, "Withdraw", err, consent.ErrNotFound)
	_, err = e.deleteSubject(newSubject(), t0)
	wantErr(t, "DeleteSubject", err, consent.ErrNotFound)
	list, err := e.st.ListConsents(ctx, rid("sub_"))
	if err != nil || len(list) != 0 {
		t.Fatalf("ListConsents of an unknown subject = %v, %v; want none", list, err)
	}
}

func testFailedGrant(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	taken := newConsent(s, p, "host-a")
	taken.IdempotencyKey = rid("key_")
	e.mustGrant(t, s, taken, "")
	before := len(e.entries(t, s.Pseudonym))

	for _, tc := range []struct {
		name      string
		mod       func(*consent.Consent)
		supersede string
		want      error
	}{
		{"UnknownPurpose", func(c *consent.Consent) { c.Purpose = rid("p_") }, "", consent.ErrUnknownPurpose},
		{"UnpublishedPolicy", func(c *consent.Consent) { c.PolicyVersion = 2 }, "", consent.ErrOutdatedPolicy},
		{"SupersedeUnknown", func(*consent.Consent) {}, rid("cns_"), consent.ErrNotFound},
		{"SupersedeOtherSubject", func(*consent.Consent) {}, taken.ID, consent.ErrInvalid},
		{"IdempotencyConflict", func(c *consent.Consent) { c.IdempotencyKey = taken.IdempotencyKey }, "", consent.ErrIdempotencyConflict},
		{"ExpiresBeforeGranted", func(c *consent.Consent) { c.ExpiresAt = c.GrantedAt }, "", consent.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newSubject()
			c := newConsent(n, p, "host-a")
			tc.mod(&c)
			_, _, err := e.grant(n, c, tc.supersede)
			wantErr(t, "Grant", err, tc.want)
			_, err = e.st.GetSubject(ctx, n.ID)
			wantErr(t, "new subject of a failed grant", err, consent.ErrNotFound)
			_, err = e.st.FindSubject(ctx, n.BlindIndex)
			wantErr(t, "new subject of a failed grant", err, consent.ErrNotFound)
			_, err = e.st.GetConsent(ctx, c.ID)
			wantErr(t, "consent of a failed grant", err, consent.ErrNotFound)
			if es := e.entries(t, n.Pseudonym); len(es) != 0 {
				t.Fatalf("failed grant left audit entries: %v", actions(es))
			}
		})
	}
	_, _, err := e.grant(s, newConsent(s, p, "host-a"), "")
	wantErr(t, "duplicate grant", err, consent.ErrConsentExists)
	if n := len(e.entries(t, s.Pseudonym)); n != before {
		t.Fatalf("failed grants appended audit entries: %d, want %d", n, before)
	}
}

// grantOutcomes tallies concurrent grants: successes, replays and the
// errors that are allowed; any other error fails the test.
func grantOutcomes(t *testing.T, errs []error, replays []bool, allowed ...error) (ok, replayed int) {
	t.Helper()
	for i, err := range errs {
		switch {
		case err == nil && replays != nil && replays[i]:
			replayed++
		case err == nil:
			ok++
		case !slices.ContainsFunc(allowed, func(a error) bool { return errors.Is(err, a) }):
			t.Fatalf("goroutine %d: %v", i, err)
		}
	}
	return ok, replayed
}

func testConcurrentDuplicates(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	e.mustGrant(t, s, newConsent(s, p, "host-b"), "") // the subject exists
	const n = 16
	errs, got := make([]error, n), make([]consent.Consent, n)
	race(n, func(i int) {
		c := newConsent(s, p, "host-a")
		c.IdempotencyKey = rid("key_")
		got[i], _, errs[i] = e.grant(s, c, "")
	})
	if ok, _ := grantOutcomes(t, errs, nil, consent.ErrConsentExists); ok != 1 {
		t.Fatalf("%d of %d concurrent grants succeeded, want exactly 1", ok, n)
	}
	active, err := e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
	must(t, err)
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListConsents: %d consents, want 2", len(list))
	}
	for i, err := range errs {
		if err == nil && got[i].ID != active.ID {
			t.Fatalf("the successful grant %s is not the active consent %s", got[i].ID, active.ID)
		}
	}
	if es := e.entries(t, s.Pseudonym); len(es) != 2 {
		t.Fatalf("audit entries: %v, want 2 grants", actions(es))
	}
}

func testConcurrentNewSubject(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	base := newSubject()
	const n = 16
	subs := make([]consent.Subject, n)
	for i := range subs {
		subs[i] = sameIdentity(base)
	}
	errs, got := make([]error, n), make([]consent.Consent, n)
	race(n, func(i int) {
		got[i], _, errs[i] = e.grant(subs[i], newConsent(subs[i], p, "host-a"), "")
	})
	if ok, _ := grantOutcomes(t, errs, nil, consent.ErrConsentExists); ok != 1 {
		t.Fatalf("%d of %d concurrent first grants succeeded, want exactly 1", ok, n)
	}
	winner := slices.IndexFunc(errs, func(err error) bool { return err == nil })
	stored, err := e.st.FindSubject(ctx, base.BlindIndex)
	must(t, err)
	if stored.ID != subs[winner].ID || got[winner].SubjectID != stored.ID {
		t.Fatalf("stored subject %s, winning grant's subject %s (consent names %s)", stored.ID, subs[winner].ID, got[winner].SubjectID)
	}
	for i, sub := range subs {
		if i == winner {
			continue
		}
		_, err := e.st.GetSubject(ctx, sub.ID)
		wantErr(t, "subject of a losing grant", err, consent.ErrNotFound)
	}
	if list, err := e.st.ListConsents(ctx, stored.ID); err != nil || len(list) != 1 {
		t.Fatalf("ListConsents: %d consents, %v; want 1", len(list), err)
	}
	if es := e.entries(t, base.Pseudonym); len(es) != 1 {
		t.Fatalf("audit entries: %v, want 1 grant", actions(es))
	}
}

func testConcurrentNewSubjectPurposes(t *testing.T, e *env) {
	const n = 8
	purposes := make([]consent.Purpose, n)
	for i := range purposes {
		purposes[i] = e.createPurpose(t, false)
	}
	base := newSubject()
	errs, got := make([]error, n), make([]consent.Consent, n)
	race(n, func(i int) {
		sub := sameIdentity(base)
		got[i], _, errs[i] = e.grant(sub, newConsent(sub, purposes[i], "host-a"), "")
	})
	if ok, _ := grantOutcomes(t, errs, nil); ok != n {
		t.Fatalf("%d of %d concurrent grants for different purposes succeeded", ok, n)
	}
	stored, err := e.st.FindSubject(ctx, base.BlindIndex)
	must(t, err)
	for _, c := range got {
		if c.SubjectID != stored.ID || c.SubjectRef != base.Pseudonym {
			t.Fatalf("consent %s names subject %s (%s), stored subject is %s", c.ID, c.SubjectID, c.SubjectRef, stored.ID)
		}
	}
	if list, err := e.st.ListConsents(ctx, stored.ID); err != nil || len(list) != n {
		t.Fatalf("ListConsents: %d consents, %v; want %d", len(list), err, n)
	}
}

func testConcurrentReplays(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	base := newSubject()
	tmpl := newConsent(base, p, "host-a")
	tmpl.IdempotencyKey = rid("key_")
	const n = 16
	errs, replays, got := make([]error, n), make([]bool, n), make([]consent.Consent, n)
	race(n, func(i int) {
		// Each retry of the request is built afresh: new ids, same key and
		// request hash.
		sub := sameIdentity(base)
		c := tmpl
		c.ID, c.SubjectID = rid("cns_"), sub.ID
		got[i], replays[i], errs[i] = e.grant(sub, c, "")
	})
	ok, replayed := grantOutcomes(t, errs, replays)
	if ok != 1 || replayed != n-1 {
		t.Fatalf("%d grants and %d replays, want 1 and %d", ok, replayed, n-1)
	}
	for i := range got {
		if got[i].ID != got[0].ID {
			t.Fatalf("replays returned different consents: %s and %s", got[0].ID, got[i].ID)
		}
	}
	if es := e.entries(t, base.Pseudonym); len(es) != 1 {
		t.Fatalf("audit entries: %v, want 1 grant", actions(es))
	}
}

// testConcurrentGrantWithdraw races grants, renewals (superseding grants)
// and withdrawals on one (subject, purpose, party), then replays the audit
// entries, which are in commit order, as a state machine: each grant must
// find no active consent or supersede exactly the active one, each
// withdrawal must name the active one, and the stored consents must end as
// the replay says.
func testConcurrentGrantWithdraw(t *testing.T, e *env) {
	p := e.createPurpose(t, false)
	s := newSubject()
	first := e.mustGrant(t, s, newConsent(s, p, "host-a"), "")
	const workers, rounds = 8, 12
	var succeeded atomic.Int64
	errs := make([]error, workers)
	race(workers, func(w int) {
		for r := range rounds {
			cur, err := e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
			switch {
			case errors.Is(err, consent.ErrNotFound):
				_, _, err = e.grant(s, newConsent(s, p, "host-a"), "")
				if errors.Is(err, consent.ErrConsentExists) {
					continue
				}
			case err != nil:
			case (w+r)%2 == 0:
				_, err = e.withdraw(s.Pseudonym, cur.ID, t0.Add(time.Hour))
				if errors.Is(err, consent.ErrNotActive) {
					continue
				}
			default:
				_, _, err = e.grant(s, newConsent(s, p, "host-a"), cur.ID)
				if errors.Is(err, consent.ErrNotActive) || errors.Is(err, consent.ErrConsentExists) {
					continue
				}
			}
			if err != nil {
				errs[w] = err
				return
			}
			succeeded.Add(1)
		}
	})
	for w, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}

	es := e.entries(t, s.Pseudonym)
	if int64(len(es)) != succeeded.Load()+1 {
		t.Fatalf("%d audit entries, want %d (one per successful operation)", len(es), succeeded.Load()+1)
	}
	active, status := "", map[string]consent.Status{}
	for _, en := range es {
		switch en.Action {
		case "consent.grant":
			if sup := en.Details["supersedes"]; sup != active {
				t.Fatalf("seq %d: grant %s (superseding %q) while %q was active", en.Seq, en.Object, sup, active)
			} else if sup != "" {
				status[sup] = consent.StatusSuperseded
			}
			active, status[en.Object] = en.Object, consent.StatusActive
		case "consent.withdraw":
			if en.Object != active {
				t.Fatalf("seq %d: withdrawal of %s while %q was active", en.Seq, en.Object, active)
			}
			active, status[en.Object] = "", consent.StatusWithdrawn
		default:
			t.Fatalf("seq %d: unexpected action %s", en.Seq, en.Action)
		}
	}
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	if len(list) != len(status) {
		t.Fatalf("%d consents stored, %d granted", len(list), len(status))
	}
	nActive := 0
	for _, c := range list {
		if c.Status == consent.StatusActive {
			nActive++
		}
		if c.Status != status[c.ID] {
			t.Fatalf("consent %s is %s, the audit log says %s", c.ID, c.Status, status[c.ID])
		}
	}
	cur, err := e.st.ActiveConsent(ctx, s.ID, p.ID, "host-a")
	switch {
	case nActive > 1:
		t.Fatalf("%d active consents", nActive)
	case active == "":
		wantErr(t, "ActiveConsent after a final withdrawal", err, consent.ErrNotFound)
	case err != nil || cur.ID != active:
		t.Fatalf("ActiveConsent = %s, %v; the last grant was %s", cur.ID, err, active)
	}
	t.Logf("%d operations succeeded on %d consents; %s is %s", len(es), len(status), first.ID, status[first.ID])
}

// testConcurrentDeleteAndGrant races a subject's deletion with grants for
// it: every grant that commits before the deletion is withdrawn by it, every
// later one is refused, and no consent of the subject stays active.
func testConcurrentDeleteAndGrant(t *testing.T, e *env) {
	const n = 8
	purposes := make([]consent.Purpose, n)
	for i := range purposes {
		purposes[i] = e.createPurpose(t, false)
	}
	s := newSubject()
	first := e.mustGrant(t, s, newConsent(s, purposes[0], "host-b"), "")
	errs, got := make([]error, n+1), make([]consent.Consent, n)
	var withdrawn []string
	race(n+1, func(i int) {
		if i == n {
			withdrawn, errs[i] = e.deleteSubject(s, t0.Add(time.Hour))
			return
		}
		got[i], _, errs[i] = e.grant(s, newConsent(s, purposes[i], "host-a"), "")
	})
	must(t, errs[n])
	want := []string{first.ID}
	for i, err := range errs[:n] {
		switch {
		case err == nil:
			want = append(want, got[i].ID)
		case !errors.Is(err, consent.ErrSubjectDeleted):
			t.Fatalf("grant %d: %v", i, err)
		}
	}
	slices.Sort(want)
	slices.Sort(withdrawn)
	if !slices.Equal(withdrawn, want) {
		t.Fatalf("deletion withdrew %v, want every consent granted before it: %v", withdrawn, want)
	}
	list, err := e.st.ListConsents(ctx, s.ID)
	must(t, err)
	for _, c := range list {
		if c.Status != consent.StatusWithdrawn {
			t.Fatalf("after deletion: %s", show(c))
		}
	}
	if es := e.entries(t, s.Pseudonym); len(es) != 2*len(want)+1 {
		t.Fatalf("audit entries: %v, want %d grants, as many withdrawals and the deletion", actions(es), len(want))
	}
}
