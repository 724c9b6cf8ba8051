package audit_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// counting records which walk the Checker asked the store for.
type counting struct {
	*store.Store
	full, from int
}

func (c *counting) VerifyAuditChain(ctx context.Context, since time.Time) (store.AuditVerification, error) {
	c.full++
	return c.Store.VerifyAuditChain(ctx, since)
}

func (c *counting) VerifyAuditChainFrom(ctx context.Context, a store.AuditAnchor) (store.AuditVerification, error) {
	c.from++
	return c.Store.VerifyAuditChainFrom(ctx, a)
}

var _ audit.ChainStore = (*counting)(nil)

// TestCheckerWalksOnlyWhatGrew: between full walks a check reads only the
// rows after the last head; an edit behind the head is found by the next
// full walk (at most FullEvery later), an edit of the head at once.
func TestCheckerWalksOnlyWhatGrew(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.DSN(t, "sqlite")
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	n := 0
	appendN := func(k int) {
		for range k {
			n++
			if err := st.AppendAudit(ctx, store.AuditEvent{ID: fmt.Sprintf("ev-%02d", n), Action: "t"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tamper := func(id string) {
		if _, err := db.ExecContext(ctx, `UPDATE audit_events SET actor = 'x' WHERE id = ?`, id); err != nil {
			t.Fatal(err)
		}
	}

	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cs := &counting{Store: st}
	c := audit.NewChecker(audit.CheckerConfig{Store: cs, FullEvery: time.Minute, Now: clock.Now})
	steps := []struct {
		name       string
		do         func()
		ok         bool
		checked    int64
		broken     string
		full, from int
	}{
		{"first check walks everything", func() { appendN(3) }, true, 3, "", 1, 0},
		{"growth reads only the new rows", func() { appendN(2) }, true, 5, "", 1, 1},
		{"edit behind the head waits for the full walk", func() { tamper("ev-02") }, true, 5, "", 1, 2},
		{"full walk after FullEvery finds it", func() { clock.Add(time.Minute) }, false, 2, "ev-02", 2, 2},
		{"a broken chain is walked in full each time", func() {}, false, 2, "ev-02", 3, 2},
	}
	for _, s := range steps {
		s.do()
		got, err := c.VerifyAuditChain(ctx, time.Time{})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got.OK != s.ok || got.Checked != s.checked || got.FirstBroken != s.broken || cs.full != s.full || cs.from != s.from {
			t.Errorf("%s: got %+v (full walks %d, incremental %d), want ok=%v checked=%d broken=%q (%d, %d)",
				s.name, got, cs.full, cs.from, s.ok, s.checked, s.broken, s.full, s.from)
		}
	}
}

// TestCheckerHeadEditFoundAtOnce: the head the incremental check starts
// from is itself re-read, so editing it is caught without a full walk.
func TestCheckerHeadEditFoundAtOnce(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.DSN(t, "sqlite")
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for i := 1; i <= 3; i++ {
		if err := st.AppendAudit(ctx, store.AuditEvent{ID: fmt.Sprintf("ev-%02d", i), Action: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	c := audit.NewChecker(audit.CheckerConfig{Store: st, FullEvery: time.Hour})
	if got, err := c.VerifyAuditChain(ctx, time.Time{}); err != nil || !got.OK || got.HeadSeq != 3 {
		t.Fatalf("first check = %+v, %v", got, err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET detail = 'x' WHERE id = 'ev-03'`); err != nil {
		t.Fatal(err)
	}
	got, err := c.VerifyAuditChain(ctx, time.Time{})
	if err != nil || got.OK || got.FirstBroken != "ev-03" || got.Reason != "anchor" {
		t.Fatalf("after editing the head: %+v, %v; want broken at ev-03 (anchor)", got, err)
	}
}

// blocking holds a full walk until released.
type blocking struct {
	started, release chan struct{}
}

func (b *blocking) VerifyAuditChain(ctx context.Context, _ time.Time) (store.AuditVerification, error) {
	b.started <- struct{}{}
	<-b.release
	return store.AuditVerification{OK: true}, nil
}

func (b *blocking) VerifyAuditChainFrom(context.Context, store.AuditAnchor) (store.AuditVerification, error) {
	return store.AuditVerification{OK: true}, nil
}

// TestCheckerWindowDoesNotQueue: while a check runs, a --since window is
// refused as unavailable at once instead of queueing behind it.
func TestCheckerWindowDoesNotQueue(t *testing.T) {
	b := &blocking{started: make(chan struct{}, 1), release: make(chan struct{})}
	c := audit.NewChecker(audit.CheckerConfig{Store: b})
	done := make(chan error, 1)
	go func() {
		_, err := c.VerifyAuditChain(context.Background(), time.Time{})
		done <- err
	}()
	<-b.started
	_, err := c.VerifyAuditChain(context.Background(), time.Unix(1, 0))
	if !fault.Is(err, fault.Unavailable) {
		t.Errorf("window during a running check: %v, want %s", err, fault.Unavailable)
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
