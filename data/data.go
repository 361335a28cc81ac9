//go:build !nodemodata

// Package data carries the bundled default-credit data (see README.md in
// this directory) inside the binary, so `fedrisk demo` runs from any
// directory. The container image is built with the tag nodemodata, which
// leaves the 7 MB of demo data out (see data_excluded.go).
package data

import (
	"embed"
	"io/fs"
)

//go:embed default_credit_hetero_guest.csv default_credit_hetero_host.csv
var files embed.FS

// Names of the bundled files.
const (
	GuestFile = "default_credit_hetero_guest.csv" // id, y, x0..x12
	HostFile  = "default_credit_hetero_host.csv"  // id, x0..x9
)

// FS returns the bundled files.
func FS() fs.FS { return files }
