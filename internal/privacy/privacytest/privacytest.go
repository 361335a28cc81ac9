// Package privacytest is the conformance suite of privacy.Ledger: every
// backend runs the same cases (see privacy/sqlprivacy's tests, on SQLite
// and, with FEDRISK_TEST_POSTGRES_URL set, PostgreSQL).
//
// Besides each method's contract it checks the properties the ledger
// exists for: a budget is never overspent under concurrent charges
// (exactly floor(total/cost) of them succeed), a refund restores a charge
// exactly once however often it is repeated, a charge whose release never
// happened (the process died) stays counted for the next process, windows
// roll over on their aligned boundaries, and the metrics snapshot reports
// the right minimum fraction and low-budget count.
package privacytest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/privacy"
)

// Factory returns a ledger over a fresh, empty database whose clock is
// now, and reopen, which returns another ledger over the same database as
// a restarted process would see it (new handles, no state kept in memory).
type Factory func(t *testing.T, now func() time.Time) (l privacy.Ledger, reopen func() privacy.Ledger)

// Host is the host name the factory's ledgers must report in Gauge.Host.
const Host = "host-test"

// clock is a settable clock for the ledger under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// day0 starts a 24h window (it is midnight UTC) but not a 30-day one:
// 2024-09-27 is day 19993 after the epoch, 13 days into its 30-day window.
var day0 = time.Date(2024, 9, 27, 0, 0, 0, 0, time.UTC)

const (
	day   = 24 * time.Hour
	month = 30 * day
)

type env struct {
	l      privacy.Ledger
	reopen func() privacy.Ledger
	clock  *clock
}

// Run runs the suite; every case gets a ledger of its own.
func Run(t *testing.T, newLedger Factory) {
	cases := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"Policies", testPolicies},
		{"ChargeAndRemaining", testChargeAndRemaining},
		{"Validation", testValidation},
		{"ConcurrentCharges", testConcurrentCharges},
		{"ConcurrentChargesTwoProcesses", testConcurrentTwoProcesses},
		{"Refund", testRefund},
		{"ConcurrentRefunds", testConcurrentRefunds},
		{"CrashBetweenChargeAndRelease", testCrash},
		{"WindowRollover", testWindowRollover},
		{"PolicyPerPurpose", testPolicyPerPurpose},
		{"LoweredTotal", testLoweredTotal},
		{"WindowChangeKeepsSpending", testWindowChangeKeepsSpending},
		{"List", testList},
		{"Snapshot", testSnapshot},
		{"Prune", testPrune},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: day0.Add(9 * time.Hour)}
			l, reopen := newLedger(t, c.Now)
			tc.fn(t, &env{l: l, reopen: reopen, clock: c})
		})
	}
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

func key(subject, purpose string) privacy.Key {
	return privacy.Key{Party: "guest-bank", Subject: subject, Purpose: purpose}
}

func (e *env) setPolicy(t *testing.T, purpose string, p privacy.Policy) {
	t.Helper()
	must(t, e.l.SetPolicy(context.Background(), purpose, p, "test"))
}

func (e *env) charge(t *testing.T, k privacy.Key, cost privacy.Amount) privacy.Charge {
	t.Helper()
	c, err := e.l.Charge(context.Background(), k, cost)
	must(t, err)
	return c
}

func (e *env) wantRemaining(t *testing.T, l privacy.Ledger, k privacy.Key, want privacy.Amount) {
	t.Helper()
	b, err := l.Remaining(context.Background(), k)
	must(t, err)
	if b.Remaining != want {
		t.Fatalf("remaining of %v = %d, want %d (spent %d of %d)", k, b.Remaining, want, b.Spent, b.Total)
	}
}

