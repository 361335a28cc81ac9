//go:build nodemodata

package data

import (
	"errors"
	"io/fs"
)

// Names of the bundled files.
const (
	GuestFile = "default_credit_hetero_guest.csv" // id, y, x0..x12
	HostFile  = "default_credit_hetero_host.csv"  // id, x0..x9
)

// ErrExcluded is what opening a bundled file answers in a build without
// the demo data (the container image: `make image` builds with
// -tags nodemodata to keep the image small).
var ErrExcluded = errors.New("the bundled default-credit data is not in this build (the container image leaves it out); run the demo with a binary from `make build`")

// FS returns a file system in which every open fails with ErrExcluded.
func FS() fs.FS { return excluded{} }

type excluded struct{}

func (excluded) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: ErrExcluded}
}
