package psi

import (
	"encoding/hex"
	"strings"
	"testing"
)

// TestExpandMessageXMD checks expand_message_xmd(SHA-512) against RFC 9380
// appendix K.3 and, for the oversize-DST rule (section 5.3.3), against
// cloudflare/circl v1.6.5's expander.
func TestExpandMessageXMD(t *testing.T) {
	rfc := []byte("QUUX-V01-CS02-with-expander-SHA512-256")
	long := []byte("fedrisk-psi-v1-" + strings.Repeat("s", 300))
	tests := []struct {
		name string
		dst  []byte
		msg  string
		n    int
		want string
	}{
		{"K.3 empty 32", rfc, "", 32, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"},
		{"K.3 abc 32", rfc, "abc", 32, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"},
		{"K.3 abcdef0123456789 32", rfc, "abcdef0123456789", 32, "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58"},
		{"K.3 empty 128", rfc, "", 128, "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7eb00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961"},
		{"oversize DST 64", long, "abc", 64, "b9c1451b0b80bd536ea37d5b40dfa1e19f0089171ce9560c9d30b5d2748fe22ea1d4266eed02642abdd2d1b23040f55dbcc66896661e13a94e19cdd0948e1cff"},
		{"oversize DST 130", long, "abc", 130, "62dbb52e6735cf2f2c85a771def8793d27760c14f97824ec39f4ace1a533a51c65c12ca01e5cc8c63ac74fd50445b72e51aad09981c224d467d747f532782a7f9c64f7fa6af0a0bb92354453818528e4dfad755a16ad48f74397901ff5c65572c541827782d7004793f343e00e5e5b9f90437fff678775991b7c29a728414467cad0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newXMD(dstPrime(tt.dst))
			out := make([]byte, tt.n)
			if err := x.expand([]byte(tt.msg), out); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(out); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			// The expander is reused by workers: a second call must agree.
			again := make([]byte, tt.n)
			if err := x.expand([]byte(tt.msg), again); err != nil || hex.EncodeToString(again) != tt.want {
				t.Fatalf("second expansion differs: %x, %v", again, err)
			}
		})
	}
}

func TestExpandMessageXMDLimits(t *testing.T) {
	x := newXMD(dstPrime([]byte("d")))
	for _, n := range []int{0, 255*64 + 1, 70000} {
		if err := x.expand(nil, make([]byte, n)); err == nil {
			t.Errorf("length %d accepted", n)
		}
	}
	if err := x.expand(nil, make([]byte, 255*64)); err != nil {
		t.Errorf("length %d refused: %v", 255*64, err)
	}
}
