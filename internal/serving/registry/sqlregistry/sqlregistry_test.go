package sqlregistry_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registrytest"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func TestConformance(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		store := sqlregistry.New(db)
		registrytest.Run(t, func(*testing.T) registry.Store { return store })
	})
}
