package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// rawDB opens the store's database directly, as someone tampering with it
// would; q rewrites ? placeholders for PostgreSQL.
func rawDB(t *testing.T, backend, dsn string) (*sql.DB, func(string) string) {
	t.Helper()
	driver := map[string]string{"sqlite": "sqlite", "postgres": "pgx"}[backend]
	db, err := sql.Open(driver, dsn)
	noErr(t, err)
	t.Cleanup(func() { _ = db.Close() })
	q := func(s string) string {
		if backend != "postgres" {
			return s
		}
		for i := 1; strings.Contains(s, "?"); i++ {
			s = strings.Replace(s, "?", fmt.Sprintf("$%d", i), 1)
		}
		return s
	}
	return db, q
}

func appendN(t *testing.T, s *store.Store, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		noErr(t, s.AppendAudit(context.Background(), store.AuditEvent{ID: fmt.Sprintf("ev-%02d", i),
			Actor: "admin", Action: "test.append", ObjectType: "device", ObjectID: fmt.Sprintf("dev-%d", i),
			Detail: `{"n":` + fmt.Sprint(i) + `}`}))
	}
}

func wantVerify(t *testing.T, s *store.Store, since time.Time, want store.AuditVerification) {
	t.Helper()
	got, err := s.VerifyAuditChain(context.Background(), since)
	noErr(t, err)
	if want.HeadSeq == 0 {
		// The head is checked by the cases that name it.
		got.HeadSeq, got.HeadHash = 0, ""
	}
	if got != want {
		t.Errorf("VerifyAuditChain = %+v, want %+v", got, want)
	}
}

