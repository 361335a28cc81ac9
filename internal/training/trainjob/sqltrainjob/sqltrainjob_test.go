package sqltrainjob_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/sqltrainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobtest"
)

func TestConformance(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			trainjobtest.Run(t, func(t *testing.T) trainjob.Store {
				return sqltrainjob.New(b.Open(t, true))
			})
		})
	}
}
