package psijob_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/psi/psijob"
)

// TestCSVInputConfined: a CSV input is a regular file below the input
// directory, and its header and rows are bounded (issue 12, finding 4).
func TestCSVInputConfined(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "input")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) string {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write(filepath.Join(dir, "ok.csv"), "name,id\nx,1\n")
	outside := write(filepath.Join(base, "outside.csv"), "name,id\nx,1\n")
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.csv")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	inner := write(filepath.Join(dir, "sub", "inner.csv"), "id\n1\n")
	huge := strings.Repeat("h", 10<<20)
	tests := []struct {
		name, path string
		ok         bool
		msg        string
	}{
		{"regular file", good, true, ""},
		{"file in a subdirectory", inner, true, ""},
		{"relative symlink inside the directory", link("inner-link.csv", filepath.Join("sub", "inner.csv")), true, ""},
		{"device", "/dev/zero", false, "input directory"},
		{"file outside the directory", outside, false, "input directory"},
		{"dot-dot out of the directory", filepath.Join(dir, "..", "outside.csv"), false, "input directory"},
		{"symlink to a device", link("zero.csv", "/dev/zero"), false, ""},
		{"symlink out of the directory", link("out.csv", outside), false, ""},
		{"FIFO", fifo, false, "not a regular file"},
		{"directory", filepath.Join(dir, "sub"), false, "not a regular file"},
		{"10 MB header", write(filepath.Join(dir, "header.csv"), huge+",id\n1,2\n"), false, "longer than"},
	}
	in := psijob.Inputs{Dir: dir}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				done <- in.Check(context.Background(), psijob.Input{Kind: psijob.InputCSV, Path: tt.path, Column: "id"})
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second): // a guard against a hang, not a speed check
				t.Fatal("Check did not return: blocked on the input")
			}
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, psijob.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want ErrInvalid mentioning %q", err, tt.msg)
			}
		})
	}

	t.Run("10 MB row", func(t *testing.T) {
		path := write(filepath.Join(dir, "row.csv"), "name,id\nx,1\n"+huge+",2\ny,3\n")
		if err := in.Check(context.Background(), psijob.Input{Kind: psijob.InputCSV, Path: path, Column: "id"}); err != nil {
			t.Fatal(err) // the header is fine
		}
		err := in.Read(context.Background(), psijob.Input{Kind: psijob.InputCSV, Path: path, Column: "id"}, func(int, string) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("a 10 MB row: %v", err)
		}
	})
	t.Run("no input directory", func(t *testing.T) {
		err := psijob.Inputs{}.Check(context.Background(), psijob.Input{Kind: psijob.InputCSV, Path: good, Column: "id"})
		if !errors.Is(err, psijob.ErrInvalid) {
			t.Errorf("a node without an input directory read a CSV: %v", err)
		}
	})
}

// FuzzCSVInput: any file content is read without a panic, and no header
// or row longer than the bound gets through.
func FuzzCSVInput(f *testing.F) {
	f.Add([]byte("name,id\nx,1\n"))
	f.Add([]byte("\ufeffid\n\"a\nb\",2\n"))
	f.Add([]byte("id\n" + strings.Repeat("x", psijob.MaxCSVRecordBytes+10) + "\n"))
	dir := f.TempDir()
	path := filepath.Join(dir, "in.csv")
	in := psijob.Inputs{Dir: dir}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		input := psijob.Input{Kind: psijob.InputCSV, Path: path, Column: "id"}
		if in.Check(context.Background(), input) != nil {
			return
		}
		_ = in.Read(context.Background(), input, func(_ int, v string) error {
			if len(v) > psijob.MaxCSVRecordBytes+4096 {
				t.Fatalf("a %d-byte field got through", len(v))
			}
			return nil
		})
	})
}
