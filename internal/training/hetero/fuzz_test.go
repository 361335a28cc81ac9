package hetero

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, m := range []Message{
		{Type: MsgHello, Payload: []byte(`{"protocol":"x"}`)},
		{Type: MsgReady},
		{Type: MsgScores, Epoch: 1, Batch: 2, Payload: make([]byte, 32)},
		{Type: MsgEpochEnd, Epoch: 4, Payload: []byte{3}},
		{Type: MsgAbort, Payload: []byte("reason")},
	} {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Add([]byte{1, 99, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		again, err := Encode(m)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

// FuzzPeerPayloads feeds arbitrary bytes to every decoder of a peer's
// payload, with the session shapes of a default session.
func FuzzPeerPayloads(f *testing.F) {
	s, err := newSuite(DefaultParams(2), 512)
	if err != nil {
		f.Fatal(err)
	}
	bud, err := s.p.planBudget(2, 512, s.lay.PerCt)
	if err != nil {
		f.Fatal(err)
	}
	s.setBudget(bud)
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), make([]byte, s.resultBytes(1)))
	f.Add(uint8(2), make([]byte, 16*3))
	f.Add(uint8(3), make([]byte, 8*(s.out+1)*2))
	f.Add(uint8(4), []byte(`{"protocol":"fedrisk-hetero-lr/1","session":"s","params":{"log_n":13,"q":[1,2]}}`))
	f.Add(uint8(5), []byte(`{"protocol":"fedrisk-hetero-lr/1","features":3,"seed_key":"AAAA"}`))
	f.Add(uint8(6), make([]byte, sealedSeedBytes))
	f.Add(uint8(7), []byte(`{"best_epoch":1,"epochs":2}`))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		var err error
		switch kind % 9 {
		case 0:
			_, err = s.decodeSeededList(b, 1)
		case 1:
			// Small shapes keep the fuzzer fast; the sizes are checked first.
			count := 1
			if len(b) > 0 {
				count = int(b[0]%3) + 1
			}
			feats := make([]int, count)
			for i := range feats {
				feats[i] = i + 1
			}
			var res []result
			res, err = s.decodeResults(b, feats)
			if err == nil && len(res) != count {
				t.Fatal("wrong count")
			}
		case 2:
			_, err = decodeScores(b, len(b)/16)
		case 3:
			_, err = s.decodeResidueRows(b, 2)
		case 4:
			var h hello
			if err = jsonPayload(b, &h); err == nil {
				_ = h.Params.Validate()
				_ = h.Train.Validate()
				_ = h.Split.Validate()
				_ = h.Params.checkBudget(h.Budget, 1, 512, 16)
			}
		case 5:
			var h helloReply
			err = jsonPayload(b, &h)
		case 6:
			_, err = decodeSeedShares(b, 2)
		case 7:
			var fin finish
			err = jsonPayload(b, &fin)
		case 8:
			_, err = s.decodePublicKey(b)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrParams) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// FuzzParseModel: model documents are read back from disk or another
// service.
func FuzzParseModel(f *testing.F) {
	f.Add([]byte(`{"format":"fedrisk-hetero-lr-guest/1","model_id":"m","version":"1","features":["a"],"weights":[1],"bias":0,"standardisation":{"means":[0],"stds":[1]}}`))
	f.Add([]byte(`{"format":"fedrisk-hetero-lr-host/1","model_id":"m","version":"1","features":["a"],"weights":[1],"standardisation":{"means":[0],"stds":[1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := ParseGuestModel(bytes.NewReader(b)); err == nil {
			x := make([]float64, len(g.Weights))
			if _, err := g.PartialScore(x); err != nil {
				t.Fatal(err)
			}
		}
		if h, err := ParseHostModel(bytes.NewReader(b)); err == nil {
			if _, err := h.PartialScore(make([]float64, len(h.Weights))); err != nil {
				t.Fatal(err)
			}
		}
	})
}
