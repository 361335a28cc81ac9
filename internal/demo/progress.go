package demo

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress prints the demo's stages: a numbered line per stage with a bar
// that fills as the stage's work is done, and its outcome.
type progress struct {
	w     io.Writer
	total int

	mu      sync.Mutex
	n       int
	name    string
	started time.Time
	shown   int // last percentage drawn
}

func newProgress(w io.Writer, total int) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w, total: total}
}

// stage starts the next stage.
func (p *progress) stage(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.name, p.started, p.shown = name, time.Now(), -1
	fmt.Fprintf(p.w, "[%d/%d] %s\n", p.n, p.total, name)
}

// update draws the bar at done of total (drawn again only when the whole
// percentage changes, so logs stay short).
func (p *progress) update(done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(100 * done / total)
	pct = min(max(pct, 0), 100)
	p.mu.Lock()
	defer p.mu.Unlock()
	if pct == p.shown || (pct-p.shown < 5 && pct != 100) {
		return
	}
	p.shown = pct
	const width = 30
	fill := width * pct / 100
	fmt.Fprintf(p.w, "      [%s%s] %3d%%  %d/%d\n", strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, done, total)
}

// done ends the stage with a one-line outcome.
func (p *progress) done(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "      ✓ %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(p.started).Seconds())
}

// reused ends a stage whose result an earlier run left.
func (p *progress) reused(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "      ✓ %s (from an earlier run)\n", fmt.Sprintf(format, args...))
}
