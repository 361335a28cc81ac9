// Package psitest drives the two roles of a PSI session in memory and holds
// the conformance suite that every psi.Protocol must pass (Run), so that a
// later protocol (an OT-extension PSI, say) is held to the same end-to-end
// cases as ECDH.
//
// Exchange passes every message through psi.Encode and psi.Decode, as a
// transport would, counts the bytes each way and can tamper with messages
// on the way for security tests.
package psitest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
)

// Direction is the way a message travels.
type Direction int

const (
	// ToHost is guest → host.
	ToHost Direction = iota
	// ToGuest is host → guest.
	ToGuest
)

func (d Direction) String() string {
	if d == ToHost {
		return "guest→host"
	}
	return "host→guest"
}

// Options change how Exchange delivers messages.
type Options struct {
	// Tamper, if set, sees every encoded message (seq counts messages in
	// that direction from 0) and returns the bytes to decode instead.
	Tamper func(dir Direction, seq int, wire []byte) []byte
	// MaxMessages stops a run that does not end; 0 means 1<<20.
	MaxMessages int
}

// Stats counts the traffic of one Exchange.
type Stats struct {
	Messages         [2]int   // by Direction
	Bytes            [2]int64 // encoded bytes by Direction, headers included
	GuestPointBytes  int64    // payload bytes of guest points
	HostTagBytes     int64    // payload bytes of host tags
	HostPointBytes   int64    // payload bytes of host points
	OtherBytes       int64    // everything else: headers, hellos, acks, reveals, done
	TotalBytes       int64
	GuestToHostBytes int64
	HostToGuestBytes int64
}

// Exchange runs a session between guest and host to its end: it starts
// both, then delivers queued messages alternately in each direction, in
// order, through Encode and Decode, until neither side has anything to
// send. It returns the first error of either side (or of the codec), or an
// error if the queues drain before both roles are Done.
func Exchange(ctx context.Context, guest, host psi.Role, opt Options) (Stats, error) {
	var st Stats
	limit := opt.MaxMessages
	if limit == 0 {
		limit = 1 << 20
	}
	toHost, err := guest.Start(ctx)
	if err != nil {
		return st, fmt.Errorf("guest start: %w", err)
	}
	toGuest, err := host.Start(ctx)
	if err != nil {
		return st, fmt.Errorf("host start: %w", err)
	}
	deliver := func(dir Direction, m psi.Message, to psi.Role) ([]psi.Message, error) {
		wire, err := psi.Encode(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		st.count(dir, m, wire)
		if opt.Tamper != nil {
			wire = opt.Tamper(dir, st.Messages[dir]-1, wire)
		}
		got, err := psi.Decode(wire)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		return to.Handle(ctx, got)
	}
	for len(toHost)+len(toGuest) > 0 {
		if st.Messages[ToHost]+st.Messages[ToGuest] > limit {
			return st, fmt.Errorf("psitest: more than %d messages", limit)
		}
		if len(toHost) > 0 {
			out, err := deliver(ToHost, toHost[0], host)
			if err != nil {
				return st, err
			}
			toHost, toGuest = toHost[1:], append(toGuest, out...)
		}
		if len(toGuest) > 0 {
			out, err := deliver(ToGuest, toGuest[0], guest)
			if err != nil {
				return st, err
			}
			toGuest, toHost = toGuest[1:], append(toHost, out...)
		}
	}
	if !guest.Done() || !host.Done() {
		return st, fmt.Errorf("psitest: session stalled (guest done %v, host done %v)", guest.Done(), host.Done())
	}
	return st, nil
}

func (st *Stats) count(dir Direction, m psi.Message, wire []byte) {
	n := int64(len(wire))
	st.Messages[dir]++
	st.Bytes[dir] += n
	st.TotalBytes += n
	st.GuestToHostBytes, st.HostToGuestBytes = st.Bytes[ToHost], st.Bytes[ToGuest]
	payload := int64(len(m.Payload))
	switch m.Type {
	case psi.MsgGuestPoints:
		st.GuestPointBytes += payload
	case psi.MsgHostTags:
		st.HostTagBytes += payload
	case psi.MsgHostPoints:
		st.HostPointBytes += payload
	default:
		payload = 0
	}
	st.OtherBytes += n - payload
}

// Session is one end-to-end case: the two parties' raw identifiers and
// the settings they agree on.
type Session struct {
	Guest, Host []string
	Config      psi.Config // Session defaults to a fixed id
}

// Outcome is what both roles learned.
type Outcome struct {
	Guest, Host psi.Result
	Stats       Stats
}

// Do normalises both sides' identifiers with s.Config.Normalization
// (without dropping duplicates), runs p end to end with Exchange and
// returns both results.
func Do(ctx context.Context, p psi.Protocol, s Session, opt Options) (Outcome, error) {
	cfg := s.Config
	if cfg.Session == nil {
		cfg.Session = []byte("psitest-session")
	}
	g, err := normalize(cfg.Normalization, s.Guest)
	if err != nil {
		return Outcome{}, err
	}
	h, err := normalize(cfg.Normalization, s.Host)
	if err != nil {
		return Outcome{}, err
	}
	guest, err := p.NewGuest(cfg, g)
	if err != nil {
		return Outcome{}, err
	}
	defer guest.Close()
	host, err := p.NewHost(cfg, h)
	if err != nil {
		return Outcome{}, err
	}
	defer host.Close()
	st, err := Exchange(ctx, guest, host, opt)
	if err != nil {
		return Outcome{Stats: st}, err
	}
	gr, err := guest.Result()
	if err != nil {
		return Outcome{Stats: st}, err
	}
	hr, err := host.Result()
	if err != nil {
		return Outcome{Stats: st}, err
	}
	return Outcome{Guest: gr, Host: hr, Stats: st}, nil
}

func normalize(n psi.Normalization, ids []string) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		v, err := n.Apply(id)
		if err != nil {
			return nil, fmt.Errorf("identifier %d: %w", i, err)
		}
		out[i] = []byte(v)
	}
	return out, nil
}

