package config

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Scoring configures the scoring service (model-serving).
type Scoring struct {
	Model        string        // model id requests default to
	Purpose      string        // purpose of scores (consent tokens, budgets)
	FeatureViews string        // feature view definitions (YAML); empty: the bundled example views
	GuestView    string        // view the guest's model features are read from
	HostView     string        // view the host's model features are read from (entity = href)
	GuestEntity  string        // id (normalised identifier) or ref (HostRef of the guest itself)
	HostDeadline time.Duration // deadline of each partial-score call to a host
	Fallback     string        // degrade or fail, when a host is down, slow or failing
	Reasons      int           // guest reason codes per answer

	Noise         string  // laplace, gaussian or none
	Epsilon       float64 // ε per release
	Delta         float64 // δ per release (gaussian)
	Clip          float64 // clip bound B of a partial score
	ReleaseWindow time.Duration

	BudgetWindow      time.Duration
	BudgetTotal       float64 // ε per subject, purpose and window
	BudgetOnExhausted string  // refuse or degrade

	BaseScore float64
	BaseOdds  float64
	PDO       float64
	MinScore  float64
	MaxScore  float64
}

// DefaultScoring returns the scoring defaults.
func DefaultScoring() Scoring {
	return Scoring{
		Model: "credit-risk", Purpose: "credit_risk_assessment",
		GuestView: "guest_credit", HostView: "host_credit", GuestEntity: "id",
		HostDeadline: 200 * time.Millisecond, Fallback: "degrade", Reasons: 4,
		Noise: "laplace", Epsilon: 1, Delta: 1e-9, Clip: 4, ReleaseWindow: time.Hour,
		BudgetWindow: 24 * time.Hour, BudgetTotal: 10, BudgetOnExhausted: "refuse",
		BaseScore: 600, BaseOdds: 50, PDO: 20, MinScore: 300, MaxScore: 850,
	}
}

func scoringSettings() []Setting {
	s := func(c *Config) *Scoring { return &c.Scoring }
	name := func(key, env, usage string, field func(*Config) *string) Setting {
		return str(key, env, "", usage, "1..128 characters of letters, digits, '_', '-' and '.'", field, checkToken)
	}
	return []Setting{
		name("scoring.model", "FEDRISK_SCORING_MODEL", "model id of score requests that name none", func(c *Config) *string { return &s(c).Model }),
		name("scoring.purpose", "FEDRISK_SCORING_PURPOSE", "purpose of scores: consent tokens must name it; budgets are kept per purpose", func(c *Config) *string { return &s(c).Purpose }),
		str("scoring.feature_views", "FEDRISK_FEATURE_VIEWS", "", "feature view definitions (YAML) of the feature store; empty: the bundled example views", "a file path",
			func(c *Config) *string { return &s(c).FeatureViews }, func(string) error { return nil }),
		name("scoring.guest_view", "FEDRISK_SCORING_GUEST_VIEW", "feature view of the guest model's features (feature x is view:x)", func(c *Config) *string { return &s(c).GuestView }),
		name("scoring.host_view", "FEDRISK_SCORING_HOST_VIEW", "feature view of the host model's features, keyed by href", func(c *Config) *string { return &s(c).HostView }),
		oneOf("scoring.guest_entity", "FEDRISK_SCORING_GUEST_ENTITY", "", "guest feature key: id (normalised identifier) or ref (HostRef of the guest party)", func(c *Config) *string { return &s(c).GuestEntity }, "id", "ref"),
		durationSetting("scoring.host_deadline", "FEDRISK_SCORING_HOST_DEADLINE", "deadline of each partial-score call to a host", func(c *Config) *time.Duration { return &s(c).HostDeadline }),
		oneOf("scoring.fallback", "FEDRISK_SCORING_FALLBACK", "", "a host down, slow or failing: degrade (guest-only score, marked) or fail (503)", func(c *Config) *string { return &s(c).Fallback }, "degrade", "fail"),
		integer("scoring.reasons", "FEDRISK_SCORING_REASONS", "guest reason codes per score", 0, 100, func(c *Config) *int { return &s(c).Reasons }),
		oneOf("scoring.noise", "FEDRISK_SCORING_NOISE", "", "host: noise on released partial scores (none: no privacy, for evaluation)", func(c *Config) *string { return &s(c).Noise }, "laplace", "gaussian", "none"),
		number("scoring.epsilon", "FEDRISK_SCORING_EPSILON", "host: ε charged per released partial score", 1e-6, 1e6, func(c *Config) *float64 { return &s(c).Epsilon }),
		number("scoring.delta", "FEDRISK_SCORING_DELTA", "host: δ per release (gaussian)", 1e-300, 0.5, func(c *Config) *float64 { return &s(c).Delta }),
		number("scoring.clip", "FEDRISK_SCORING_CLIP", "host: partial scores are clipped to [-clip, clip] before noise", 1e-6, 1<<24, func(c *Config) *float64 { return &s(c).Clip }),
		durationSetting("scoring.release_window", "FEDRISK_SCORING_RELEASE_WINDOW", "host: a repeated request within it gets the released value again, free", func(c *Config) *time.Duration { return &s(c).ReleaseWindow }),
		durationSetting("scoring.budget_window", "FEDRISK_SCORING_BUDGET_WINDOW", "host: privacy budget window of the initial policy", func(c *Config) *time.Duration { return &s(c).BudgetWindow }),
		number("scoring.budget_total", "FEDRISK_SCORING_BUDGET_TOTAL", "host: ε per subject and window of the initial policy", 0, 1e12, func(c *Config) *float64 { return &s(c).BudgetTotal }),
		oneOf("scoring.budget_on_exhausted", "FEDRISK_SCORING_BUDGET_ON_EXHAUSTED", "", "host: exhausted budget: refuse (429) or degrade (the guest scores without this host)", func(c *Config) *string { return &s(c).BudgetOnExhausted }, "refuse", "degrade"),
		number("scoring.base_score", "FEDRISK_SCORING_BASE_SCORE", "scorecard points at the base odds", -1e6, 1e6, func(c *Config) *float64 { return &s(c).BaseScore }),
		number("scoring.base_odds", "FEDRISK_SCORING_BASE_ODDS", "scorecard base odds of good to bad (e.g. 50 for 50:1)", 1e-9, 1e9, func(c *Config) *float64 { return &s(c).BaseOdds }),
		number("scoring.pdo", "FEDRISK_SCORING_PDO", "scorecard points to double the odds", 1e-9, 1e6, func(c *Config) *float64 { return &s(c).PDO }),
		number("scoring.min_score", "FEDRISK_SCORING_MIN_SCORE", "lowest score", -1e6, 1e6, func(c *Config) *float64 { return &s(c).MinScore }),
		number("scoring.max_score", "FEDRISK_SCORING_MAX_SCORE", "highest score", -1e6, 1e6, func(c *Config) *float64 { return &s(c).MaxScore }),
	}
}