func testPolicies(t *testing.T, e *env) {
	ctx := context.Background()
	_, err := e.l.Policy(ctx, "credit")
	wantErr(t, "policy before SetPolicy", err, privacy.ErrNoPolicy)
	_, err = e.l.Charge(ctx, key("s1", "credit"), 1)
	wantErr(t, "charge without policy", err, privacy.ErrNoPolicy)
	_, err = e.l.Remaining(ctx, key("s1", "credit"))
	wantErr(t, "remaining without policy", err, privacy.ErrNoPolicy)

	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 3 * privacy.OneEpsilon})
	got, err := e.l.Policy(ctx, "credit")
	must(t, err)
	if want := (privacy.Policy{Window: day, Total: 3 * privacy.OneEpsilon, OnExhausted: privacy.Refuse}); got != want {
		t.Fatalf("policy = %+v, want %+v (empty OnExhausted reads as refuse)", got, want)
	}
	e.setPolicy(t, "credit", privacy.Policy{Window: month, Total: 10 * privacy.OneEpsilon, OnExhausted: privacy.Degrade})
	e.setPolicy(t, "marketing", privacy.Policy{Window: day, Total: 1})
	all, err := e.l.Policies(ctx)
	must(t, err)
	want := map[string]privacy.Policy{
		"credit":    {Window: month, Total: 10 * privacy.OneEpsilon, OnExhausted: privacy.Degrade},
		"marketing": {Window: day, Total: 1, OnExhausted: privacy.Refuse},
	}
	if len(all) != len(want) || all["credit"] != want["credit"] || all["marketing"] != want["marketing"] {
		t.Fatalf("policies = %+v, want %+v", all, want)
	}

	for name, p := range map[string]privacy.Policy{
		"zero window":      {Window: 0, Total: 1},
		"sub-second":       {Window: time.Millisecond, Total: 1},
		"nanoseconds":      {Window: time.Hour + time.Nanosecond, Total: 1},
		"negative total":   {Window: day, Total: -1},
		"huge total":       {Window: day, Total: privacy.MaxAmount + 1},
		"unknown on-exh.":  {Window: day, Total: 1, OnExhausted: "shrug"},
		"degrade is valid": {Window: day, Total: 1, OnExhausted: privacy.Degrade},
	} {
		err := e.l.SetPolicy(ctx, "p-"+name, p, "test")
		if name == "degrade is valid" {
			must(t, err)
			continue
		}
		wantErr(t, "SetPolicy "+name, err, privacy.ErrInvalid)
		_, err = e.l.Policy(ctx, "p-"+name)
		wantErr(t, "policy after refused SetPolicy "+name, err, privacy.ErrNoPolicy)
	}
	wantErr(t, "SetPolicy empty purpose", e.l.SetPolicy(ctx, "", privacy.Policy{Window: day, Total: 1}, "test"), privacy.ErrInvalid)
}

func testChargeAndRemaining(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 1_000_000, OnExhausted: privacy.Degrade})
	k := key("s1", "credit")
	e.wantRemaining(t, e.l, k, 1_000_000)

	c1 := e.charge(t, k, 300_000)
	if c1.ID == "" || c1.Cost != 300_000 || c1.Remaining != 700_000 || c1.Total != 1_000_000 {
		t.Fatalf("first charge = %+v", c1)
	}
	wantWindow := privacy.Window{Index: day0.UnixMicro() / day.Microseconds(), Start: day0, End: day0.Add(day)}
	if c1.Window != wantWindow {
		t.Fatalf("window = %+v, want %+v", c1.Window, wantWindow)
	}
	c2 := e.charge(t, k, 700_000)
	if c2.ID == c1.ID || c2.Remaining != 0 {
		t.Fatalf("second charge = %+v (first %s)", c2, c1.ID)
	}
	b, err := e.l.Remaining(ctx, k)
	must(t, err)
	if b.Spent != 1_000_000 || b.Remaining != 0 || b.Total != 1_000_000 || b.Window != wantWindow || b.Key != k || b.Fraction() != 0 {
		t.Fatalf("balance = %+v", b)
	}

	_, err = e.l.Charge(ctx, k, 1)
	wantErr(t, "charge on empty budget", err, privacy.ErrBudgetExhausted)
	var ex *privacy.ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("exhaustion error %T is not an *ExhaustedError", err)
	}
	if ex.OnExhausted != privacy.Degrade || ex.Cost != 1 || ex.Remaining != 0 || ex.Total != 1_000_000 || ex.Purpose != "credit" || ex.Window != wantWindow {
		t.Fatalf("exhaustion = %+v", ex)
	}

	// A cost above the remaining budget is refused whole, and changes
	// nothing: the rest can still be spent.
	k2 := key("s2", "credit")
	e.charge(t, k2, 600_000)
	_, err = e.l.Charge(ctx, k2, 400_001)
	wantErr(t, "cost above remaining", err, privacy.ErrBudgetExhausted)
	if errors.As(err, &ex); ex.Remaining != 400_000 {
		t.Fatalf("exhaustion remaining = %d, want 400000", ex.Remaining)
	}
	_, err = e.l.Charge(ctx, key("s3", "credit"), 1_000_001)
	wantErr(t, "cost above total on a fresh budget", err, privacy.ErrBudgetExhausted)
	e.wantRemaining(t, e.l, key("s3", "credit"), 1_000_000)
	e.wantRemaining(t, e.l, k2, 400_000)
	e.charge(t, k2, 400_000)
	e.wantRemaining(t, e.l, k2, 0)

	// Budgets are per (party, subject, purpose).
	e.setPolicy(t, "other", privacy.Policy{Window: day, Total: 5})
	other := []privacy.Key{
		{Party: "guest-insurer", Subject: "s1", Purpose: "credit"},
		{Party: "guest-bank", Subject: "s1", Purpose: "other"},
	}
	e.wantRemaining(t, e.l, other[0], 1_000_000)
	e.wantRemaining(t, e.l, other[1], 5)
	e.charge(t, other[0], 1)
	e.charge(t, other[1], 5)
	e.wantRemaining(t, e.l, other[0], 999_999)
	e.wantRemaining(t, e.l, k, 0)
}

