package trainjob

import (
	"encoding/json"
	"testing"
)

func FuzzDecodeOpenRequest(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"guest_job":"tj-000000000000000000000001","host_job":"tj-000000000000000000000002","resume":true,"resume_epoch":3}`))
	f.Add([]byte(`{"psi_job":"psi_0123456789abcdef0123","psi_session":"0123456789abcdef0123456789abcdef","host_file":"h.csv","algo":"hetero-lr"}`))
	f.Add([]byte(`{"host_file":"../etc/passwd"}`))
	f.Add([]byte(`{"resume_epoch":-2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeOpenRequest(b)
		if err != nil {
			return
		}
		if r.Validate() != nil {
			t.Fatalf("accepted an invalid request %+v", r)
		}
		// What was accepted survives a round trip.
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeOpenRequest(again)
		if err != nil || r2 != r {
			t.Fatalf("round trip %+v -> %+v (%v)", r, r2, err)
		}
	})
}