func checkToken(v string) error {
	if len(v) == 0 || len(v) > 128 {
		return errInvalid
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return errInvalid
		}
	}
	return nil
}

func durationSetting(key, env, usage string, field func(*Config) *time.Duration) Setting {
	d := duration(key, env, "", field)
	d.Usage = usage
	return d
}

func number(key, env, usage string, lo, hi float64, field func(*Config) *float64) Setting {
	return Setting{Key: key, Env: env, Usage: usage, Accepted: "a number from " + fmtFloat(lo) + " to " + fmtFloat(hi),
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || math.IsNaN(f) || f < lo || f > hi {
				return errInvalid
			}
			*field(c) = f
			return nil
		},
		get: func(c *Config) string { return fmtFloat(*field(c)) }}
}

func integer(key, env, usage string, lo, hi int, field func(*Config) *int) Setting {
	return Setting{Key: key, Env: env, Usage: usage, Accepted: "an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi),
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < lo || n > hi {
				return errInvalid
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// validate checks the rules across scoring settings.
func (s Scoring) validate() error {
	if s.MinScore > s.MaxScore {
		return &Error{Key: "scoring.min_score", Value: fmtFloat(s.MinScore), Accepted: "at most scoring.max_score"}
	}
	switch s.Noise {
	case "laplace", "gaussian", "none":
	default:
		return &Error{Key: "scoring.noise", Value: s.Noise, Accepted: "laplace, gaussian or none"}
	}
	switch s.Fallback {
	case "degrade", "fail":
	default:
		return &Error{Key: "scoring.fallback", Value: s.Fallback, Accepted: "degrade or fail"}
	}
	switch s.BudgetOnExhausted {
	case "refuse", "degrade":
	default:
		return &Error{Key: "scoring.budget_on_exhausted", Value: s.BudgetOnExhausted, Accepted: "refuse or degrade"}
	}
	if s.Noise == "gaussian" && s.Delta <= 0 {
		return &Error{Key: "scoring.delta", Value: fmtFloat(s.Delta), Accepted: "above 0 with scoring.noise gaussian"}
	}
	if s.BudgetWindow < time.Second {
		return &Error{Key: "scoring.budget_window", Value: s.BudgetWindow.String(), Accepted: "at least 1s"}
	}
	return nil
}