func testValidation(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 100})
	for name, k := range map[string]privacy.Key{
		"no party":     {Subject: "s", Purpose: "credit"},
		"no subject":   {Party: "g", Purpose: "credit"},
		"no purpose":   {Party: "g", Subject: "s"},
		"long":         {Party: "g", Subject: string(make([]byte, 257)), Purpose: "credit"},
		"not utf8":     {Party: "g\xff", Subject: "s", Purpose: "credit"},
		"long purpose": {Party: "g", Subject: "s", Purpose: string(make([]byte, 300))},
	} {
		_, err := e.l.Charge(ctx, k, 1)
		wantErr(t, "charge "+name, err, privacy.ErrInvalid)
		_, err = e.l.Remaining(ctx, k)
		wantErr(t, "remaining "+name, err, privacy.ErrInvalid)
	}
	for _, cost := range []privacy.Amount{0, -1, privacy.MaxAmount + 1} {
		_, err := e.l.Charge(ctx, key("s", "credit"), cost)
		wantErr(t, fmt.Sprintf("charge cost %d", cost), err, privacy.ErrInvalid)
	}
	e.wantRemaining(t, e.l, key("s", "credit"), 100)
	wantErr(t, "refund unknown", e.l.Refund(ctx, "chg_0123456789abcdef0123456789abcdef"), privacy.ErrUnknownCharge)
	wantErr(t, "refund empty id", e.l.Refund(ctx, ""), privacy.ErrInvalid)
}

// concurrentCharges charges cost n times at once, spread over ledgers, and
// checks that exactly floor(total/cost) succeed and the rest are refused
// as exhausted.
func concurrentCharges(t *testing.T, ledgers []privacy.Ledger, k privacy.Key, total, cost privacy.Amount, n int) {
	t.Helper()
	var (
		wg                 sync.WaitGroup
		ok, exhausted, bad atomic.Int64
		slowest            atomic.Int64 // nanoseconds
		firstBad           atomic.Value
		start              = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			began := time.Now()
			_, err := ledgers[i%len(ledgers)].Charge(context.Background(), k, cost)
			for d := int64(time.Since(began)); ; {
				m := slowest.Load()
				if d <= m || slowest.CompareAndSwap(m, d) {
					break
				}
			}
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, privacy.ErrBudgetExhausted):
				exhausted.Add(1)
			default:
				bad.Add(1)
				firstBad.CompareAndSwap(nil, err.Error())
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d concurrent charges on %d ledger(s): slowest took %v", n, len(ledgers), time.Duration(slowest.Load()))
	if bad.Load() != 0 {
		t.Fatalf("%d charges failed otherwise, e.g. %v", bad.Load(), firstBad.Load())
	}
	want := int64(total / cost)
	if ok.Load() != want || exhausted.Load() != int64(n)-want {
		t.Fatalf("%d charges succeeded and %d were refused, want %d and %d", ok.Load(), exhausted.Load(), want, int64(n)-want)
	}
	b, err := ledgers[0].Remaining(context.Background(), k)
	must(t, err)
	if b.Spent != privacy.Amount(want)*cost || b.Remaining != total-privacy.Amount(want)*cost {
		t.Fatalf("after the race: spent %d, remaining %d; want %d, %d", b.Spent, b.Remaining, privacy.Amount(want)*cost, total-privacy.Amount(want)*cost)
	}
}

