package psi_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newKey(t testing.TB) *psi.Key {
	t.Helper()
	k, err := psi.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRFC9497Vectors checks hash-to-group, scalar multiplication and the
// encodings against RFC 9497 appendix A.1.1 (OPRF(ristretto255, SHA-512)):
// BlindedElement = blind·HashToGroup(input) is exactly HashAndBlind, and
// EvaluationElement = skSm·BlindedElement is exactly Reblind.
func TestRFC9497Vectors(t *testing.T) {
	dst := []byte("HashToGroup-OPRFV1-\x00-ristretto255-SHA512")
	blind, err := psi.KeyFromScalar(unhex(t, "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := psi.KeyFromScalar(unhex(t, "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ input, blinded, evaluated string }{
		{"00", "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c", "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e"},
		{"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a", "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418", "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25"},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			blinded := make([]byte, psi.PointBytes)
			if err := blind.HashAndBlind(dst, [][]byte{unhex(t, tt.input)}, blinded); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(blinded); got != tt.blinded {
				t.Fatalf("blinded element %s, want %s", got, tt.blinded)
			}
			evaluated := make([]byte, psi.PointBytes)
			if err := sk.Reblind(blinded, 0, evaluated); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(evaluated); got != tt.evaluated {
				t.Fatalf("evaluated element %s, want %s", got, tt.evaluated)
			}
		})
	}
}

