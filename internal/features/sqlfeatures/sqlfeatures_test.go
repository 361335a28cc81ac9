package sqlfeatures_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/featurestest"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// TestConformance runs the feature store suite on every backend available:
// SQLite always, PostgreSQL with FEDRISK_TEST_POSTGRES_URL set; each case
// on a fresh migrated database, through the memory cache and (with
// FEDRISK_TEST_REDIS_URL set) Redis.
func TestConformance(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			featurestest.Run(t, func(t *testing.T) features.Backend { return sqlfeatures.New(b.Open(t, true)) })
		})
	}
}