func testConcurrentCharges(t *testing.T, e *env) {
	const total, cost = 1_000_000, 7_000 // floor = 142 of 200
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: total})
	concurrentCharges(t, []privacy.Ledger{e.l}, key("s-hot", "credit"), total, cost, 200)
}

func testConcurrentTwoProcesses(t *testing.T, e *env) {
	const total, cost = 500_000, 3_000 // floor = 166 of 200
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: total})
	concurrentCharges(t, []privacy.Ledger{e.l, e.reopen()}, key("s-hot", "credit"), total, cost, 200)
}

func testRefund(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 10})
	k := key("s1", "credit")
	c1 := e.charge(t, k, 6)
	c2 := e.charge(t, k, 4)
	_, err := e.l.Charge(ctx, k, 1)
	wantErr(t, "charge on spent budget", err, privacy.ErrBudgetExhausted)

	must(t, e.l.Refund(ctx, c1.ID))
	e.wantRemaining(t, e.l, k, 6)
	must(t, e.l.Refund(ctx, c1.ID)) // a no-op
	e.wantRemaining(t, e.l, k, 6)
	must(t, e.reopen().Refund(ctx, c1.ID)) // also from another process
	e.wantRemaining(t, e.l, k, 6)

	c3 := e.charge(t, k, 6)
	e.wantRemaining(t, e.l, k, 0)
	must(t, e.l.Refund(ctx, c2.ID))
	must(t, e.l.Refund(ctx, c3.ID))
	e.wantRemaining(t, e.l, k, 10)

	// A refund returns the cost to the window it was taken from.
	c4 := e.charge(t, k, 7)
	e.clock.Advance(day)
	e.charge(t, k, 9)
	must(t, e.l.Refund(ctx, c4.ID))
	e.wantRemaining(t, e.l, k, 1)
}

func testConcurrentRefunds(t *testing.T, e *env) {
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 100})
	k := key("s1", "credit")
	e.charge(t, k, 30)
	c := e.charge(t, k, 50)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	ledgers := []privacy.Ledger{e.l, e.reopen()}
	for i := range 40 {
		wg.Go(func() { errs <- ledgers[i%2].Refund(context.Background(), c.ID) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	e.wantRemaining(t, e.l, k, 70)
}

// testCrash: a process charges and dies before it releases or refunds
// (nothing of it survives but the database). The charge stays counted, so
// the next process cannot spend it again.
func testCrash(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 10})
	k := key("s1", "credit")
	crashed := e.reopen()
	if _, err := crashed.Charge(ctx, k, 4); err != nil {
		t.Fatal(err)
	}
	// No release, no refund: the process is gone.
	crashed = nil

	next := e.reopen()
	e.wantRemaining(t, next, k, 6)
	if _, err := next.Charge(ctx, k, 6); err != nil {
		t.Fatal(err)
	}
	_, err := next.Charge(ctx, k, 1)
	wantErr(t, "charge after crash and full spend", err, privacy.ErrBudgetExhausted)
	e.wantRemaining(t, e.l, k, 0)
}

func testWindowRollover(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "daily", privacy.Policy{Window: day, Total: 10})
	e.setPolicy(t, "monthly", privacy.Policy{Window: month, Total: 10})
	kd, km := key("s1", "daily"), key("s1", "monthly")

	// Late in a day: spend both budgets.
	e.clock.Set(day0.Add(day - time.Minute))
	e.charge(t, kd, 10)
	e.charge(t, km, 10)
	_, err := e.l.Charge(ctx, kd, 1)
	wantErr(t, "daily spent", err, privacy.ErrBudgetExhausted)

	// Two minutes later is the next aligned day: a fresh daily budget, the
	// same monthly one.
	e.clock.Advance(2 * time.Minute)
	b, err := e.l.Remaining(ctx, kd)
	must(t, err)
	if b.Remaining != 10 || !b.Window.Start.Equal(day0.Add(day)) || !b.Window.End.Equal(day0.Add(2*day)) {
		t.Fatalf("next day: %+v", b)
	}
	e.charge(t, kd, 10)
	_, err = e.l.Charge(ctx, km, 1)
	wantErr(t, "monthly spent in the same month", err, privacy.ErrBudgetExhausted)

	// Monthly windows are aligned to the epoch too: the next one starts at
	// the next multiple of 30 days, not 30 days after the first charge.
	mw := privacy.Policy{Window: month}.WindowAt(e.clock.Now())
	if mw.Start.UnixMicro()%month.Microseconds() != 0 || !mw.Start.Equal(day0.Add(-13*day)) {
		t.Fatalf("monthly window %+v is not aligned", mw)
	}
	e.clock.Set(mw.End.Add(-time.Microsecond))
	_, err = e.l.Charge(ctx, km, 1)
	wantErr(t, "monthly spent at the last microsecond", err, privacy.ErrBudgetExhausted)
	e.clock.Set(mw.End)
	e.wantRemaining(t, e.l, km, 10)
	c := e.charge(t, km, 3)
	if !c.Window.Start.Equal(mw.End) || c.Window.Index != mw.Index+1 {
		t.Fatalf("charge in the next month: window %+v, want start %v", c.Window, mw.End)
	}
}

