// Package sqldb opens the node's SQL database — SQLite (modernc.org/sqlite,
// pure Go, the embedded default) or PostgreSQL (pgx) — and applies the one
// versioned migration set that both run.
//
// Migrations are the files in migrations/, named NNNN_name.sql, applied in
// order, each in its own transaction, and recorded in schema_migrations.
// They are written in the SQL both engines share; the few spellings that
// differ are tokens replaced per dialect:
//
//	{{BLOB}}   BLOB on SQLite, BYTEA on PostgreSQL
//	{{AUTOID}} an auto-incrementing BIGINT primary key
//
// Store adapters (e.g. consent/sqlconsent) write queries with "?" placeholders
// and pass them through Rebind. Times are stored as BIGINT Unix microseconds
// so both engines compare and sort them the same way.
//
// A database whose schema is newer than the binary is refused (ErrTooNew):
// an older binary must never write into a schema it does not know.
package sqldb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Dialect is the SQL engine behind a DB.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Sentinel errors.
var (
	ErrTooNew      = errors.New("database schema is newer than this binary")
	ErrNotMigrated = errors.New("database schema is behind this binary")
)

// DB is an open database with its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
	// Location is where the data lives, password-free, for logs and status.
	Location string
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one step of the schema.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the migration set compiled into the binary, in order.
func Migrations() []Migration {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("sqldb: bad migration file name " + name)
		}
		body, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			panic(err)
		}
		out = append(out, Migration{Version: v, Name: rest, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// Latest is the schema version this binary knows.
func Latest() int {
	m := Migrations()
	return m[len(m)-1].Version
}

// Open connects to url: "" means a SQLite file fedrisk.db under dataDir,
// "sqlite:PATH" a SQLite file (":memory:" is not supported: each pooled
// connection would see its own database), "postgres://..." PostgreSQL.
// Open pings the database before it returns.
func Open(ctx context.Context, url, dataDir string) (*DB, error) {
	var db *DB
	switch {
	case url == "" || strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return nil, fmt.Errorf("open database: create data directory: %w", err)
			}
			path = filepath.Join(dataDir, "fedrisk.db")
		}
		if err := privateFiles(path); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		// WAL lets readers run beside the writer; immediate transactions take
		// the write lock up front, so two writers queue instead of deadlocking.
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
		sqlDB, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db = &DB{DB: sqlDB, Dialect: SQLite, Location: "sqlite:" + path}
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		sqlDB, err := sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(10)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		db = &DB{DB: sqlDB, Dialect: Postgres, Location: redactedHost(url)}
	default:
		return nil, fmt.Errorf("open database: unsupported URL scheme (want postgres:// or sqlite:PATH)")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", db.Location, err)
	}
	return db, nil
}

// privateFiles makes the database file, created here if it does not exist,
// readable by the node's user alone (0600 whatever the umask). SQLite
// gives the -wal and -shm files the mode of the database file; ones left
// by an earlier run with a looser mode are tightened too. A file this
// user cannot chmod is left as it is (the node warns about a data
// directory open to others).
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			_ = os.Chmod(p, fi.Mode().Perm()&^0o077)
		}
	}
	return nil
}

func redactedHost(url string) string {
	rest := url[strings.Index(url, "://")+3:]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q]
	}
	return "postgres://" + rest
}

// Rebind turns "?" placeholders into "$1", "$2"... on PostgreSQL. Question
// marks inside single-quoted literals are left alone.
func (db *DB) Rebind(q string) string {
	if db.Dialect != Postgres {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (db *DB) expand(sqlText string) string {
	r := map[Dialect]*strings.Replacer{
		SQLite:   strings.NewReplacer("{{BLOB}}", "BLOB", "{{AUTOID}}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
		Postgres: strings.NewReplacer("{{BLOB}}", "BYTEA", "{{AUTOID}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
	}[db.Dialect]
	return r.Replace(sqlText)
}

// IsUniqueViolation reports whether err is a unique-constraint violation on
// either engine, so stores can map it to their own "already exists" error.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "SQLSTATE 23505")
}
