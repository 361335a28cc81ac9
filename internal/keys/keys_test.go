package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func newRoot(t testing.TB) []byte {
	t.Helper()
	root := make([]byte, 32)
	rand.Read(root)
	return root
}

func newManager(t testing.TB, db *sqldb.DB, root []byte) *keys.Manager {
	t.Helper()
	m, err := keys.New(context.Background(), sqlkeys.New(db), root, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEncryptDecrypt(t *testing.T) {
	ctx := context.Background()
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		m := newManager(t, db, newRoot(t))
		id, err := m.NewDataKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(raw) != 16 {
			t.Errorf("data key id %q is not 16 bytes of base64url", id)
		}
		plain, aad := []byte("DE89 3704 0044 0532 0130 00"), []byte("subject-1/iban")
		ct, err := m.Encrypt(ctx, id, plain, aad)
		if err != nil {
			t.Fatal(err)
		}
		if ct[0] != 1 || bytes.Contains(ct, plain) {
			t.Errorf("ciphertext %x: want format byte 1 and no plaintext", ct)
		}
		ct2, _ := m.Encrypt(ctx, id, plain, aad)
		if bytes.Equal(ct, ct2) {
			t.Error("two encryptions are equal: nonce not random")
		}
		got, err := m.Decrypt(ctx, id, ct, aad)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Decrypt = %q, %v", got, err)
		}
		other, _ := m.NewDataKey(ctx)

		bad := map[string]func() ([]byte, error){
			"wrong aad":      func() ([]byte, error) { return m.Decrypt(ctx, id, ct, []byte("subject-2/iban")) },
			"nil aad":        func() ([]byte, error) { return m.Decrypt(ctx, id, ct, nil) },
			"other data key": func() ([]byte, error) { return m.Decrypt(ctx, other, ct, aad) },
			"empty":          func() ([]byte, error) { return m.Decrypt(ctx, id, nil, aad) },
			"truncated":      func() ([]byte, error) { return m.Decrypt(ctx, id, ct[:len(ct)-1], aad) },
			"header only":    func() ([]byte, error) { return m.Decrypt(ctx, id, ct[:1], aad) },
		}
		for i := range ct { // every byte: format, nonce, ciphertext, tag
			bad[fmt.Sprintf("byte %d flipped", i)] = func() ([]byte, error) {
				c := bytes.Clone(ct)
				c[i] ^= 0x01
				return m.Decrypt(ctx, id, c, aad)
			}
		}
		for name, fn := range bad {
			if p, err := fn(); !errors.Is(err, keys.ErrDecrypt) || p != nil {
				t.Errorf("%s: Decrypt = %q, %v; want ErrDecrypt", name, p, err)
			}
		}

		for name, err := range map[string]error{
			"encrypt": func() error { _, err := m.Encrypt(ctx, "no-such-key", plain, aad); return err }(),
			"decrypt": func() error { _, err := m.Decrypt(ctx, "no-such-key", ct, aad); return err }(),
			"destroy": m.DestroyDataKey(ctx, "no-such-key"),
		} {
			if !errors.Is(err, keys.ErrUnknownKey) {
				t.Errorf("%s with an unknown id: %v, want ErrUnknownKey", name, err)
			}
		}

		dek, keks, err := m.PlainKeyMaterial(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.DestroyDataKey(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := m.DestroyDataKey(ctx, id); err != nil {
			t.Errorf("second destroy: %v", err)
		}
		if _, err := m.Decrypt(ctx, id, ct, aad); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("Decrypt after destroy: %v, want ErrKeyDestroyed", err)
		}
		if _, err := m.Encrypt(ctx, id, plain, aad); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("Encrypt after destroy: %v, want ErrKeyDestroyed", err)
		}
		var wrapped []byte
		var destroyedAt *int64
		if err := db.QueryRowContext(ctx, db.Rebind(`SELECT wrapped, destroyed_at FROM keys_dek WHERE id = ?`), id).Scan(&wrapped, &destroyedAt); err != nil {
			t.Fatal(err)
		}
		if wrapped != nil || destroyedAt == nil {
			t.Errorf("destroyed row: wrapped %x, destroyed_at %v; want NULL and set", wrapped, destroyedAt)
		}
		// Neither the data key nor a KEK ever reaches the database in the clear.
		secrets := append([][]byte{dek}, keks...)
		assertNotStored(t, db, secrets)
		if got, err := m.Decrypt(ctx, other, mustEncrypt(t, m, other, plain, aad), aad); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("other data key after a destroy: %q, %v", got, err)
		}
	})
}