func testPolicyPerPurpose(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "small", privacy.Policy{Window: day, Total: 2_000_000, OnExhausted: privacy.Refuse})
	e.setPolicy(t, "large", privacy.Policy{Window: month, Total: 5_000_000, OnExhausted: privacy.Degrade})
	ks, kl := key("s1", "small"), key("s1", "large")
	for range 2 {
		e.charge(t, ks, privacy.OneEpsilon)
	}
	for range 5 {
		e.charge(t, kl, privacy.OneEpsilon)
	}
	var ex *privacy.ExhaustedError
	_, err := e.l.Charge(ctx, ks, privacy.OneEpsilon)
	if !errors.As(err, &ex) || ex.OnExhausted != privacy.Refuse {
		t.Fatalf("small: %v", err)
	}
	_, err = e.l.Charge(ctx, kl, privacy.OneEpsilon)
	if !errors.As(err, &ex) || ex.OnExhausted != privacy.Degrade {
		t.Fatalf("large: %v", err)
	}
	// Raising a total applies to the current window at once.
	e.setPolicy(t, "small", privacy.Policy{Window: day, Total: 3_000_000})
	e.wantRemaining(t, e.l, ks, privacy.OneEpsilon)
	e.charge(t, ks, privacy.OneEpsilon)
	// The next day, small is fresh and large is not.
	e.clock.Advance(day)
	e.wantRemaining(t, e.l, ks, 3_000_000)
	e.wantRemaining(t, e.l, kl, 0)
}

func testLoweredTotal(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 100})
	k := key("s1", "credit")
	c := e.charge(t, k, 80)
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 50})
	b, err := e.l.Remaining(ctx, k)
	must(t, err)
	if b.Remaining != 0 || b.Spent != 80 || b.Total != 50 {
		t.Fatalf("after lowering the total: %+v", b)
	}
	_, err = e.l.Charge(ctx, k, 1)
	wantErr(t, "charge over a lowered total", err, privacy.ErrBudgetExhausted)
	g := snapshot(t, e.l)
	if g["credit"].MinRemainingFraction != 0 || g["credit"].SubjectsBelow20Percent != 1 {
		t.Fatalf("snapshot over a lowered total: %+v", g["credit"])
	}
	must(t, e.l.Refund(ctx, c.ID))
	e.wantRemaining(t, e.l, k, 50)
}

// testWindowChangeKeepsSpending: a new window length does not reset what
// was spent (issue 12, finding 5). What was spent in the window current at
// the change, and anything charged since the new window began, counts
// against the new policy's current window.
func testWindowChangeKeepsSpending(t *testing.T, e *env) {
	ctx := context.Background()
	const ten = 10 * privacy.OneEpsilon
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: ten})
	k, other := key("s1", "credit"), key("s2", "credit")
	first := e.charge(t, k, 4*privacy.OneEpsilon)
	e.clock.Advance(time.Minute)
	e.charge(t, k, 6*privacy.OneEpsilon)
	e.charge(t, other, privacy.OneEpsilon)
	e.clock.Advance(time.Minute)

	// "10 ε per 24 h", 10 spent: a window of 86399 s does not free any.
	e.setPolicy(t, "credit", privacy.Policy{Window: day - time.Second, Total: ten})
	_, err := e.l.Charge(ctx, k, 1)
	wantErr(t, "charge after changing the window to 86399 s", err, privacy.ErrBudgetExhausted)
	e.wantRemaining(t, e.l, k, 0)
	e.wantRemaining(t, e.l, other, ten-privacy.OneEpsilon)
	// Nor does changing it back, or to another length, or both in turn.
	for _, w := range []time.Duration{day, time.Hour, 7 * day, 90 * time.Second, day} {
		e.setPolicy(t, "credit", privacy.Policy{Window: w, Total: ten})
		_, err := e.l.Charge(ctx, k, 1)
		wantErr(t, fmt.Sprintf("charge after changing the window to %v", w), err, privacy.ErrBudgetExhausted)
		e.wantRemaining(t, e.reopen(), other, ten-privacy.OneEpsilon)
	}
	g := snapshot(t, e.l)
	if g["credit"].MinRemainingFraction != 0 || g["credit"].SubjectsBelow20Percent != 1 {
		t.Fatalf("snapshot after window changes: %+v", g["credit"])
	}
	// A refund still returns the charge to the budget it counts in now.
	must(t, e.l.Refund(ctx, first.ID))
	e.wantRemaining(t, e.l, k, 4*privacy.OneEpsilon)
	// The next window of the new policy starts afresh.
	e.clock.Advance(day)
	e.wantRemaining(t, e.l, k, ten)
	e.charge(t, k, ten)
}

