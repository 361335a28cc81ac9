package privacy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Amount is an amount of privacy budget in micro-ε (10^-6 ε), an integer
// so that sums are exact.
type Amount int64

// OneEpsilon is ε = 1.
const OneEpsilon Amount = 1_000_000

// MaxAmount bounds costs and totals (10^12 ε): sums of a few of them, and
// five times one, stay far inside int64.
const MaxAmount Amount = 1 << 60

// EpsilonAmount converts ε to micro-ε, rounding to the nearest. It fails
// with ErrInvalid for a negative, non-finite or too large ε.
func EpsilonAmount(eps float64) (Amount, error) {
	if !(eps >= 0) || eps*1e6 > float64(MaxAmount) {
		return 0, fmt.Errorf("%w: ε = %v, want a finite value ≥ 0", ErrInvalid, eps)
	}
	return Amount(math.Round(eps * 1e6)), nil
}

// Epsilon returns a as ε.
func (a Amount) Epsilon() float64 { return float64(a) / 1e6 }

// String formats a as ε, e.g. "0.25ε".
func (a Amount) String() string { return strconv.FormatFloat(a.Epsilon(), 'f', -1, 64) + "ε" }

// Key names a budget: the party that requests releases, the data subject's
// pseudonym (never a raw identifier) and the purpose. The ledger adds the
// window.
type Key struct {
	Party   string
	Subject string
	Purpose string
}

// maxKeyLen bounds each part of a Key, in bytes.
const maxKeyLen = 256

// Validate reports whether every part of k is non-empty UTF-8 of at most
// 256 bytes.
func (k Key) Validate() error {
	for _, f := range []struct{ name, v string }{{"party", k.Party}, {"subject", k.Subject}, {"purpose", k.Purpose}} {
		if f.v == "" || len(f.v) > maxKeyLen || !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s must be 1..%d bytes of UTF-8", ErrInvalid, f.name, maxKeyLen)
		}
	}
	return nil
}

// ExhaustionPolicy says what a host does when a budget is exhausted.
type ExhaustionPolicy string

// The exhaustion policies.
const (
	// Refuse: the scoring request fails.
	Refuse ExhaustionPolicy = "refuse"
	// Degrade: the guest scores with its own features only.
	Degrade ExhaustionPolicy = "degrade"
)

// Policy is a purpose's budget: Total per aligned window of length Window.
type Policy struct {
	Window      time.Duration
	Total       Amount
	OnExhausted ExhaustionPolicy // "" reads as Refuse
}

// MinWindow is the shortest window length a Policy may have.
const MinWindow = time.Second

// Validate reports whether p is usable: Window ≥ 1s in whole
// microseconds, 0 ≤ Total ≤ MaxAmount, OnExhausted refuse or degrade.
func (p Policy) Validate() error {
	switch {
	case p.Window < MinWindow || p.Window%time.Microsecond != 0:
		return fmt.Errorf("%w: window %v, want at least %v in whole microseconds", ErrInvalid, p.Window, MinWindow)
	case p.Total < 0 || p.Total > MaxAmount:
		return fmt.Errorf("%w: total %d µε, want 0..%d", ErrInvalid, p.Total, MaxAmount)
	case p.OnExhausted != "" && p.OnExhausted != Refuse && p.OnExhausted != Degrade:
		return fmt.Errorf("%w: on_exhausted %q, want %q or %q", ErrInvalid, p.OnExhausted, Refuse, Degrade)
	}
	return nil
}

// Normalized returns p with an empty OnExhausted set to Refuse.
func (p Policy) Normalized() Policy {
	if p.OnExhausted == "" {
		p.OnExhausted = Refuse
	}
	return p
}

// Window is one aligned budget window [Start, End).
type Window struct {
	Index      int64 // floor(Start / length), counting from the Unix epoch
	Start, End time.Time
}

// WindowAt returns the window of p that contains t: index
// floor(t/Window), in microseconds since the Unix epoch.
func (p Policy) WindowAt(t time.Time) Window {
	l := p.Window.Microseconds()
	us := t.UnixMicro()
	i := us / l
	if us%l < 0 {
		i--
	}
	return WindowOf(i, l)
}

// WindowOf returns window number i of length l microseconds.
func WindowOf(i, l int64) Window {
	return Window{Index: i, Start: time.UnixMicro(i * l).UTC(), End: time.UnixMicro((i + 1) * l).UTC()}
}

// Charge is a committed charge against a budget.
type Charge struct {
	ID        string
	Cost      Amount
	Remaining Amount // left in the window after this charge
	Total     Amount // the window's total under the current policy
	Window    Window
}

// Balance is one budget in its current window.
type Balance struct {
	Key       Key
	Window    Window
	Spent     Amount
	Remaining Amount // max(0, Total − Spent)
	Total     Amount
}