// assertNotStored fails when any value in the keys tables (or, on SQLite,
// any byte of the database files) contains one of secrets.
func assertNotStored(t *testing.T, db *sqldb.DB, secrets [][]byte) {
	t.Helper()
	for _, table := range []string{"keys_kek", "keys_dek", "keys_signing"} {
		rows, err := db.Query(`SELECT * FROM ` + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				b := []byte(fmt.Sprint(v))
				if bv, ok := v.([]byte); ok {
					b = bv
				}
				for _, s := range secrets {
					if bytes.Contains(b, s) {
						t.Errorf("%s.%s holds key material in the clear", table, cols[i])
					}
				}
			}
		}
		rows.Close()
	}
	if db.Dialect != sqldb.SQLite {
		return
	}
	path := db.Location[len("sqlite:"):]
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds key material in the clear", f)
			}
		}
	}
}

func mustEncrypt(t testing.TB, m *keys.Manager, id string, plain, aad []byte) []byte {
	t.Helper()
	ct, err := m.Encrypt(context.Background(), id, plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// corpus is n data keys, each with one ciphertext bound to its id.
type corpus struct {
	ids []string
	cts map[string][]byte
}

func plainFor(id string) []byte { return []byte("identifier of " + id) }

func newCorpus(t *testing.T, db *sqldb.DB, m *keys.Manager, n int) *corpus {
	t.Helper()
	workers := 8
	if db.Dialect == sqldb.SQLite {
		workers = 1 // one writer at a time anyway; waiting writers back off
	}
	c := &corpus{ids: make([]string, n), cts: make(map[string][]byte, n)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				id, err := m.NewDataKey(context.Background())
				if err != nil {
					errs <- err
					return
				}
				ct, err := m.Encrypt(context.Background(), id, plainFor(id), []byte(id))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				c.ids[i], c.cts[id] = id, ct
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return c
}

// check decrypts every ciphertext; destroyed ids must fail with ErrKeyDestroyed.
func (c *corpus) check(t *testing.T, m *keys.Manager, destroyed map[string]bool) {
	t.Helper()
	bad := 0
	for _, id := range c.ids {
		got, err := m.Decrypt(context.Background(), id, c.cts[id], []byte(id))
		switch {
		case destroyed[id] && errors.Is(err, keys.ErrKeyDestroyed):
		case !destroyed[id] && err == nil && bytes.Equal(got, plainFor(id)):
		default:
			if bad++; bad < 5 {
				t.Errorf("Decrypt (destroyed=%v) = %q, %v", destroyed[id], got, err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d ciphertexts misbehave", bad, len(c.ids))
	}
}

func status(t *testing.T, m *keys.Manager) string {
	t.Helper()
	st, err := m.KEKStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, v := range st {
		s += fmt.Sprintf("v%d %s %d; ", v.Version, v.State, v.DataKeys)
		if v.CreatedAt.IsZero() || (v.State == keys.KEKRetired) == v.RetiredAt.IsZero() {
			t.Errorf("KEK %d: created %v, retired %v", v.Version, v.CreatedAt, v.RetiredAt)
		}
	}
	return s
}

func kekMaterialGone(t *testing.T, db *sqldb.DB, version int) {
	t.Helper()
	var wrapped []byte
	if err := db.QueryRow(db.Rebind(`SELECT wrapped FROM keys_kek WHERE version = ?`), version).Scan(&wrapped); err != nil {
		t.Fatal(err)
	}
	if wrapped != nil {
		t.Errorf("KEK version %d still has material", version)
	}
}

const corpusSize = 2000

func TestRotateKEK(t *testing.T) {
	ctx := context.Background()
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		root := newRoot(t)
		m := newManager(t, db, root)
		stale := newManager(t, db, root) // another node, idle during the rotation
		c := newCorpus(t, db, m, corpusSize)
		destroyed := map[string]bool{}
		for _, id := range c.ids[:10] {
			destroyed[id] = true
			if err := m.DestroyDataKey(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := status(t, m), "v1 active 1990; "; got != want {
			t.Fatalf("before rotation: %s, want %s", got, want)
		}
		type call struct{ done, total int }
		var calls []call
		v, err := m.RotateKEK(ctx, func(done, total int) { calls = append(calls, call{done, total}) })
		if err != nil || v != 2 {
			t.Fatalf("RotateKEK = %d, %v; want 2", v, err)
		}
		if len(calls) < 2 {
			t.Fatalf("progress called %d times", len(calls))
		}
		for i, cl := range calls {
			if cl.total != 1990 || cl.done > cl.total || i > 0 && cl.done < calls[i-1].done {
				t.Fatalf("progress not monotonic towards 1990: %v", calls)
			}
		}
		if last := calls[len(calls)-1]; last.done != last.total {
			t.Errorf("last progress %v, want done == total", last)
		}
		if got, want := status(t, m), "v1 retired 0; v2 active 1990; "; got != want {
			t.Errorf("after rotation: %s, want %s", got, want)
		}
		kekMaterialGone(t, db, 1)
		c.check(t, m, destroyed)
		// A node that started before the rotation follows it: it decrypts,
		// and its new data keys go to version 2.
		c.check(t, stale, destroyed)
		fresh, err := stale.NewDataKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := m.Decrypt(ctx, fresh, mustEncrypt(t, stale, fresh, []byte("x"), nil), nil); err != nil || string(got) != "x" {
			t.Errorf("data key created by the idle node: %q, %v", got, err)
		}
		if got, want := status(t, m), "v1 retired 0; v2 active 1991; "; got != want {
			t.Errorf("after the idle node's new key: %s, want %s", got, want)
		}
		if v, err := stale.ResumeKEK(ctx, nil); err != nil || v != 2 {
			t.Errorf("ResumeKEK with nothing to do = %d, %v", v, err)
		}
		if got, want := status(t, m), "v1 retired 0; v2 active 1991; "; got != want {
			t.Errorf("after a no-op resume: %s, want %s", got, want)
		}
	})
}

func TestRotateKEKResumesAfterCrash(t *testing.T) {
	ctx := context.Background()
	finishers := map[string]func(*keys.Manager, context.Context, func(int, int)) (int, error){
		"RotateKEK": (*keys.Manager).RotateKEK,
		"ResumeKEK": (*keys.Manager).ResumeKEK,
	}
	for name, finish := range finishers {
		t.Run(name, func(t *testing.T) {
			sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				root := newRoot(t)
				m := newManager(t, db, root)
				c := newCorpus(t, db, m, corpusSize)
				crashCtx, crash := context.WithCancel(ctx)
				defer crash()
				_, err := m.RotateKEK(crashCtx, func(done, total int) {
					if done > 0 {
						crash() // the process dies after its first batch
					}
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("interrupted RotateKEK: %v, want context.Canceled", err)
				}
				if got, want := status(t, m), "v1 retiring 1500; v2 active 500; "; got != want {
					t.Fatalf("after the crash: %s, want %s", got, want)
				}
				// Mid-rotation, everything still works, and new keys go to v2.
				c.check(t, m, nil)
				extra, err := m.NewDataKey(ctx)
				if err != nil {
					t.Fatal(err)
				}
				c.ids = append(c.ids, extra)
				c.cts[extra] = mustEncrypt(t, m, extra, plainFor(extra), []byte(extra))

				restarted := newManager(t, db, root)
				var last [2]int
				v, err := finish(restarted, ctx, func(done, total int) { last = [2]int{done, total} })
				if err != nil || v != 2 {
					t.Fatalf("finishing the rotation = %d, %v; want 2 (no third version)", v, err)
				}
				if last != [2]int{1500, 1500} {
					t.Errorf("resumed progress ended at %v, want [1500 1500]", last)
				}
				if got, want := status(t, restarted), "v1 retired 0; v2 active 2001; "; got != want {
					t.Errorf("after resuming: %s, want %s", got, want)
				}
				kekMaterialGone(t, db, 1)
				c.check(t, restarted, nil)
				c.check(t, m, nil) // the node that crashed-and-lived forgets v1 too
			})
		})
	}
}

func TestRotateKEKOnline(t *testing.T) {
	ctx := context.Background()
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		root := newRoot(t)
		m := newManager(t, db, root)
		replica := newManager(t, db, root) // another node on the same database
		c := newCorpus(t, db, m, corpusSize)
		toDestroy := map[string]bool{}
		for _, id := range c.ids[:20] {
			toDestroy[id] = true
		}

		var done atomic.Bool
		var ops atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		report := func(err error) {
			select {
			case errs <- err:
			default:
			}
		}
		for w := range 8 {
			node := []*keys.Manager{m, replica}[w%2]
			wg.Go(func() {
				for i := w; !done.Load() || i < w+64; i += 8 {
					id := c.ids[20+i%(len(c.ids)-20)]
					got, err := node.Decrypt(ctx, id, c.cts[id], []byte(id))
					if err != nil || !bytes.Equal(got, plainFor(id)) {
						report(fmt.Errorf("decrypt during rotation: %q, %v", got, err))
					}
					if _, err := node.Encrypt(ctx, id, []byte("new value"), []byte(id)); err != nil {
						report(fmt.Errorf("encrypt during rotation: %v", err))
					}
					if i%4 == 0 {
						fresh, err := node.NewDataKey(ctx)
						if err != nil {
							report(fmt.Errorf("new data key during rotation: %v", err))
							continue
						}
						ct, err := node.Encrypt(ctx, fresh, []byte("fresh"), nil)
						if err != nil {
							report(fmt.Errorf("encrypt with a fresh key during rotation: %v", err))
							continue
						}
						if got, err := node.Decrypt(ctx, fresh, ct, nil); err != nil || string(got) != "fresh" {
							report(fmt.Errorf("fresh key during rotation: %q, %v", got, err))
						}
					}
					ops.Add(1)
				}
			})
		}
		wg.Go(func() {
			for id := range toDestroy {
				if err := replica.DestroyDataKey(ctx, id); err != nil {
					report(err)
				}
			}
		})
		// Both nodes start a rotation at once: they share it.
		versions := make([]int, 2)
		var rot sync.WaitGroup
		for i, node := range []*keys.Manager{m, replica} {
			rot.Go(func() {
				v, err := node.RotateKEK(ctx, nil)
				if err != nil {
					report(fmt.Errorf("RotateKEK: %v", err))
				}
				versions[i] = v
			})
		}
		rot.Wait()
		done.Store(true)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("%d encrypt/decrypt rounds during the rotation", ops.Load())
		if versions[0] != 2 || versions[1] != 2 {
			t.Errorf("concurrent RotateKEK returned %v, want [2 2]", versions)
		}
		st, err := m.KEKStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 2 || st[0].State != keys.KEKRetired || st[0].DataKeys != 0 || st[1].State != keys.KEKActive {
			t.Errorf("after rotation: %+v", st)
		}
		kekMaterialGone(t, db, 1)
		c.check(t, m, toDestroy)
		c.check(t, replica, toDestroy)
	})
}

func TestWrongRootKey(t *testing.T) {
	ctx := context.Background()
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		newManager(t, db, newRoot(t))
		_, err := keys.New(ctx, sqlkeys.New(db), newRoot(t), keys.Options{})
		if !errors.Is(err, keys.ErrRootKeyMismatch) {
			t.Fatalf("New with another root key: %v, want ErrRootKeyMismatch", err)
		}
		t.Log(err)
	})
}

func TestNewValidatesOptions(t *testing.T) {
	db := sqldbtest.OpenSQLite(t, true)
	for name, tc := range map[string]struct {
		root []byte
		opts keys.Options
	}{
		"short root key": {make([]byte, 31), keys.Options{}},
		"small RSA key":  {newRoot(t), keys.Options{RSABits: 1024}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := keys.New(context.Background(), sqlkeys.New(db), tc.root, tc.opts); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func TestBlindIndexAndPseudonym(t *testing.T) {
	rootA, rootB := newRoot(t), newRoot(t)
	a1 := newManager(t, sqldbtest.OpenSQLite(t, true), rootA)
	a2 := newManager(t, sqldbtest.OpenSQLite(t, true), rootA) // same root, another database
	b := newManager(t, sqldbtest.OpenSQLite(t, true), rootB)
	v := []byte("DE89370400440532013000")

	if got := a1.BlindIndex(v); len(got) != 32 || !bytes.Equal(got, a1.BlindIndex(v)) || !bytes.Equal(got, a2.BlindIndex(v)) {
		t.Error("blind index is not a deterministic 32-byte value per root key")
	}
	if bytes.Equal(a1.BlindIndex(v), b.BlindIndex(v)) {
		t.Error("blind index equal under different root keys")
	}
	if bytes.Equal(a1.BlindIndex(v), a1.BlindIndex([]byte("DE89370400440532013001"))) {
		t.Error("blind index equal for different values")
	}
	p := a1.Pseudonym(v)
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil || len(raw) != 32 {
		t.Errorf("pseudonym %q is not unpadded base64url of 32 bytes", p)
	}
	if p != a2.Pseudonym(v) || p == b.Pseudonym(v) {
		t.Error("pseudonym not deterministic per root key")
	}
	if bytes.Equal(raw, a1.BlindIndex(v)) {
		t.Error("pseudonym equals the blind index")
	}
	if bytes.Contains([]byte(p), v) {
		t.Error("pseudonym contains the identifier")
	}
}

func BenchmarkEncryptDecrypt(b *testing.B) {
	ctx := context.Background()
	m := newManager(b, sqldbtest.OpenSQLite(b, true), newRoot(b))
	id, err := m.NewDataKey(ctx)
	if err != nil {
		b.Fatal(err)
	}
	plain, aad := bytes.Repeat([]byte("x"), 1024), []byte("record/field")
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		ct, err := m.Encrypt(ctx, id, plain, aad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Decrypt(ctx, id, ct, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	m := newManager(b, sqldbtest.OpenSQLite(b, true), newRoot(b))
	v := []byte("DE89370400440532013000")
	for b.Loop() {
		m.BlindIndex(v)
	}
}