func testList(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 100})
	e.setPolicy(t, "fraud", privacy.Policy{Window: day, Total: 1000})
	// An old window that List must not show.
	e.charge(t, privacy.Key{Party: "guest-bank", Subject: "s-old", Purpose: "credit"}, 5)
	e.clock.Advance(day)

	type row struct {
		party, subject, purpose string
		spent                   privacy.Amount
	}
	rows := []row{
		{"guest-bank", "s3", "credit", 10}, {"guest-bank", "s1", "credit", 20},
		{"guest-bank", "s2", "credit", 30}, {"guest-bank", "s4", "credit", 100},
		{"guest-bank", "s1", "fraud", 1}, {"guest-insurer", "s1", "credit", 7},
		{"guest-insurer", "s9", "credit", 8},
	}
	for _, r := range rows {
		e.charge(t, privacy.Key{Party: r.party, Subject: r.subject, Purpose: r.purpose}, r.spent)
	}

	listAll := func(f privacy.Filter) []privacy.Balance {
		var all []privacy.Balance
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("List does not end")
			}
			p, err := e.l.List(ctx, f)
			must(t, err)
			if len(p.Balances) > f.Limit && f.Limit > 0 {
				t.Fatalf("page of %d, limit %d", len(p.Balances), f.Limit)
			}
			all = append(all, p.Balances...)
			if p.Next == "" {
				return all
			}
			f.After = p.Next
		}
	}
	got := listAll(privacy.Filter{Party: "guest-bank", Purpose: "credit", Limit: 3})
	var subjects []string
	for _, b := range got {
		subjects = append(subjects, b.Key.Subject)
		if b.Key.Party != "guest-bank" || b.Key.Purpose != "credit" || b.Total != 100 || b.Remaining != 100-b.Spent {
			t.Fatalf("listed %+v", b)
		}
		if !b.Window.Start.Equal(day0.Add(day)) {
			t.Fatalf("listed window %+v, want the current one", b.Window)
		}
	}
	if want := []string{"s1", "s2", "s3", "s4"}; !slices.Equal(subjects, want) {
		t.Fatalf("listed subjects %v, want %v (no old window, ordered, no duplicates)", subjects, want)
	}
	if got[0].Spent != 20 || got[3].Remaining != 0 {
		t.Fatalf("balances %+v", got)
	}
	if n := len(listAll(privacy.Filter{Limit: 2})); n != len(rows) {
		t.Fatalf("listed %d budgets of every party and purpose, want %d", n, len(rows))
	}
	if n := len(listAll(privacy.Filter{Party: "guest-insurer", Limit: 1})); n != 2 {
		t.Fatalf("listed %d budgets of guest-insurer, want 2", n)
	}
	if n := len(listAll(privacy.Filter{Purpose: "fraud"})); n != 1 {
		t.Fatalf("listed %d budgets of fraud, want 1", n)
	}
	if n := len(listAll(privacy.Filter{Party: "nobody"})); n != 0 {
		t.Fatalf("listed %d budgets of an unknown party", n)
	}
	_, err := e.l.List(ctx, privacy.Filter{After: "not a cursor"})
	wantErr(t, "List with a bad cursor", err, privacy.ErrInvalid)
}