// TestHashToGroupCrossCheck compares hash_to_ristretto255 with values
// computed by cloudflare/circl v1.6.5 (group.Ristretto255.HashToElement),
// including a DST over 255 bytes.
func TestHashToGroupCrossCheck(t *testing.T) {
	dst := psi.DST([]byte("session-1"))
	long := psi.DST([]byte(strings.Repeat("s", 300)))
	tests := []struct {
		dst  []byte
		msg  string
		want string
	}{
		{dst, "", "da173ad2a9fb066b343d42f381455ef76676d9f05127433a2e62c3f76eeeed6f"},
		{dst, "+8613800138000", "2cde0aede1c8f925aabac8f723279d887bc3846e7286fde9f7a773198468653e"},
		{dst, "张伟-13800138000", "d81f9ded813727b62f6c3a6b5dd85384b86ca669382f5e88dc032370f5326e4a"},
		{long, "+8613800138000", "76c6a52bc4dc3204126fd1e1a8ffbc6387534612599c3c0541587a89a8a34362"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(psi.HashToGroup(tt.dst, []byte(tt.msg))); got != tt.want {
			t.Errorf("H(%q) under a %d-byte DST = %s, want %s", tt.msg, len(tt.dst), got, tt.want)
		}
	}
}

func TestDST(t *testing.T) {
	if got := string(psi.DST([]byte("abc"))); got != "fedrisk-psi-v1-abc" {
		t.Fatalf("DST = %q", got)
	}
	if bytes.Equal(psi.DST([]byte("a")), psi.DST([]byte("b"))) {
		t.Fatal("different sessions share a DST")
	}
}

// invalidEncodings are RFC 9496 appendix A.2's invalid encodings plus the
// identity and values with the top bit set.
func invalidEncodings() map[string]string {
	return map[string]string{
		// Non-canonical field encodings.
		"non-canonical 1": "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"non-canonical 2": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"non-canonical 3": "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"non-canonical 4": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		// Negative field elements.
		"negative 1": "0100000000000000000000000000000000000000000000000000000000000000",
		"negative 2": "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"negative 3": "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
		"negative 4": "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
		"negative 5": "c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78",
		"negative 6": "47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24",
		"negative 7": "f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72",
		"negative 8": "87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309",
		// Non-square x^2.
		"non-square 1": "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
		"non-square 2": "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
		"non-square 3": "de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b",
		"non-square 4": "bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042",
		"non-square 5": "2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08",
		"non-square 6": "f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22",
		"non-square 7": "8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731",
		"non-square 8": "2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b",
		// Negative xy value.
		"negative xy 1": "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
		"negative xy 2": "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
		"negative xy 3": "d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e",
		"negative xy 4": "8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32",
		"negative xy 5": "32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b",
		"negative xy 6": "227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165",
		"negative xy 7": "5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e",
		"negative xy 8": "445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b",
		// s = -1, which gives y = 0.
		"s = -1": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		// Not in A.2, also refused.
		"identity":            "0000000000000000000000000000000000000000000000000000000000000000",
		"basepoint + top bit": "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2df6",
		"p (zero + p)":        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"p + 2 (2 + p)":       "efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"all ones":            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	}
}

// validEncodings are small multiples of the generator (RFC 9496 A.1).
var validEncodings = []string{
	"e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
	"6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
	"94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
	"da80862773358b466ffadfe0b3293ab3d9fd53c5ea6c955358f568322daf6a57",
	"e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e",
	"f64746d3c92b13050ed8d80236a7f0007c3b3f962f5ba793d19a601ebb1df403",
}

func TestReblindRejectsInvalidEncodings(t *testing.T) {
	k := newKey(t)
	for name, h := range invalidEncodings() {
		t.Run(name, func(t *testing.T) {
			// The bad point sits between valid ones, at index 2.
			in := append(append(unhex(t, validEncodings[0]), unhex(t, validEncodings[1])...), unhex(t, h)...)
			in = append(in, unhex(t, validEncodings[2])...)
			for _, tagLen := range []int{0, 10} {
				width := max(tagLen, psi.PointBytes*boolInt(tagLen == 0))
				err := k.Reblind(in, tagLen, make([]byte, 4*width))
				var pe *psi.PointError
				if !errors.Is(err, psi.ErrInvalidPoint) || !errors.As(err, &pe) || pe.Index != 2 {
					t.Fatalf("tagLen %d: got %v, want ErrInvalidPoint at index 2", tagLen, err)
				}
				if strings.Contains(err.Error(), h) {
					t.Fatalf("error quotes the point: %v", err)
				}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestReblindAcceptsValidEncodings(t *testing.T) {
	k := newKey(t)
	var in []byte
	for _, h := range validEncodings {
		in = append(in, unhex(t, h)...)
	}
	out := make([]byte, len(in))
	if err := k.Reblind(in, 0, out); err != nil {
		t.Fatal(err)
	}
	// Every output is itself a valid, non-identity point.
	if err := newKey(t).Reblind(out, 0, make([]byte, len(out))); err != nil {
		t.Fatalf("outputs do not re-validate: %v", err)
	}
}

// TestReblindReportsLowestBadIndex puts bad points in different workers'
// chunks of a large batch: the lowest index must be reported.
func TestReblindReportsLowestBadIndex(t *testing.T) {
	k := newKey(t)
	const n = 300
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "id-%d", i)
	}
	in := make([]byte, n*psi.PointBytes)
	if err := k.HashAndBlind(psi.DST([]byte("s")), ids, in); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]int{{0}, {n - 1}, {250, 40}, {299, 150, 151}} {
		t.Run(fmt.Sprint(bad), func(t *testing.T) {
			mutated := bytes.Clone(in)
			lowest := n
			for _, i := range bad {
				copy(mutated[i*psi.PointBytes:], make([]byte, psi.PointBytes)) // identity
				lowest = min(lowest, i)
			}
			var pe *psi.PointError
			err := k.Reblind(mutated, 9, make([]byte, n*9))
			if !errors.As(err, &pe) || pe.Index != lowest {
				t.Fatalf("got %v, want invalid point at %d", err, lowest)
			}
		})
	}
}

func TestLengthErrors(t *testing.T) {
	k := newKey(t)
	dst := psi.DST([]byte("s"))
	ids := [][]byte{[]byte("a"), []byte("b")}
	point := make([]byte, 64)
	if err := k.HashAndBlind(dst, ids, point); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
	}{
		{"hash and blind: short output", k.HashAndBlind(dst, ids, make([]byte, 63))},
		{"hash and blind: long output", k.HashAndBlind(dst, ids, make([]byte, 65))},
		{"hash and blind: empty DST", k.HashAndBlind(nil, ids, make([]byte, 64))},
		{"reblind: truncated point", k.Reblind(point[:63], 0, make([]byte, 32))},
		{"reblind: extra byte", k.Reblind(append(bytes.Clone(point), 0), 0, make([]byte, 64))},
		{"reblind: output too short", k.Reblind(point, 0, make([]byte, 63))},
		{"reblind: tag output too long", k.Reblind(point, 8, make([]byte, 17))},
		{"reblind: tag length 33", k.Reblind(point, 33, make([]byte, 66))},
		{"reblind: negative tag length", k.Reblind(point, -1, make([]byte, 64))},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, psi.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", tt.name, tt.err)
		}
	}
	var zero psi.Key
	if err := zero.Reblind(point, 0, make([]byte, 64)); !errors.Is(err, psi.ErrNoKey) {
		t.Errorf("zero key: got %v, want ErrNoKey", err)
	}
	k.Destroy()
	k.Destroy()
	if err := k.HashAndBlind(dst, ids, make([]byte, 64)); !errors.Is(err, psi.ErrNoKey) {
		t.Errorf("destroyed key: got %v, want ErrNoKey", err)
	}
}

// TestCommutative checks the property the protocol rests on:
// b·(a·H(x)) = a·(b·H(x)), so both sides derive equal tags.
func TestCommutative(t *testing.T) {
	a, b := newKey(t), newKey(t)
	dst := psi.DST([]byte("commute"))
	ids := make([][]byte, 100)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "customer-%d", i)
	}
	A, B := make([]byte, 100*32), make([]byte, 100*32)
	if err := a.HashAndBlind(dst, ids, A); err != nil {
		t.Fatal(err)
	}
	if err := b.HashAndBlind(dst, ids, B); err != nil {
		t.Fatal(err)
	}
	for _, tagLen := range []int{0, 5, 10, 16, 32} {
		w := tagLen
		if w == 0 {
			w = 32
		}
		ba, ab := make([]byte, 100*w), make([]byte, 100*w)
		if err := b.Reblind(A, tagLen, ba); err != nil {
			t.Fatal(err)
		}
		if err := a.Reblind(B, tagLen, ab); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ba, ab) {
			t.Fatalf("tag length %d: b·a·H(x) != a·b·H(x)", tagLen)
		}
	}
}