// Fraction returns Remaining/Total in [0, 1] (0 when Total is 0).
func (b Balance) Fraction() float64 { return Fraction(b.Remaining, b.Total) }

// Fraction returns remaining/total clamped to [0, 1], and 0 when total ≤ 0.
func Fraction(remaining, total Amount) float64 {
	if total <= 0 || remaining <= 0 {
		return 0
	}
	if remaining >= total {
		return 1
	}
	return float64(remaining) / float64(total)
}

// Filter selects budgets for List: those in the current window of their
// purpose, optionally of one party and/or purpose, after a page cursor.
type Filter struct {
	Party   string // "" for all
	Purpose string // "" for all
	After   string // Page.Next of the previous page; "" for the first
	Limit   int    // ≤ 0 means DefaultLimit; at most MaxLimit
}

// Page limits of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is one page of List, ordered by (party, purpose, subject).
type Page struct {
	Balances []Balance
	Next     string // "" on the last page
}

// LowFraction is the remaining fraction below which a budget counts in
// Gauge.SubjectsBelow20Percent (the runbook's PrivacyBudgetLow threshold).
const LowFraction = 0.2

// Gauge summarises one purpose's budgets in their current window for the
// metric privacy_budget_remaining{host,purpose}: the minimum remaining
// fraction over every (requesting party, subject) budget (1 when none has
// been charged yet; 0 when the policy's Total is 0) and how many of them
// have less than LowFraction left. It never names a subject.
type Gauge struct {
	Host                   string
	Purpose                string
	MinRemainingFraction   float64
	SubjectsBelow20Percent int64
}

// Sentinel errors.
var (
	// ErrBudgetExhausted: the cost exceeds what remains in the window.
	// Errors that match it are *ExhaustedError.
	ErrBudgetExhausted = errors.New("privacy budget exhausted")
	// ErrNoPolicy: the purpose has no budget policy (releases fail closed).
	ErrNoPolicy = errors.New("no privacy budget policy for purpose")
	// ErrUnknownCharge: Refund of an id the ledger does not hold.
	ErrUnknownCharge = errors.New("unknown privacy budget charge")
	// ErrInvalid: a bad argument; nothing was changed.
	ErrInvalid = errors.New("invalid privacy argument")
)

// ExhaustedError is the error of a charge refused for lack of budget. It
// matches ErrBudgetExhausted and carries the purpose's exhaustion policy.
type ExhaustedError struct {
	Purpose     string
	OnExhausted ExhaustionPolicy
	Cost        Amount
	Remaining   Amount
	Total       Amount
	Window      Window
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("%v: purpose %q: cost %v, remaining %v of %v until %s (policy %s)",
		ErrBudgetExhausted, e.Purpose, e.Cost, e.Remaining, e.Total, e.Window.End.Format(time.RFC3339), e.OnExhausted)
}

// Is makes errors.Is(err, ErrBudgetExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrBudgetExhausted }

// Charger is what a Releaser needs of a ledger.
type Charger interface {
	// Charge takes cost from key's budget in the current window, or fails
	// with an *ExhaustedError (ErrBudgetExhausted) and changes nothing.
	Charge(ctx context.Context, key Key, cost Amount) (Charge, error)
	// Refund returns a charge's cost to the window it was taken from.
	// Refunding a refunded charge is a no-op; an unknown id is
	// ErrUnknownCharge.
	Refund(ctx context.Context, chargeID string) error
}

// Ledger is the privacy-budget store: charges and refunds, balances,
// per-purpose policies, the admin listing and the metrics snapshot. Its
// conformance suite is privacy/privacytest.
type Ledger interface {
	Charger
	// Remaining returns key's balance in the current window (a budget
	// never charged has its whole Total). ErrNoPolicy if the purpose has
	// no policy.
	Remaining(ctx context.Context, key Key) (Balance, error)
	// List returns the budgets charged in their purpose's current window,
	// paged by (party, purpose, subject).
	List(ctx context.Context, f Filter) (Page, error)
	// SetPolicy creates or replaces purpose's policy on behalf of actor
	// (recorded with the old and new policy where the ledger keeps an
	// audit log). A new Total applies at once to the current window. A new
	// Window length starts new windows but never frees spent budget: what
	// was spent in the window current at the change, and anything charged
	// since the new window began, counts in the new current window.
	SetPolicy(ctx context.Context, purpose string, p Policy, actor string) error
	// Policy returns purpose's policy, or ErrNoPolicy.
	Policy(ctx context.Context, purpose string) (Policy, error)
	// Policies returns every purpose's policy.
	Policies(ctx context.Context) (map[string]Policy, error)
	// Snapshot returns one Gauge per purpose with a policy, sorted by
	// purpose.
	Snapshot(ctx context.Context) ([]Gauge, error)
	// Prune deletes budgets and charges of windows that ended at or
	// before t, and returns how many budgets it deleted.
	Prune(ctx context.Context, t time.Time) (int64, error)
}
