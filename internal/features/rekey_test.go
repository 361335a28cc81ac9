package features

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRekeyCSV(t *testing.T) {
	key := func(s string) (string, error) {
		if s == "bad" {
			return "", errors.New("refused")
		}
		return "k-" + s, nil
	}
	r, err := RekeyCSV(strings.NewReader("x0,id,x1\n1,a,2\n3,\"b,c\",4\n"), "id", key)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r)
	if got, want := string(out), "x0,id,x1\n1,k-a,2\n3,\"k-b,c\",4\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var le *LoadError
	if _, err := RekeyCSV(strings.NewReader("id\nok\nbad\n"), "id", key); !errors.As(err, &le) || le.Line != 3 || !errors.Is(err, ErrInvalidEntity) || strings.Contains(err.Error(), "bad") {
		t.Errorf("bad key: %v", err)
	}
	if _, err := RekeyCSV(strings.NewReader("x0\n1\n"), "id", key); !errors.Is(err, ErrInvalidCSV) {
		t.Errorf("no entity column: %v", err)
	}
	if _, err := RekeyCSV(strings.NewReader("id,x\n1\n"), "id", key); !errors.Is(err, ErrInvalidCSV) {
		t.Errorf("short row: %v", err)
	}
}

func FuzzRekeyCSV(f *testing.F) {
	f.Add("id,x0\n1,2\n")
	f.Add("x0,id\n\"a\nb\",c\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := RekeyCSV(strings.NewReader(in), "id", func(s string) (string, error) { return "k" + s, nil })
		if err == nil && r == nil {
			t.Fatal("nil reader without error")
		}
	})
}