// TestBatchSplitIrrelevant checks that the parallel path computes what the
// single-element path does.
func TestBatchSplitIrrelevant(t *testing.T) {
	k := newKey(t)
	dst := psi.DST([]byte("split"))
	ids := make([][]byte, 257)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "%d", i)
	}
	all := make([]byte, len(ids)*32)
	if err := k.HashAndBlind(dst, ids, all); err != nil {
		t.Fatal(err)
	}
	allTags := make([]byte, len(ids)*7)
	if err := k.Reblind(all, 7, allTags); err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		one := make([]byte, 32)
		if err := k.HashAndBlind(dst, ids[i:i+1], one); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(one, all[i*32:(i+1)*32]) {
			t.Fatalf("element %d differs between batch and single", i)
		}
		tag := make([]byte, 7)
		if err := k.Reblind(one, 7, tag); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tag, allTags[i*7:(i+1)*7]) {
			t.Fatalf("tag %d differs between batch and single", i)
		}
	}
}

// TestSessionsNeverMatch: the same identifiers in two sessions (different
// DST, different keys, or both) give disjoint tags.
func TestSessionsNeverMatch(t *testing.T) {
	const n = 200
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "+86138%08d", i)
	}
	tags := func(a, b *psi.Key, session string) map[string]bool {
		A := make([]byte, n*32)
		if err := a.HashAndBlind(psi.DST([]byte(session)), ids, A); err != nil {
			t.Fatal(err)
		}
		T := make([]byte, n*16)
		if err := b.Reblind(A, 16, T); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for i := range n {
			set[string(T[i*16:(i+1)*16])] = true
		}
		return set
	}
	a1, b1, a2, b2 := newKey(t), newKey(t), newKey(t), newKey(t)
	base := tags(a1, b1, "s1")
	if len(base) != n {
		t.Fatalf("%d distinct tags for %d identifiers", len(base), n)
	}
	for name, other := range map[string]map[string]bool{
		"other DST, same keys":  tags(a1, b1, "s2"),
		"same DST, other keys":  tags(a2, b2, "s1"),
		"same DST, one new key": tags(a1, b2, "s1"),
		"other DST, other keys": tags(a2, b2, "s2"),
	} {
		for tag := range other {
			if base[tag] {
				t.Errorf("%s: a tag matches across sessions", name)
				break
			}
		}
	}
	// Control: the same session reproduces the same tags.
	for tag := range tags(a1, b1, "s1") {
		if !base[tag] {
			t.Fatal("the same session gave different tags")
		}
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	k := newKey(t)
	type holder struct {
		k   psi.Key
		ptr *psi.Key
	}
	secret := psi.ScalarBytes(k)
	// Ways the scalar could show: hex, or fmt's decimal byte list.
	leaks := []string{hex.EncodeToString(secret[:6]), strings.Trim(fmt.Sprint(secret[:6]), "[]")}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("key", "k", k, "v", *k)
	outputs := []string{
		fmt.Sprint(k), fmt.Sprint(*k),
		fmt.Sprintf("%v %+v %#v %s %x %d %q", k, k, k, k, k, k, k),
		fmt.Sprintf("%v %+v %#v %x", *k, *k, *k, *k),
		fmt.Sprintf("%v %+v %#v", holder{*k, k}, holder{*k, k}, holder{*k, k}),
		buf.String(),
	}
	for _, o := range outputs {
		for _, l := range leaks {
			if strings.Contains(o, l) {
				t.Errorf("output contains the scalar (%s): %s", l, o)
			}
		}
	}
	for _, o := range outputs[:4] {
		if !strings.Contains(o, "psi.Key(redacted)") {
			t.Errorf("output not redacted: %s", o)
		}
	}
	if !strings.Contains(buf.String(), "k=psi.Key(redacted)") || !strings.Contains(buf.String(), "v=psi.Key(redacted)") {
		t.Errorf("slog output: %s", buf.String())
	}
}

