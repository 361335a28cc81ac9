package secureboost

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, m := range []Message{
		{Type: MsgHello, Payload: []byte(`{"protocol":"x"}`)},
		{Type: MsgTreeDone, Tree: 3},
		{Type: MsgGradients, Tree: 1, Level: 2, Part: 1, Payload: make([]byte, 40)},
		{Type: MsgTreeEnd, Tree: 4, Payload: []byte{3}},
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

// FuzzStream feeds arbitrary bytes to the stream transport's reader.
func FuzzStream(f *testing.F) {
	b, _ := Encode(Message{Type: MsgTreeDone, Tree: 2})
	f.Add(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewStream(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(b), io.Discard})
		for range 4 {
			if _, err := s.Recv(t.Context()); err != nil {
				return
			}
		}
	})
}

// FuzzPeerPayloads feeds arbitrary bytes to every decoder of a peer's
// payload, with the shapes of a small session.
func FuzzPeerPayloads(f *testing.F) {
	s, err := newSuite(DefaultParams())
	if err != nil {
		f.Fatal(err)
	}
	bud, err := s.p.planBudget(20, 5000, 512, 0)
	if err != nil {
		f.Fatal(err)
	}
	s.setBudget(bud)
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), make([]byte, s.hresultBytes(3)))
	f.Add(uint8(2), []byte{0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1})
	f.Add(uint8(3), []byte{0, 0, 0, 1, 0, 0, 0, 4, 0xff, 0x01})
	f.Add(uint8(4), []byte(`{"protocol":"fedrisk-hetero-secureboost/1","session":"s","params":{"log_n":13,"q":[1,2]}}`))
	f.Add(uint8(5), []byte(`{"protocol":"fedrisk-hetero-secureboost/1","features":3,"bins":[2,3,4]}`))
	f.Add(uint8(6), []byte(`{"budget":{"stride":512,"shift":38,"alpha":65,"flood_log2":63}}`))
	f.Add(uint8(7), []byte(`{"trees":3,"splits":5}`))
	f.Add(uint8(9), make([]byte, 32+8))
	f.Add(uint8(11), []byte{0, 0, 0, 1, 0, 0, 0, 3, 0x1f, 0x01})
	f.Add(uint8(12), []byte{0, 0, 0, 3, 0x1f, 0, 0, 0, 4, 1, 2, 1})
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		var err error
		switch kind % 13 {
		case 0:
			r := &reader{b: b}
			_ = s.readSeeded(r)
			err = r.end()
		case 1:
			count := 1
			if len(b) > 0 {
				count = int(b[0]%4) + 1
			}
			r := &reader{b: b}
			_ = s.readHResult(r, count)
			err = r.end()
		case 2:
			_, err = decodeSplitOrders(b, 3, func(f, bin uint32) bool { return f < 4 && bin < 30 })
		case 3:
			_, err = decodeRoutes(b, []uint32{1, 4}, 13)
		case 4:
			var h hello
			if err = jsonPayload(b, &h); err == nil {
				_ = h.Params.Validate()
				_ = h.Train.Validate()
				_ = h.Split.Validate()
			}
		case 5:
			var h helloReply
			err = jsonPayload(b, &h)
		case 6:
			var su setup
			if err = jsonPayload(b, &su); err == nil {
				_, _ = s.p.planBudget(20, 5000, su.Budget.Stride, su.Budget.NoiseBits)
			}
		case 7:
			var fin finish
			err = jsonPayload(b, &fin)
		case 8:
			_, err = s.decodePublicKey(b)
		case 9:
			var rep finishReply
			err = jsonPayload(b, &rep)
		case 10:
			r := &reader{b: b}
			_ = r.bitmap(int(r.u32() % 4096))
			err = r.end()
		case 11:
			r := &reader{b: b}
			_, err = readPartitions(r, func(id int32) (int, bool) { return int(id) * 3, id%2 == 1 })
		case 12:
			_, _, err = decodeSplitReply(b, []int{5, 17}, 3)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrParams) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// FuzzParseModel: model documents are read back from disk or another
// service; a parsed half must score without panicking.
func FuzzParseModel(f *testing.F) {
	f.Add([]byte(`{"format":"fedrisk-hetero-secureboost-guest/1","model_id":"m","version":"1","features":["a"],"base":0,` +
		`"trees":[{"nodes":[{"host":-1,"feature":0,"threshold":1,"left":1,"right":2},{"leaf":true,"value":1,"host":-1},{"leaf":true,"value":-1,"host":0,"split_id":0}]}],` +
		`"hosts":[{"name":"h","index":0,"features":1,"splits":1,"model_digest":""}],"metrics":{"validation":{},"test":{},"history":null,"trees":1,"kept":1},"card":{}}`))
	f.Add([]byte(`{"format":"fedrisk-hetero-secureboost-host/1","model_id":"m","version":"1","host_index":0,"features":["a"],"splits":[{"feature":0,"threshold":2,"tree":0,"node":0}],"trees":1,"trained_at":"2026-01-01T00:00:00Z","histogram_noise":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := ParseGuestModel(bytes.NewReader(b)); err == nil {
			routes := make([][]byte, len(g.Hosts))
			for h, ref := range g.Hosts {
				routes[h] = make([]byte, (ref.Splits+7)/8)
			}
			if _, err := g.Logit(make([]float64, len(g.Features)), routes); err != nil {
				t.Fatal(err)
			}
		}
		if h, err := ParseHostModel(bytes.NewReader(b)); err == nil {
			if _, err := h.Route(make([]float64, len(h.Features))); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzParseCheckpoint: checkpoints are read back from the job store.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(`{"model_id":"m","version":"1","tree":0,"splits":[]}`))
	f.Add([]byte(`{"model_id":"m","version":"1","tree":0,"trees":[{"nodes":[{"leaf":true,"host":-1}]}],"history":[{}],"host_splits":[0],"host_first":[[0]]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err1 := ParseGuestCheckpoint(b)
		_, err2 := ParseHostCheckpoint(b)
		for _, err := range []error{err1, err2} {
			if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) {
				t.Fatalf("unclassified error %v", err)
			}
		}
	})
}

// FuzzDecodeRoute: routing requests and answers cross the serving API.
func FuzzDecodeRoute(f *testing.F) {
	f.Add([]byte(`{"model_id":"m","version":"1"}`))
	f.Add([]byte(`{"model_id":"m","version":"1","splits":9,"bits":"/wE="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := DecodeRouteRequest(b); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) {
			t.Fatalf("unclassified error %v", err)
		}
		r, err := DecodeRouteResponse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if checkBitmap(r.Bits, r.Splits) != nil {
			t.Fatal("accepted bits that do not match the split count")
		}
	})
}
