package sqlconsent_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consenttest"
	"github.com/fedrisk/fedrisk/internal/consent/sqlconsent"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// TestConformance runs the consent.Store suite on every backend available:
// SQLite always, PostgreSQL with FEDRISK_TEST_POSTGRES_URL set. Every call
// of newStore gets a fresh migrated database.
func TestConformance(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			consenttest.Run(t, func(t *testing.T) (consent.Store, *sqlaudit.Log) {
				db := b.Open(t, true)
				log := sqlaudit.New(db)
				return sqlconsent.New(db, log), log
			})
		})
	}
}
