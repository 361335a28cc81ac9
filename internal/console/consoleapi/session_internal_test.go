package consoleapi

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestSessionsExpire(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	s := newSessions(30*time.Minute, 2*time.Hour, 3, c.now)
	id, sess := s.create("frk_secret", user{Kind: "token", Name: "a", Roles: []string{"analyst"}})
	if got := s.get(id); got != sess {
		t.Fatal("a fresh session is not found")
	}
	if s.get(id+"x") != nil || s.get("") != nil || s.get(strings.Repeat("a", 500)) != nil {
		t.Error("a wrong id found a session")
	}
	// Used every 20 minutes it lives until the absolute limit.
	for range 5 {
		c.add(20 * time.Minute)
		if s.get(id) == nil {
			t.Fatalf("the session ended while in use, at %v", c.now())
		}
	}
	c.add(25 * time.Minute) // 2h05 after creation
	if s.get(id) != nil {
		t.Error("a session outlived the absolute limit")
	}
	id2, _ := s.create("t", user{})
	c.add(31 * time.Minute)
	if s.get(id2) != nil {
		t.Error("an idle session survived the idle limit")
	}
	// At the limit, the least recently used session makes room.
	a, _ := s.create("t", user{})
	c.add(time.Second)
	b, _ := s.create("t", user{})
	c.add(time.Second)
	s.get(a)
	c.add(time.Second)
	cc, _ := s.create("t", user{})
	c.add(time.Second)
	d, _ := s.create("t", user{})
	if s.get(b) != nil || s.get(a) == nil || s.get(cc) == nil || s.get(d) == nil {
		t.Error("the wrong session was evicted at the limit")
	}
	s.drop(a)
	if s.get(a) != nil {
		t.Error("a dropped session is still there")
	}
	if x, y := randomToken(), randomToken(); len(x) < 40 || x == y {
		t.Error("session ids are not random 256-bit values")
	}
}

func TestFlash(t *testing.T) {
	s := newSessions(time.Hour, time.Hour, 10, time.Now)
	_, sess := s.create("", user{})
	s.setFlash(sess, "ok", "done")
	if f := s.takeFlash(sess); f == nil || f.Text != "done" {
		t.Fatalf("flash %+v", f)
	}
	if s.takeFlash(sess) != nil {
		t.Error("a flash showed twice")
	}
}

func TestSplitList(t *testing.T) {
	got := splitList(" telecom.usage, telecom.billing，telecom.usage\nx ")
	if strings.Join(got, "|") != "telecom.usage|telecom.billing|x" {
		t.Errorf("%q", got)
	}
}

// FuzzLocalPath: the language switch returns only to a path of the console.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/consents", "//evil.example", "https://evil.example/", "/a?b=c", `\\evil`, "/%2f%2fevil", "", "/models/x/versions/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := localPath(p)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.Contains(got, "\\") || strings.Contains(got, "?") {
			t.Fatalf("localPath(%q) = %q", p, got)
		}
	})
}