func TestNewKeyFresh(t *testing.T) {
	dst := psi.DST([]byte("fresh"))
	seen := map[string]bool{}
	for range 20 {
		out := make([]byte, 32)
		if err := newKey(t).HashAndBlind(dst, [][]byte{[]byte("x")}, out); err != nil {
			t.Fatal(err)
		}
		if seen[string(out)] {
			t.Fatal("two fresh keys blinded an identifier alike")
		}
		seen[string(out)] = true
	}
}

func TestKeyBinaryRoundTrip(t *testing.T) {
	k, err := psi.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.MarshalBinary()
	if err != nil || len(b) != 32 {
		t.Fatalf("marshal: %d bytes, %v", len(b), err)
	}
	var back psi.Key
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	ids := [][]byte{[]byte("a"), []byte("b")}
	dst := psi.DST([]byte("s"))
	x, y := make([]byte, 64), make([]byte, 64)
	if err := k.HashAndBlind(dst, ids, x); err != nil {
		t.Fatal(err)
	}
	if err := back.HashAndBlind(dst, ids, y); err != nil {
		t.Fatal(err)
	}
	if string(x) != string(y) {
		t.Error("restored key blinds differently")
	}
	for _, bad := range [][]byte{nil, make([]byte, 32), bytesOf(0xff, 32), make([]byte, 31)} {
		if err := new(psi.Key).UnmarshalBinary(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
	if _, err := new(psi.Key).MarshalBinary(); err == nil {
		t.Error("zero Key marshalled")
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
