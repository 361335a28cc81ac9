package sqldb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t, false)
			if err := db.Check(ctx); !errors.Is(err, sqldb.ErrNotMigrated) {
				t.Fatalf("fresh database: Check = %v, want ErrNotMigrated", err)
			}
			applied, err := db.Migrate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != len(sqldb.Migrations()) {
				t.Errorf("applied %v, want all %d", applied, len(sqldb.Migrations()))
			}
			if err := db.Check(ctx); err != nil {
				t.Fatalf("after migrate: %v", err)
			}
			again, err := db.Migrate(ctx)
			if err != nil || len(again) != 0 {
				t.Errorf("second migrate applied %v, %v", again, err)
			}
			// The schema is usable through Rebind on both engines.
			if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO node_info (key, value, updated_at) VALUES (?, ?, ?)`), "party", "bank", 1); err != nil {
				t.Fatal(err)
			}
			_, err = db.ExecContext(ctx, db.Rebind(`INSERT INTO node_info (key, value, updated_at) VALUES (?, ?, ?)`), "party", "other", 2)
			if !sqldb.IsUniqueViolation(err) {
				t.Errorf("duplicate key: %v, want a unique violation", err)
			}
			var v string
			if err := db.QueryRowContext(ctx, db.Rebind(`SELECT value FROM node_info WHERE key = ?`), "party").Scan(&v); err != nil || v != "bank" {
				t.Errorf("read back %q, %v", v, err)
			}
		})
	}
}

func TestRefusesNewerDatabase(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t, true)
			future := sqldb.Latest() + 1
			if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)`), future); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Migrate(ctx); !errors.Is(err, sqldb.ErrTooNew) {
				t.Errorf("Migrate = %v, want ErrTooNew", err)
			}
			if err := db.Check(ctx); !errors.Is(err, sqldb.ErrTooNew) {
				t.Errorf("Check = %v, want ErrTooNew", err)
			}
		})
	}
}

func TestConcurrentMigrate(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t, false)
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := db.Migrate(ctx)
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if err := db.Check(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOpenDefaultUnderDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	db, err := sqldb.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect != sqldb.SQLite || db.Location != "sqlite:"+filepath.Join(dir, "fedrisk.db") {
		t.Errorf("got %s %s", db.Dialect, db.Location)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := sqldb.Open(ctx, "mysql://x", ""); err == nil {
		t.Error("mysql accepted")
	}
	// Nothing listens on port 1: the error names the database without a password.
	_, err := sqldb.Open(ctx, "postgres://u:pw@127.0.0.1:1/x?connect_timeout=1", "")
	if err == nil {
		t.Fatal("unreachable postgres opened")
	}
	if got := err.Error(); strings.Contains(got, "pw@") {
		t.Errorf("password in error: %s", got)
	}
}

func TestRebind(t *testing.T) {
	pg := &sqldb.DB{Dialect: sqldb.Postgres}
	if got := pg.Rebind(`SELECT '?' , a FROM t WHERE a = ? AND b = ?`); got != `SELECT '?' , a FROM t WHERE a = $1 AND b = $2` {
		t.Errorf("got %s", got)
	}
	lite := &sqldb.DB{Dialect: sqldb.SQLite}
	if got := lite.Rebind(`a = ?`); got != `a = ?` {
		t.Errorf("got %s", got)
	}
}

func TestCheckFindsAGap(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.OpenSQLite(t, true)
	if _, err := db.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx); !errors.Is(err, sqldb.ErrNotMigrated) || !strings.Contains(err.Error(), "0001_node") {
		t.Errorf("Check = %v, want the missing 0001 named", err)
	}
}

// TestDatabaseFilesPrivate: the SQLite file and its -wal and -shm files
// hold identifiers and features, so only the node's user may read them
// (issue 12, finding 8): created 0600 whatever the umask, and an existing
// database left readable by others is tightened.
func TestDatabaseFilesPrivate(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, dir string) {
		t.Helper()
		db, err := sqldb.Open(ctx, "", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Migrate(ctx); err != nil { // writes: the -wal and -shm files exist
			t.Fatal(err)
		}
		for _, name := range []string{"fedrisk.db", "fedrisk.db-wal", "fedrisk.db-shm"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s: mode %04o, want 0600", name, perm)
			}
		}
	}
	t.Run("fresh directory", func(t *testing.T) {
		check(t, filepath.Join(t.TempDir(), "data"))
	})
	t.Run("existing database readable by others", func(t *testing.T) {
		dir := t.TempDir()
		db, err := sqldb.Open(ctx, "", dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		db.Close()
		for _, name := range []string{"fedrisk.db", "fedrisk.db-wal", "fedrisk.db-shm"} {
			if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		check(t, dir)
	})
}