// Reference computes, in plaintext, what each side should learn: the
// guest rows whose normalised identifier the host has, and the host rows
// whose identifier the guest has.
func Reference(n psi.Normalization, guest, host []string) (guestRows, hostRows []int, err error) {
	g, err := normalize(n, guest)
	if err != nil {
		return nil, nil, err
	}
	h, err := normalize(n, host)
	if err != nil {
		return nil, nil, err
	}
	inG, inH := map[string]bool{}, map[string]bool{}
	for _, v := range g {
		inG[string(v)] = true
	}
	for _, v := range h {
		inH[string(v)] = true
	}
	guestRows, hostRows = []int{}, []int{}
	for i, v := range g {
		if inH[string(v)] {
			guestRows = append(guestRows, i)
		}
	}
	for j, v := range h {
		if inG[string(v)] {
			hostRows = append(hostRows, j)
		}
	}
	return guestRows, hostRows, nil
}

// Check compares an Outcome with the plaintext Reference for the session's
// mode and returns what differs.
func Check(s Session, o Outcome) error {
	wantG, wantH, err := Reference(s.Config.Normalization, s.Guest, s.Host)
	if err != nil {
		return err
	}
	var errs []error
	if !o.Guest.Learned || o.Guest.Count != len(wantG) {
		errs = append(errs, fmt.Errorf("guest learned %v, count %d; want count %d", o.Guest.Learned, o.Guest.Count, len(wantG)))
	}
	if o.Guest.PeerSize != len(s.Host) || o.Host.PeerSize != len(s.Guest) {
		errs = append(errs, fmt.Errorf("peer sizes %d/%d, want %d/%d", o.Guest.PeerSize, o.Host.PeerSize, len(s.Host), len(s.Guest)))
	}
	switch s.Config.Mode {
	case psi.ModeCardinality:
		if o.Guest.Indices != nil {
			errs = append(errs, errors.New("cardinality mode gave the guest indices"))
		}
	default:
		if !slices.Equal(o.Guest.Indices, wantG) {
			errs = append(errs, fmt.Errorf("guest indices %v, want %v", short(o.Guest.Indices), short(wantG)))
		}
	}
	if s.Config.Mode == psi.ModeBothLearn {
		if !o.Host.Learned || o.Host.Count != len(wantH) || !slices.Equal(o.Host.Indices, wantH) {
			errs = append(errs, fmt.Errorf("host learned %v, count %d, indices %v; want %v", o.Host.Learned, o.Host.Count, short(o.Host.Indices), short(wantH)))
		}
	} else if o.Host.Learned || o.Host.Indices != nil || o.Host.Count != 0 {
		errs = append(errs, fmt.Errorf("host learned something outside both-learn mode: %+v", o.Host))
	}
	return errors.Join(errs...)
}