func snapshot(t *testing.T, l privacy.Ledger) map[string]privacy.Gauge {
	t.Helper()
	gs, err := l.Snapshot(context.Background())
	must(t, err)
	m := map[string]privacy.Gauge{}
	for i, g := range gs {
		if g.Host != Host {
			t.Fatalf("gauge host %q, want %q", g.Host, Host)
		}
		if i > 0 && gs[i-1].Purpose >= g.Purpose {
			t.Fatalf("gauges not sorted by purpose: %+v", gs)
		}
		if g.MinRemainingFraction < 0 || g.MinRemainingFraction > 1 || math.IsNaN(g.MinRemainingFraction) {
			t.Fatalf("fraction out of [0,1]: %+v", g)
		}
		m[g.Purpose] = g
	}
	return m
}

func testSnapshot(t *testing.T, e *env) {
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 1000})
	e.setPolicy(t, "fraud", privacy.Policy{Window: day, Total: 500})
	e.setPolicy(t, "idle", privacy.Policy{Window: day, Total: 10})
	e.setPolicy(t, "off", privacy.Policy{Window: day, Total: 0})
	if g := snapshot(t, e.l); len(g) != 4 || g["credit"].MinRemainingFraction != 1 || g["credit"].SubjectsBelow20Percent != 0 || g["off"].MinRemainingFraction != 0 {
		t.Fatalf("snapshot of an unused ledger: %+v", g)
	}
	// Yesterday's spending does not count today.
	e.charge(t, key("s-old", "credit"), 1000)
	e.clock.Advance(day)

	for subject, spent := range map[string]privacy.Amount{
		"s1": 100, // 0.9 left
		"s2": 850, // 0.15: low
		"s3": 900, // 0.1: low, the minimum
		"s4": 800, // exactly 0.2: not below
		"s5": 799,
	} {
		e.charge(t, key(subject, "credit"), spent)
	}
	e.charge(t, privacy.Key{Party: "guest-insurer", Subject: "s1", Purpose: "credit"}, 850) // low too
	e.charge(t, key("s1", "fraud"), 100)                                                    // 0.8 left
	e.charge(t, key("s2", "fraud"), 50)

	g := snapshot(t, e.l)
	want := map[string]privacy.Gauge{
		"credit": {Host: Host, Purpose: "credit", MinRemainingFraction: 0.1, SubjectsBelow20Percent: 3},
		"fraud":  {Host: Host, Purpose: "fraud", MinRemainingFraction: 0.8, SubjectsBelow20Percent: 0},
		"idle":   {Host: Host, Purpose: "idle", MinRemainingFraction: 1, SubjectsBelow20Percent: 0},
		"off":    {Host: Host, Purpose: "off", MinRemainingFraction: 0, SubjectsBelow20Percent: 0},
	}
	for p, w := range want {
		if got := g[p]; got.Purpose != w.Purpose || got.SubjectsBelow20Percent != w.SubjectsBelow20Percent ||
			math.Abs(got.MinRemainingFraction-w.MinRemainingFraction) > 1e-12 {
			t.Errorf("gauge %s = %+v, want %+v", p, got, w)
		}
	}
	// Exhausting a budget takes the minimum to 0.
	e.charge(t, key("s3", "credit"), 100)
	if got := snapshot(t, e.l)["credit"]; got.MinRemainingFraction != 0 || got.SubjectsBelow20Percent != 3 {
		t.Fatalf("after exhausting s3: %+v", got)
	}
	// The next window starts full.
	e.clock.Advance(day)
	if got := snapshot(t, e.l)["credit"]; got.MinRemainingFraction != 1 || got.SubjectsBelow20Percent != 0 {
		t.Fatalf("next window: %+v", got)
	}
}

func testPrune(t *testing.T, e *env) {
	ctx := context.Background()
	e.setPolicy(t, "credit", privacy.Policy{Window: day, Total: 10})
	k := key("s1", "credit")
	old := e.charge(t, k, 4)
	e.clock.Advance(day)
	cur := e.charge(t, k, 3)
	n, err := e.l.Prune(ctx, e.clock.Now().Add(-time.Hour))
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d budgets, want 1", n)
	}
	wantErr(t, "refund of a pruned charge", e.l.Refund(ctx, old.ID), privacy.ErrUnknownCharge)
	e.wantRemaining(t, e.l, k, 7)
	must(t, e.l.Refund(ctx, cur.ID))
	e.wantRemaining(t, e.l, k, 10)
}
