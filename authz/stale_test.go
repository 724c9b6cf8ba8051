package authz_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// logCounter counts log records by message prefix.
type logCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func (l *logCounter) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

const (
	enterMsg   = "decision state is stale"
	recoverMsg = "decision state is fresh again"
)

func newStaleCore(t *testing.T, clk *testclock.Clock, bound time.Duration) (*authz.Authorizer, *logCounter) {
	t.Helper()
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	logs := &logCounter{}
	a := authz.New(authz.Config{Now: clk.Now, MaxStaleness: bound, Log: slog.New(logs)})
	a.SetPolicy(p, 1)
	for _, id := range []string{"temp-1", "temp-2"} {
		a.UpsertDevice(authz.Device{ID: id, Fleet: "plant", Profile: "sensor", Roles: []string{"telemetry"},
			Active: true, Status: "active", CertNotAfter: clk.Now().Add(24 * time.Hour)})
	}
	return a, logs
}

// staleRequests are one of each kind of request, including those the core
// denies before looking at the device: past the bound every one is "stale".
var staleRequests = []authz.Request{
	req(authz.Connect, "temp-1", ""),
	req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/celsius"),
	req(authz.Subscribe, "temp-1", "fleets/plant/devices/temp-1/cmd/#"),
	req(authz.Publish, "temp-1", "fleets/plant/devices/temp-2/telemetry/celsius"),
	req(authz.Connect, "ghost", ""),
	{Action: authz.Connect, ClientID: "temp-1"},
	{Action: authz.Connect, Identity: "temp-1", ClientID: "temp-2"},
}

func decide(t *testing.T, a *authz.Authorizer, r authz.Request) authz.Decision {
	t.Helper()
	d, err := a.Authorize(context.Background(), r)
	if err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
	return d
}

func wantStale(t *testing.T, a *authz.Authorizer, stale bool) {
	t.Helper()
	for _, r := range staleRequests {
		d := decide(t, a, r)
		if got := d.Reason == authz.ReasonStale; got != stale {
			t.Errorf("%s %s as %q: %+v, stale deny %v, want %v", r.Action, r.Topic, r.Identity, d, got, stale)
		}
		if d.Reason == authz.ReasonStale && d.Allow {
			t.Errorf("a stale decision allows: %+v", d)
		}
	}
	if got, _ := a.Stale(); got != stale {
		t.Errorf("Stale() = %v, want %v", got, stale)
	}
}

// TestMaxStaleness walks a core through the bound with a fake clock: fresh
// while both views synced within MaxStaleness, every decision a "stale" deny
// once the older view passes it (a cached allow included), one log line per
// transition, and recovery as soon as both views sync again.
func TestMaxStaleness(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	clk := testclock.New(t0)
	a, logs := newStaleCore(t, clk, 30*time.Second)

	// Bounded, a core that never synced fails closed.
	wantStale(t, a, true)
	a.DevicesSynced(t0)
	wantStale(t, a, true) // the policy view has not synced yet
	a.PolicySynced(t0)
	wantStale(t, a, false)
	if d := decide(t, a, staleRequests[1]); !d.Allow {
		t.Fatalf("fresh core denies its own telemetry: %+v", d)
	}
	if _, synced := a.Stale(); !synced.Equal(t0) {
		t.Errorf("Stale() synced = %v, want %v", synced, t0)
	}
	// Never synced → synced is a transition too.
	if e, r := logs.count(enterMsg), logs.count(recoverMsg); e != 1 || r != 1 {
		t.Errorf("start-up: %d enter and %d recover logs, want 1 and 1", e, r)
	}

	// The device view keeps syncing; the policy view stops: the older one
	// sets the deadline.
	clk.Add(29 * time.Second)
	a.DevicesSynced(clk.Now())
	wantStale(t, a, false)
	clk.Add(time.Second - time.Nanosecond)
	wantStale(t, a, false)
	clk.Add(time.Nanosecond) // exactly t0 + 30s
	wantStale(t, a, true)
	if _, synced := a.Stale(); !synced.Equal(t0) {
		t.Errorf("Stale() synced = %v, want the older view's %v", synced, t0)
	}
	// A mark older than the one held changes nothing.
	a.PolicySynced(t0.Add(-time.Minute))
	clk.Add(time.Minute)
	wantStale(t, a, true)
	// The device view alone catching up is not enough.
	a.DevicesSynced(clk.Now())
	wantStale(t, a, true)
	if n := logs.count(enterMsg); n != 2 {
		t.Errorf("entering stale logged %d times, want once more", n-1)
	}
	if n := logs.count(recoverMsg); n != 1 {
		t.Errorf("recovery logged %d times while still stale", n-1)
	}

	// A revocation that arrives while stale is seen after recovery.
	a.UpsertDevice(authz.Device{ID: "temp-2", Fleet: "plant", Status: "revoked", CertNotAfter: clk.Now().Add(time.Hour)})
	a.PolicySynced(clk.Now())
	wantStale(t, a, false)
	if n := logs.count(recoverMsg); n != 2 {
		t.Errorf("recovery logged %d times, want once more", n-1)
	}
	if d := decide(t, a, req(authz.Connect, "temp-2", "")); d.Allow || d.Reason != "device is revoked" {
		t.Errorf("revoked device after recovery: %+v, want deny \"device is revoked\"", d)
	}
	if d := decide(t, a, staleRequests[1]); !d.Allow {
		t.Errorf("active device after recovery: %+v, want allow", d)
	}

	// A second outage is a second transition.
	clk.Add(31 * time.Second)
	wantStale(t, a, true)
	a.DevicesSynced(clk.Now())
	a.PolicySynced(clk.Now())
	wantStale(t, a, false)
	if e, r := logs.count(enterMsg), logs.count(recoverMsg); e != 3 || r != 3 {
		t.Errorf("after start-up and two outages: %d enter and %d recover logs, want 3 and 3", e, r)
	}
}

