package trainjobtest

import (
	"testing"

	"github.com/fedrisk/fedrisk/data"
	"github.com/fedrisk/fedrisk/internal/training/dataset"
)

// CreditSubset returns the first n rows of the bundled default-credit
// data: the guest's (labelled) and the host's table, aligned.
func CreditSubset(tb testing.TB, n int) (guest, host *dataset.Table) {
	tb.Helper()
	read := func(name string, labelled bool) *dataset.Table {
		f, err := data.FS().Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		t, err := dataset.ReadCSV(f, labelled)
		if err != nil {
			tb.Fatal(err)
		}
		return t
	}
	g, h := read(data.GuestFile, true), read(data.HostFile, false)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	g = g.Rows(idx)
	h, err := h.Align(g.IDs)
	if err != nil {
		tb.Fatal(err)
	}
	return g, h
}
