package api_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// relay is a TCP proxy between a replica and PostgreSQL that the test cuts
// like a network partition: Cut resets every relayed connection and
// black-holes new ones (accepted, never answered, as behind a dropped
// route); Restore releases the held ones and relays again.
type relay struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	live  map[net.Conn]struct{} // relayed, both sides
	held  map[net.Conn]struct{} // accepted while cut
	close bool
}

func newRelay(t testing.TB, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, target: target, live: map[net.Conn]struct{}{}, held: map[net.Conn]struct{}{}}
	go r.accept()
	t.Cleanup(r.shutdown)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.close {
			r.mu.Unlock()
			_ = c.Close()
			return
		}
		if r.cut {
			r.held[c] = struct{}{}
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		go r.pipe(c)
	}
}

func (r *relay) pipe(c net.Conn) {
	up, err := net.Dial("tcp", r.target)
	if err != nil {
		_ = c.Close()
		return
	}
	r.mu.Lock()
	if r.cut || r.close {
		r.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	r.live[c], r.live[up] = struct{}{}, struct{}{}
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	r.mu.Lock()
	delete(r.live, c)
	delete(r.live, up)
	r.mu.Unlock()
}

// Cut partitions the replica from the database.
func (r *relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	for c := range r.live {
		_ = c.Close()
	}
}

// Restore heals the partition: connections held meanwhile are reset (their
// clients retry) and new ones are relayed.
func (r *relay) Restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = false
	for c := range r.held {
		_ = c.Close()
		delete(r.held, c)
	}
}

func (r *relay) shutdown() {
	r.mu.Lock()
	r.close = true
	for c := range r.live {
		_ = c.Close()
	}
	for c := range r.held {
		_ = c.Close()
	}
	r.mu.Unlock()
	_ = r.ln.Close()
}

// viaRelay starts a relay to a PostgreSQL DSN's server and returns the DSN
// pointed at the relay.
func viaRelay(t testing.TB, dsn string) (*relay, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	r := newRelay(t, u.Host)
	u.Host = r.addr()
	return r, u.String()
}

// staleReplica is replica B of the partition test: like newReplica, but its
// core is bounded by maxStaleness, both loops report their good syncs to
// it and poll every poll, and a lost listener only logs (it reconnects).
type staleReplica struct {
	st   *store.Store
	core *authz.Authorizer
}

func newStaleReplica(t testing.TB, dsn string, roles authzsync.Roles, maxStaleness, poll time.Duration) *staleReplica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatalf("replica store: %v", err)
	}
	core := authz.New(authz.Config{MaxStaleness: maxStaleness})
	pol, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: core,
		Fresh: core, Interval: poll})
	if err != nil {
		t.Fatal(err)
	}
	if err := pol.EnsureActive(ctx); err != nil {
		t.Fatal(err)
	}
	syncer, err := authzsync.New(authzsync.Config{Source: st, Roles: roles, Sink: core, Fresh: core, Interval: poll})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncer.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = syncer.Run(ctx) })
	wg.Go(func() { _ = pol.Run(ctx) })
	wg.Go(func() {
		_ = st.Listen(ctx, func(topic string) {
			switch topic {
			case store.TopicDevices:
				syncer.Notify()
			case store.TopicPolicy:
				pol.Notify()
			}
		})
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = st.Close()
	})
	return &staleReplica{st: st, core: core}
}

func reasonOf(t testing.TB, core *authz.Authorizer, id string) (bool, string) {
	t.Helper()
	d, err := core.Authorize(context.Background(), authz.Request{Action: authz.Publish, Identity: id, ClientID: id,
		Topic: "fleets/default/devices/" + id + "/telemetry/t", QoS: 1})
	if err != nil {
		t.Fatalf("authorize %s: %v", id, err)
	}
	return d.Allow, d.Reason
}