// TestMaxStalenessUnbounded: 0 is no bound, whatever the clock says and
// whether or not the views ever synced (availability over safety).
func TestMaxStalenessUnbounded(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	a, logs := newStaleCore(t, clk, 0)
	wantStale(t, a, false)
	a.DevicesSynced(clk.Now())
	a.PolicySynced(clk.Now())
	clk.Add(1000 * time.Hour)
	wantStale(t, a, false)
	if n := logs.count(enterMsg); n != 0 {
		t.Errorf("unbounded core logged staleness %d times", n)
	}
	// Not even a clock that starts at the zero time and then jumps two
	// thousand years (the offset from start saturates) makes it stale.
	var zero atomic.Bool
	zero.Store(true)
	jumpy := authz.New(authz.Config{Now: func() time.Time {
		if zero.Load() {
			return time.Time{}
		}
		return time.Now()
	}})
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	jumpy.SetPolicy(p, 1)
	zero.Store(false)
	if d := decide(t, jumpy, req(authz.Connect, "ghost", "")); d.Reason == authz.ReasonStale {
		t.Errorf("unbounded core after a clock jump: %+v", d)
	}
}

// TestMaxStalenessConcurrent crosses the bound and back while many
// goroutines decide and syncs land: no allow after the deadline until a
// sync, and exactly one log line per transition.
func TestMaxStalenessConcurrent(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	clk := testclock.New(t0)
	a, logs := newStaleCore(t, clk, 30*time.Second)
	a.DevicesSynced(t0)
	a.PolicySynced(t0)
	const workers = 32
	for round := 1; round <= 5; round++ {
		clk.Add(31 * time.Second) // stale
		var wg sync.WaitGroup
		var allowed atomic.Int64
		for range workers {
			wg.Go(func() {
				for range 200 {
					d, err := a.Authorize(context.Background(), staleRequests[1])
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allow {
						allowed.Add(1)
					}
				}
				a.Stale()
			})
		}
		wg.Wait()
		if n := allowed.Load(); n != 0 {
			t.Fatalf("round %d: %d allows past the bound", round, n)
		}
		// Syncs and decisions race on the way back.
		for range workers {
			wg.Go(func() {
				a.DevicesSynced(clk.Now())
				a.PolicySynced(clk.Now())
				_, _ = a.Authorize(context.Background(), staleRequests[1])
			})
		}
		wg.Wait()
		if d := decide(t, a, staleRequests[1]); !d.Allow {
			t.Fatalf("round %d: not recovered after the syncs: %+v", round, d)
		}
		if e, r := logs.count(enterMsg), logs.count(recoverMsg); e != round || r != round {
			t.Fatalf("round %d: %d enter and %d recover logs, want %d each", round, e, r, round)
		}
	}
}

// BenchmarkAuthorizeBounded is the cached decision with the staleness bound
// on and the real clock, as serve runs it (compare BenchmarkAuthorize/cached,
// whose core is unbounded on a fixed clock).
func BenchmarkAuthorizeBounded(b *testing.B) {
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		b.Fatal(err)
	}
	a := authz.New(authz.Config{MaxStaleness: time.Hour})
	a.SetPolicy(p, 1)
	a.UpsertDevice(authz.Device{ID: "temp-1", Fleet: "plant", Roles: []string{"telemetry"}, Active: true, Status: "active",
		CertNotAfter: time.Now().Add(time.Hour)})
	a.DevicesSynced(time.Now())
	a.PolicySynced(time.Now())
	r := req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/celsius")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := a.Authorize(ctx, r); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
