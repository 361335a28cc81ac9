package features

import (
	_ "embed"
)

//go:embed examples/views.yaml
var exampleViews []byte

// ExampleViews returns the bundled view definitions of the demo data
// (examples/views.yaml: host_credit and guest_credit), which a node uses
// when no views file is configured.
func ExampleViews() (*Registry, error) { return ParseViews(exampleViews) }
