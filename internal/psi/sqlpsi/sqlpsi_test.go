package sqlpsi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/psijob/psijobtest"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func TestStoreConformance(t *testing.T) {
	for _, b := range sqldbtest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			psijobtest.Run(t, func(t *testing.T) psijob.Store { return sqlpsi.New(b.Open(t, true)) })
		})
	}
}

func TestTables(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE customers (phone TEXT, n INTEGER)`); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"c", "a", "b"} {
			if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO customers (phone, n) VALUES (?, 1)`), v); err != nil {
				t.Fatal(err)
			}
		}
		db.ExecContext(ctx, `INSERT INTO customers (phone, n) VALUES (NULL, 2)`)
		tables := sqlpsi.NewTables(db)
		if err := tables.CheckColumn(ctx, "customers", "phone"); err != nil {
			t.Errorf("existing column: %v", err)
		}
		for _, bad := range [][2]string{{"customers", "nope"}, {"nope", "phone"}, {"customers; DROP TABLE customers", "phone"}, {"customers", "phone--"}} {
			if err := tables.CheckColumn(ctx, bad[0], bad[1]); err == nil {
				t.Errorf("CheckColumn(%q, %q) accepted", bad[0], bad[1])
			}
		}
		var got []string
		if err := tables.ReadColumn(ctx, "customers", "phone", func(v string) error { got = append(got, v); return nil }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != "a,b,c" {
			t.Errorf("read: %v (want sorted, without NULL)", got)
		}
		got = nil
		tables.ReadColumn(ctx, "customers", "n", func(v string) error { got = append(got, v); return nil })
		if strings.Join(got, ",") != "1,1,1,2" {
			t.Errorf("numbers read as text: %v", got)
		}
		reserved := sqlpsi.Reserved()
		for _, tbl := range []string{"api_tokens", "psi_jobs", "consents", "schema_migrations", "Subjects"} {
			if !reserved(tbl) {
				t.Errorf("%s is not reserved", tbl)
			}
		}
		if reserved("customers") {
			t.Error("customers is reserved")
		}
	})
}
