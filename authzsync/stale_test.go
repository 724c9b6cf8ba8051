package authzsync_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

var errCut = errors.New("connection to the database lost")

// Both loops read through the wrapper; teststore keeps these guards out of
// its own package so that it does not link OPA into every test using it.
var (
	_ authzsync.Source = (*teststore.Store)(nil)
	_ policy.Versions  = (*teststore.Store)(nil)
)

// cut cuts the replica off the database: every read the two sync loops
// make fails until db.Reset.
func cut(db *teststore.Store) {
	db.FailOn("DevicesChangedSince", errCut)
	db.FailOn("ActivePolicy", errCut)
}

// TestSyncStaleness wires the device sync and the policy loop to a core
// bounded at 30s, on a fake clock, on both backends: a failed sync proves
// nothing, so once the older view's last good sync is 30s old every decision
// is a "stale" deny; when both loops succeed again the core answers from
// the fresh data (a device suspended meanwhile is denied as suspended).
func TestSyncStaleness(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.New(ctx, store.Config{DSN: testdb.DSN(t, backend)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			db := teststore.New(st) // the store as this replica sees it
			clk := testclock.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
			t0 := clk.Now()

			if _, err := st.CreateFleet(ctx, store.Fleet{Name: "plant"}, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := st.CreateProfile(ctx, store.Profile{Name: "p", KeyTypes: []string{"P-256"}, Validity: time.Hour}, nil); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"sensor", "other"} {
				if _, err := st.CreateDevice(ctx, store.Device{ID: id, Fleet: "plant", Profile: "p", Status: store.DeviceActive}, nil); err != nil {
					t.Fatal(err)
				}
			}

			core := authz.New(authz.Config{Now: clk.Now, MaxStaleness: 30 * time.Second})
			pol, err := policy.NewService(policy.ServiceConfig{Versions: db, Active: core,
				Fresh: core, Now: clk.Now, Interval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if err := pol.EnsureActive(ctx); err != nil {
				t.Fatal(err)
			}
			s, err := authzsync.New(authzsync.Config{Source: db, Roles: noRoles{}, Sink: core, Fresh: core, Now: clk.Now,
				Interval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { _ = pol.Run(rctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			reason := func(id string) string {
				d, err := core.Authorize(ctx, authz.Request{Action: authz.Connect, Identity: id, ClientID: id})
				if err != nil {
					t.Fatal(err)
				}
				return d.Reason
			}
			// The devices hold no certificate here: the fresh answer is
			// that, and it is not "stale".
			const fresh = "device has no current certificate"
			if r := reason("sensor"); r != fresh {
				t.Fatalf("after the first syncs: %q, want %q", r, fresh)
			}
			if stale, synced := core.Stale(); stale || !synced.Equal(t0) {
				t.Fatalf("Stale() = %v, %v; want fresh, synced %v", stale, synced, t0)
			}

			// The database goes away; the loops keep trying and failing.
			cut(db)
			clk.Add(10 * time.Second)
			if _, err := s.Sync(ctx); !errors.Is(err, errCut) {
				t.Fatalf("sync while cut: %v", err)
			}
			pol.Notify()
			time.Sleep(20 * time.Millisecond)
			if r := reason("sensor"); r != fresh {
				t.Fatalf("10s into the outage (bound 30s): %q, want %q", r, fresh)
			}
			clk.Add(20 * time.Second)
			if r := reason("sensor"); r != authz.ReasonStale {
				t.Fatalf("30s after the last good sync: %q, want %q", r, authz.ReasonStale)
			}
			// Another replica suspends the sensor meanwhile.
			dev, err := st.GetDevice(ctx, "sensor")
			if err != nil {
				t.Fatal(err)
			}
			dev.Status = store.DeviceSuspended
			if _, err := st.UpdateDevice(ctx, dev, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sync(ctx); !errors.Is(err, errCut) {
				t.Fatalf("sync while cut: %v", err)
			}
			if r := reason("sensor"); r != authz.ReasonStale {
				t.Fatalf("stale core: %q, want %q", r, authz.ReasonStale)
			}

			// Back: the device view alone is not enough, the policy loop
			// must succeed too.
			db.Reset()
			if _, err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if r := reason("other"); r != authz.ReasonStale {
				t.Fatalf("only the device view synced: %q, want %q", r, authz.ReasonStale)
			}
			pol.Notify()
			deadline := time.Now().Add(5 * time.Second)
			for reason("other") == authz.ReasonStale {
				if time.Now().After(deadline) {
					t.Fatal("the policy loop's successful check did not end the stale state")
				}
				time.Sleep(time.Millisecond)
			}
			if r := reason("sensor"); r != "device is suspended" {
				t.Fatalf("after recovery: %q, want the fresh \"device is suspended\"", r)
			}
			if r := reason("other"); r != fresh {
				t.Fatalf("after recovery: %q, want %q", r, fresh)
			}
		})
	}
}

type noRoles struct{}

func (noRoles) RolesOf(*x509.Certificate) []string { return nil }

// memSource is an in-memory device table whose reads take a while, so
// concurrent Sync callers queue.
type memSource struct {
	mu    sync.Mutex
	devs  map[string]store.DeviceWithCert
	reads atomic.Int64
}

func (m *memSource) add(id string) {
	m.mu.Lock()
	m.devs[id] = store.DeviceWithCert{Device: store.Device{ID: id, Status: store.DeviceActive}}
	m.mu.Unlock()
}

func (m *memSource) DevicesChangedSince(ctx context.Context, since time.Time) ([]store.DeviceWithCert, time.Time, error) {
	m.reads.Add(1)
	m.mu.Lock()
	out := make([]store.DeviceWithCert, 0, len(m.devs))
	for _, d := range m.devs {
		out = append(out, d)
	}
	m.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	return out, time.Time{}, nil
}

// TestSyncCoalesces: many callers that each committed a change and then
// call Sync all find their change in the core when Sync returns, while the
// source is read far fewer times than there are callers.
func TestSyncCoalesces(t *testing.T) {
	src := &memSource{devs: map[string]store.DeviceWithCert{}}
	core := authz.New(authz.Config{})
	s, err := authzsync.New(authzsync.Config{Source: src, Roles: noRoles{}, Sink: core})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			id := fmt.Sprint("dev-", i)
			src.add(id) // the commit
			if _, err := s.Sync(context.Background()); err != nil {
				t.Error(err)
				return
			}
			if _, ok := core.Device(id); !ok {
				t.Errorf("%s: Sync returned before the core had it", id)
			}
		})
	}
	wg.Wait()
	t.Logf("%d callers, %d source reads", callers, src.reads.Load())
	if n := src.reads.Load(); n >= callers {
		t.Errorf("%d reads for %d callers: concurrent Syncs were not shared", n, callers)
	}
}
