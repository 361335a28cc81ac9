package psi_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi"
)

func sampleMessages() map[string]psi.Message {
	sess := psi.SessionTagOf([]byte("s"))
	points := bytes.Repeat([]byte{7}, 3*psi.PointBytes)
	return map[string]psi.Message{
		"hello":        {Type: psi.MsgHello, Session: sess, Count: 1, ElemLen: 20, Payload: make([]byte, 20)},
		"hello reply":  {Type: psi.MsgHelloReply, Session: sess, Count: 1, ElemLen: 20, Payload: make([]byte, 20)},
		"guest points": {Type: psi.MsgGuestPoints, Session: sess, Batch: 5, Count: 3, ElemLen: 32, Payload: points},
		"host points":  {Type: psi.MsgHostPoints, Session: sess, Batch: 1 << 31, Count: 3, ElemLen: 32, Payload: points},
		"host tags":    {Type: psi.MsgHostTags, Session: sess, Batch: 2, Count: 4, ElemLen: 10, Payload: make([]byte, 40)},
		"ack":          {Type: psi.MsgAck, Session: sess, Batch: 9},
		"reveal":       {Type: psi.MsgReveal, Session: sess, Count: 2, ElemLen: 4, Payload: make([]byte, 8)},
		"done":         {Type: psi.MsgDone, Session: sess, Count: 1, ElemLen: 8, Payload: make([]byte, 8)},
		"full batch":   {Type: psi.MsgGuestPoints, Session: sess, Count: psi.MaxBatchElems, ElemLen: 32, Payload: make([]byte, psi.MaxBatchElems*32)},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, m := range sampleMessages() {
		t.Run(name, func(t *testing.T) {
			wire, err := psi.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(wire) != psi.HeaderBytes+len(m.Payload) {
				t.Fatalf("%d bytes on the wire for %d of payload", len(wire), len(m.Payload))
			}
			got, err := psi.Decode(wire)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != m.Type || got.Session != m.Session || got.Batch != m.Batch ||
				got.Count != m.Count || got.ElemLen != m.ElemLen || !bytes.Equal(got.Payload, m.Payload) {
				t.Fatalf("round trip: got %+v", got)
			}
		})
	}
}

// header builds a raw header for hostile inputs.
func header(version, typ byte, count uint32, elemLen uint16) []byte {
	b := make([]byte, psi.HeaderBytes)
	b[0], b[1] = version, typ
	binary.BigEndian.PutUint32(b[22:26], count)
	binary.BigEndian.PutUint16(b[26:28], elemLen)
	return b
}

func TestDecodeErrors(t *testing.T) {
	good, err := psi.Encode(sampleMessages()["guest points"])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, psi.ErrTruncated},
		{"short header", good[:psi.HeaderBytes-1], psi.ErrTruncated},
		{"header only", good[:psi.HeaderBytes], psi.ErrTruncated},
		{"payload cut", good[:len(good)-1], psi.ErrTruncated},
		{"trailing byte", append(bytes.Clone(good), 0), psi.ErrOversized},
		{"too many elements", header(1, byte(psi.MsgGuestPoints), psi.MaxBatchElems+1, 32), psi.ErrOversized},
		{"huge count", header(1, byte(psi.MsgGuestPoints), 0xffffffff, 32), psi.ErrOversized},
		{"payload over 4 MiB", header(1, byte(psi.MsgGuestPoints), psi.MaxBatchElems, 0xffff), psi.ErrOversized},
		{"unknown type 0", header(1, 0, 1, 32), psi.ErrUnknownType},
		{"unknown type 200", header(1, 200, 1, 32), psi.ErrUnknownType},
		{"wrong version", header(2, byte(psi.MsgAck), 0, 0), psi.ErrMalformed},
		{"point of 31 bytes", header(1, byte(psi.MsgGuestPoints), 1, 31), psi.ErrMalformed},
		{"point of 33 bytes", header(1, byte(psi.MsgHostPoints), 1, 33), psi.ErrMalformed},
		{"empty point batch", header(1, byte(psi.MsgGuestPoints), 0, 32), psi.ErrMalformed},
		{"tag of 0 bytes", header(1, byte(psi.MsgHostTags), 1, 0), psi.ErrMalformed},
		{"tag of 17 bytes", header(1, byte(psi.MsgHostTags), 1, 17), psi.ErrMalformed},
		{"ack with payload", append(header(1, byte(psi.MsgAck), 1, 1), 0), psi.ErrMalformed},
		{"two hellos", append(header(1, byte(psi.MsgHello), 2, 20), make([]byte, 40)...), psi.ErrMalformed},
		{"reveal of 8-byte positions", append(header(1, byte(psi.MsgReveal), 1, 8), make([]byte, 8)...), psi.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := psi.Decode(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	sess := psi.SessionTagOf([]byte("s"))
	tests := []struct {
		name string
		m    psi.Message
		want error
	}{
		{"payload shorter than header says", psi.Message{Type: psi.MsgGuestPoints, Session: sess, Count: 2, ElemLen: 32, Payload: make([]byte, 32)}, psi.ErrMalformed},
		{"payload longer than header says", psi.Message{Type: psi.MsgGuestPoints, Session: sess, Count: 1, ElemLen: 32, Payload: make([]byte, 33)}, psi.ErrMalformed},
		{"unknown type", psi.Message{Type: 99}, psi.ErrUnknownType},
		{"too many elements", psi.Message{Type: psi.MsgHostTags, Count: psi.MaxBatchElems + 1, ElemLen: 1}, psi.ErrOversized},
		{"negative count", psi.Message{Type: psi.MsgHostTags, Count: -1, ElemLen: 1}, psi.ErrOversized},
		{"bad element length", psi.Message{Type: psi.MsgReveal, Count: 1, ElemLen: 3, Payload: make([]byte, 3)}, psi.ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := psi.Encode(tt.m); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSessionTag(t *testing.T) {
	if psi.SessionTagOf([]byte("a")) == psi.SessionTagOf([]byte("b")) {
		t.Fatal("two sessions share a tag")
	}
	if a, b := psi.SessionTagOf([]byte("a")), psi.SessionTagOf([]byte("a")); a != b {
		t.Fatal("session tag not deterministic")
	}
}