func short(v []int) string {
	if len(v) > 20 {
		return fmt.Sprintf("%v… (%d)", v[:20], len(v))
	}
	return fmt.Sprint(v)
}

// IDs returns n distinct pseudo-random identifiers derived from label:
// hex strings of SHA-256(label, i), deterministic so that failures repeat.
func IDs(label string, n int) []string {
	out := make([]string, n)
	for i := range out {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", label, i))
		out[i] = label + "-" + hex.EncodeToString(sum[:6])
	}
	return out
}

// Overlap returns a guest set of n and a host set of m identifiers sharing
// common of them, interleaved at different positions on the two sides.
func Overlap(label string, n, m, common int) (guest, host []string) {
	shared := IDs(label+"/both", common)
	guest = append(IDs(label+"/guest", n-common), shared...)
	host = append(slices.Clone(shared), IDs(label+"/host", m-common)...)
	// Spread the shared ones through both lists deterministically.
	interleave(guest)
	interleave(host)
	slices.Reverse(host)
	return guest, host
}

// interleave permutes s deterministically (a fixed-stride walk).
func interleave(s []string) {
	n := len(s)
	if n < 3 {
		return
	}
	stride := 7
	for gcd(stride, n) != 1 {
		stride++
	}
	out := make([]string, n)
	for i := range s {
		out[(i*stride)%n] = s[i]
	}
	copy(s, out)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Run is the conformance suite: every case end to end through Exchange,
// in every mode, compared with the plaintext reference.
func Run(t *testing.T, p psi.Protocol) {
	t.Helper()
	type tc struct {
		name        string
		guest, host []string
		norm        psi.Normalization
		batch       int
		window      int
	}
	g0, h0 := Overlap("zero", 150, 120, 0)
	g30, h30 := Overlap("thirty", 200, 170, 60)
	g100, h100 := Overlap("all", 90, 90, 90)
	gSub, hSup := Overlap("subset", 50, 140, 50)
	cases := []tc{
		{name: "overlap 0%", guest: g0, host: h0, batch: 32},
		{name: "overlap 30%", guest: g30, host: h30, batch: 16, window: 2},
		{name: "overlap 100%", guest: g100, host: h100},
		{name: "guest subset of host", guest: gSub, host: hSup, batch: 7, window: 1},
		{name: "duplicates", batch: 3,
			guest: []string{"a", "b", "a", "c", "d", "d", "d", "e"},
			host:  []string{"d", "x", "a", "d", "y", "a", "z"}},
		{name: "both empty", guest: nil, host: nil},
		{name: "guest empty", guest: nil, host: []string{"a", "b", "c"}},
		{name: "host empty", guest: []string{"a", "b", "c"}, host: nil},
		{name: "single match", guest: []string{"only"}, host: []string{"only"}},
		{name: "unicode", batch: 2,
			guest: []string{"张伟-13800138000", "李娜-13900139000", "🙂-customer", "Zoë", "e\u0301"},
			host:  []string{"🙂-customer", "王芳-13700137000", "张伟-13800138000", "Zoë", "é"}},
		{name: "case differs without CaseFold",
			guest: []string{"Alice@Example.COM", "bob@example.com", "ΣΊΣΥΦΟΣ"},
			host:  []string{"alice@example.com", "BOB@example.com", "σίσυφος"}},
		{name: "case differs with CaseFold", norm: psi.Normalization{Trim: true, CaseFold: true},
			guest: []string{"Alice@Example.COM", " bob@example.com", "ΣΊΣΥΦΟΣ", "Straße"},
			host:  []string{"alice@example.com", "BOB@example.com\t", "σίσυφος", "STRASSE"}},
		{name: "phones", norm: psi.Normalization{Trim: true, Phone: "86"},
			guest: []string{"138 0013 8000", "+86 139-0013-9000", "(010) 8888-1234", "+44 20 7946 0958"},
			host:  []string{"008613800138000", "13900139000", "+86 10 8888 1234", "020 7946 0958"}},
	}
	modes := []psi.Mode{psi.ModeIntersection, psi.ModeCardinality, psi.ModeBothLearn}
	for _, c := range cases {
		for _, mode := range modes {
			t.Run(c.name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				s := Session{Guest: c.guest, Host: c.host, Config: psi.Config{
					Session: []byte("conformance/" + c.name), Mode: mode,
					Normalization: c.norm, BatchSize: c.batch, Window: c.window,
				}}
				o, err := Do(t.Context(), p, s, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if err := Check(s, o); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
