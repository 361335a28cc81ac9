package consent

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/fedrisk/fedrisk/internal/audit"
)

// SampledAuditor passes at most perSecond events a second to the audit log
// and counts the rest, reporting the count ("suppressed") on the next entry
// it lets through. It is for failures anyone can cause (refused tokens and
// credentials): each is worth recording, but a flood of them must not stall
// the audit chain that grants and withdrawals need.
type SampledAuditor struct {
	next       Auditor
	perSecond  int
	now        func() time.Time
	mu         sync.Mutex
	window     time.Time
	inWindow   int
	suppressed int
}

// NewSampledAuditor wraps next.
func NewSampledAuditor(next Auditor, perSecond int) *SampledAuditor {
	return &SampledAuditor{next: next, perSecond: perSecond, now: time.Now}
}

// Append implements Auditor. A suppressed event returns a zero entry.
func (s *SampledAuditor) Append(ctx context.Context, e audit.Event) (audit.Entry, error) {
	s.mu.Lock()
	now := s.now()
	if now.Sub(s.window) >= time.Second {
		s.window, s.inWindow = now, 0
	}
	if s.inWindow >= s.perSecond {
		s.suppressed++
		s.mu.Unlock()
		return audit.Entry{}, nil
	}
	s.inWindow++
	suppressed := s.suppressed
	s.suppressed = 0
	s.mu.Unlock()
	if suppressed > 0 {
		d := make(map[string]string, len(e.Details)+1)
		for k, v := range e.Details {
			d[k] = v
		}
		d["suppressed_before"] = strconv.Itoa(suppressed)
		e.Details = d
	}
	return s.next.Append(ctx, e)
}