func readyz(t testing.TB, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// TestPartitionedReplicaDeniesStale is issue 9 item 3 on PostgreSQL: replica
// B reaches the database through a relay the test cuts. A device revoked on
// A after the cut stays allowed on B only until max_staleness has passed
// since B's last good sync; from then on B denies every request as "stale"
// (and /readyz says so) until the relay is restored, when B recovers by
// itself and answers from fresh data: the revoked device is denied as
// revoked, another device allowed.
func TestPartitionedReplicaDeniesStale(t *testing.T) {
	const (
		maxStaleness = 2 * time.Second
		poll         = 200 * time.Millisecond
	)
	var coreA *authz.Authorizer
	var syncA *authzsync.Syncer
	dsn := testdb.Postgres(t)
	a := newStack(t, dsn, withPolicies(&coreA, &syncA))
	rl, bDSN := viaRelay(t, dsn)
	b := newStaleReplica(t, bDSN, a.ca, maxStaleness, poll)
	diag := api.Diagnostics(b.st, b.core)

	revoked, _, _ := a.enrollOK(t, a.token(t))
	other, _, _ := a.enrollOK(t, a.token(t))
	x, y := revoked.DeviceID, other.DeviceID
	until(t, 5*time.Second, "B allows both enrolled devices", func() bool {
		ax, _ := reasonOf(t, b.core, x)
		ay, _ := reasonOf(t, b.core, y)
		return ax && ay
	})
	if code, body := readyz(t, diag); code != http.StatusOK {
		t.Fatalf("B /readyz before the cut: %d %s", code, body)
	}

	// The partition, then a revocation B cannot hear of.
	tCut := time.Now()
	rl.Cut()
	a.call(t, "POST", "/api/v1/devices/"+x+"/revoke", a.admin, map[string]any{"reason": "keyCompromise"}, 200, nil)
	if allow, _ := reasonOf(t, coreA, x); allow {
		t.Fatal("A still allows the device it revoked")
	}
	tRevoked := time.Now()

	// Until the bound B answers from what it last knew; then only "stale".
	var tLastAllow, tStale time.Time
	for {
		now := time.Now()
		ax, rx := reasonOf(t, b.core, x)
		ay, ry := reasonOf(t, b.core, y)
		if rx == authz.ReasonStale || ry == authz.ReasonStale {
			tStale = now
			break
		}
		if !ax || !ay {
			t.Fatalf("B denied %s (%q) / %s (%q) before going stale: it cannot know of the revocation", x, rx, y, ry)
		}
		tLastAllow = now
		if now.Sub(tCut) > maxStaleness+2*time.Second {
			t.Fatalf("B still allows the revoked device %v after the cut (max_staleness %v)", now.Sub(tCut), maxStaleness)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if d := tStale.Sub(tCut); d > maxStaleness+500*time.Millisecond {
		t.Errorf("first stale deny %v after the cut, want ≤ max_staleness (%v) + 500ms", d, maxStaleness)
	} else if d < maxStaleness/2 {
		t.Errorf("first stale deny only %v after the cut: the bound (%v) is not what B applies", d, maxStaleness)
	}
	// Stale is every decision, on every device, and stays so while cut.
	holdUntil := time.Now().Add(time.Second)
	for time.Now().Before(holdUntil) {
		for _, id := range []string{x, y, "never-enrolled"} {
			if allow, reason := reasonOf(t, b.core, id); allow || reason != authz.ReasonStale {
				t.Fatalf("B while cut and past the bound, %s: allow=%v %q, want deny %q", id, allow, reason, authz.ReasonStale)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := readyz(t, diag); code != http.StatusServiceUnavailable || !strings.Contains(body, "stale") {
		t.Errorf("B /readyz while stale: %d %q, want 503 naming the stale state", code, body)
	}

	// Heal: B recovers by itself, from fresh data.
	tRestore := time.Now()
	rl.Restore()
	var tRecover time.Time
	for {
		ay, ry := reasonOf(t, b.core, y)
		if ay {
			tRecover = time.Now()
			break
		}
		if ry != authz.ReasonStale {
			t.Fatalf("B after the restore, %s: deny %q, want stale until it recovers, then allow", y, ry)
		}
		if time.Since(tRestore) > 15*time.Second {
			t.Fatalf("B still stale %v after the relay was restored", time.Since(tRestore))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if allow, reason := reasonOf(t, b.core, x); allow || reason != "device is revoked" {
		t.Errorf("B after recovery, revoked %s: allow=%v %q, want deny \"device is revoked\"", x, allow, reason)
	}
	until(t, 5*time.Second, "B /readyz ok after recovery", func() bool { code, _ := readyz(t, diag); return code == http.StatusOK })

	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	t.Logf("timeline (t=0 at the cut; max_staleness %v, B polls every %v):", maxStaleness, poll)
	t.Logf("  cut                       t=0")
	t.Logf("  revoke on A returned      t=%s", ms(tRevoked.Sub(tCut)))
	t.Logf("  last allow of revoked dev t=%s", ms(tLastAllow.Sub(tCut)))
	t.Logf("  first stale deny on B     t=%s", ms(tStale.Sub(tCut)))
	t.Logf("  relay restored            t=%s", ms(tRestore.Sub(tCut)))
	t.Logf("  B recovered (allow)       t=%s (%s after the restore)", ms(tRecover.Sub(tCut)), ms(tRecover.Sub(tRestore)))
}
