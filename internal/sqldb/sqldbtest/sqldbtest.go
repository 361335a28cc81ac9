// Package sqldbtest gives conformance suites a fresh database on every
// backend that can run here: SQLite always, PostgreSQL when
// FEDRISK_TEST_POSTGRES_URL is set (each test gets its own schema, dropped
// afterwards, so tests never see each other's rows).
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// PostgresEnv names the variable holding the test PostgreSQL URL.
const PostgresEnv = "FEDRISK_TEST_POSTGRES_URL"

// Backend opens fresh databases of one engine.
type Backend struct {
	Name string
	// Open returns a new, empty database; migrated when migrate is true.
	Open func(t testing.TB, migrate bool) *sqldb.DB
}

// Backends lists the engines available to this test run.
func Backends(t testing.TB) []Backend {
	b := []Backend{{Name: "sqlite", Open: OpenSQLite}}
	if os.Getenv(PostgresEnv) != "" {
		b = append(b, Backend{Name: "postgres", Open: OpenPostgres})
	} else {
		t.Logf("%s not set: PostgreSQL conformance skipped", PostgresEnv)
	}
	return b
}

// Each runs fn as a subtest on a fresh migrated database of every backend.
func Each(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	for _, b := range Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open(t, true)) })
	}
}

// OpenSQLite opens a SQLite file in a temporary directory.
func OpenSQLite(t testing.TB, migrate bool) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "test.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return finish(t, db, migrate)
}

// PostgresURL creates a schema of its own in the test PostgreSQL database,
// dropped when the test ends, and returns a URL whose search_path is that
// schema. It skips the test when FEDRISK_TEST_POSTGRES_URL is not set.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skipf("%s not set", PostgresEnv)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	schema := "fedrisk_test_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		a.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// OpenPostgres opens a database on a fresh schema (see PostgresURL).
func OpenPostgres(t testing.TB, migrate bool) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), PostgresURL(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return finish(t, db, migrate)
}

func finish(t testing.TB, db *sqldb.DB, migrate bool) *sqldb.DB {
	t.Helper()
	if migrate {
		if _, err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return db
}
