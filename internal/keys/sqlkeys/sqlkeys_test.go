package sqlkeys_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/keystest"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func TestConformance(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			keystest.Run(t, func(t *testing.T) keys.Store { return sqlkeys.New(b.Open(t, true)) })
		})
	}
}