// TestAuditChainTamper edits one row's content, and deletes another, in the
// database directly: verify names exactly that row (the edited one; the one
// after the deleted one), on SQLite and PostgreSQL.
func TestAuditChainTamper(t *testing.T) {
	ctx := context.Background()
	onEveryBackend(t, []backendCase{
		{"edit", func(t *testing.T, backend string) {
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			appendN(t, s, 10)
			wantVerify(t, s, time.Time{}, store.AuditVerification{OK: true, Checked: 10})
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`UPDATE audit_events SET detail = ? WHERE id = ?`), `{"n":99}`, "ev-06")
			noErr(t, err)
			wantVerify(t, s, time.Time{}, store.AuditVerification{FirstBroken: "ev-06", Reason: "hash", Checked: 6})
		}},
		{"rehash-breaks-next", func(t *testing.T, backend string) {
			// A replaced hash is found at its row (were it recomputed
			// over edited content, the next row's prev_hash would not match).
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			appendN(t, s, 5)
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`UPDATE audit_events SET hash = ? WHERE id = ?`), strings.Repeat("ab", 32), "ev-03")
			noErr(t, err)
			wantVerify(t, s, time.Time{}, store.AuditVerification{FirstBroken: "ev-03", Reason: "hash", Checked: 3})
		}},
		{"delete-middle", func(t *testing.T, backend string) {
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			appendN(t, s, 10)
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`DELETE FROM audit_events WHERE id = ?`), "ev-04")
			noErr(t, err)
			wantVerify(t, s, time.Time{}, store.AuditVerification{FirstBroken: "ev-05", Reason: "gap", Checked: 4})
		}},
		{"delete-first", func(t *testing.T, backend string) {
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			appendN(t, s, 3)
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`DELETE FROM audit_events WHERE id = ?`), "ev-01")
			noErr(t, err)
			wantVerify(t, s, time.Time{}, store.AuditVerification{FirstBroken: "ev-02", Reason: "gap", Checked: 1})
		}},
		{"since", func(t *testing.T, backend string) {
			// --since checks from the row before the first one in range:
			// a break before that is out of scope, one at the boundary is
			// not.
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			c := testclock.New(base)
			s.SetClock(c.Now)
			for i := 1; i <= 6; i++ {
				c.Set(base.Add(time.Duration(i-1) * time.Minute))
				noErr(t, s.AppendAudit(ctx, store.AuditEvent{ID: fmt.Sprintf("ev-%02d", i), Action: "t"}))
			}
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`UPDATE audit_events SET actor = 'x' WHERE id = ?`), "ev-02")
			noErr(t, err)
			wantVerify(t, s, base.Add(3*time.Minute), store.AuditVerification{OK: true, Checked: 4})
			wantVerify(t, s, base.Add(2*time.Minute), store.AuditVerification{FirstBroken: "ev-02", Reason: "hash", Checked: 1})
		}},
		{"since-anchor-deleted", func(t *testing.T, backend string) {
			// The row before the window is where the window's first link
			// is checked: deleting it is a gap, not a smaller window.
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			c := testclock.New(base)
			s.SetClock(c.Now)
			for i := 1; i <= 5; i++ {
				c.Set(base.Add(time.Duration(i-1) * time.Minute))
				noErr(t, s.AppendAudit(ctx, store.AuditEvent{ID: fmt.Sprintf("ev-%02d", i), Action: "t"}))
			}
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`DELETE FROM audit_events WHERE id = ?`), "ev-03")
			noErr(t, err)
			wantVerify(t, s, base.Add(3*time.Minute), store.AuditVerification{FirstBroken: "ev-04", Reason: "gap", Checked: 1})
		}},
		{"head-and-from", func(t *testing.T, backend string) {
			// The head a check reports anchors the next one: growth
			// verifies from it, a truncated tail or an edited anchor does
			// not.
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			appendN(t, s, 4)
			first, err := s.VerifyAuditChain(ctx, time.Time{})
			noErr(t, err)
			if !first.OK || first.HeadSeq != 4 || len(first.HeadHash) != 64 {
				t.Fatalf("first check = %+v", first)
			}
			head := store.AuditAnchor{Seq: first.HeadSeq, Hash: first.HeadHash}
			noErr(t, s.AppendAudit(ctx, store.AuditEvent{ID: "ev-05", Action: "t"}))
			noErr(t, s.AppendAudit(ctx, store.AuditEvent{ID: "ev-06", Action: "t"}))
			grown, err := s.VerifyAuditChainFrom(ctx, head)
			noErr(t, err)
			if !grown.OK || grown.Checked != 2 || grown.HeadSeq != 6 {
				t.Fatalf("from head after growth = %+v", grown)
			}
			db, q := rawDB(t, backend, dsn)
			for _, tc := range []struct {
				stmt, id  string
				from      store.AuditAnchor
				want, why string
			}{
				{`UPDATE audit_events SET actor = 'x' WHERE id = ?`, "ev-04", head, "ev-04", "anchor"},
				{`DELETE FROM audit_events WHERE id = ?`, "ev-06", store.AuditAnchor{Seq: 6, Hash: grown.HeadHash}, "seq:6", "truncated"},
			} {
				_, err := db.ExecContext(ctx, q(tc.stmt), tc.id)
				noErr(t, err)
				got, err := s.VerifyAuditChainFrom(ctx, tc.from)
				noErr(t, err)
				if got.OK || got.FirstBroken != tc.want || got.Reason != tc.why {
					t.Errorf("after %q on %s: %+v, want broken at %s (%s)", tc.stmt, tc.id, got, tc.want, tc.why)
				}
			}
		}},
		{"legacy-rows-and-since", func(t *testing.T, backend string) {
			// Rows from before migration 00011 carry no chain; the chain
			// starts at the genesis hash after them.
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			db, q := rawDB(t, backend, dsn)
			_, err := db.ExecContext(ctx, q(`INSERT INTO audit_events (id, at, actor, action, object_type, object_id, detail)
VALUES (?, ?, 'old', 'old', 'x', 'y', '')`), "legacy", base.UnixMilli())
			noErr(t, err)
			appendN(t, s, 4)
			wantVerify(t, s, time.Time{}, store.AuditVerification{OK: true, Checked: 4})
			var got []store.ChainedAuditEvent
			noErr(t, s.ExportAudit(ctx, time.Time{}, func(e store.ChainedAuditEvent) error {
				got = append(got, e)
				return nil
			}))
			if len(got) != 5 || got[0].ID != "legacy" || got[0].Seq != 0 || got[1].PrevHash != store.GenesisHash ||
				got[4].Seq != 4 || got[4].PrevHash != got[3].Hash || len(got[4].Hash) != 64 {
				t.Fatalf("export = %+v", got)
			}
			// since far in the future: nothing to check.
			wantVerify(t, s, time.Now().Add(24*time.Hour), store.AuditVerification{OK: true})
		}},
	})
}

// TestAuditChainConcurrentAppends appends from many goroutines, on
// PostgreSQL through two stores on one database (two replicas): the chain
// stays one valid line with every row in it.
func TestAuditChainConcurrentAppends(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			dsn := testdb.DSN(t, backend)
			stores := []*store.Store{open(t, dsn, nil)}
			if backend == "postgres" {
				stores = append(stores, open(t, dsn, nil))
			}
			const workers, each = 24, 10
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					s := stores[w%len(stores)]
					for i := 0; i < each; i++ {
						errs <- s.AppendAudit(context.Background(), store.AuditEvent{Actor: fmt.Sprint("w", w),
							Action: "test.race", ObjectType: "device", ObjectID: fmt.Sprint(i)})
					}
				}(w)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				noErr(t, err)
			}
			for _, s := range stores {
				wantVerify(t, s, time.Time{}, store.AuditVerification{OK: true, Checked: workers * each})
			}
		})
	}
}
