package metrics_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/metrics"
	"github.com/gatehouse-iot/gatehouse/store"
)

type fakeCore struct {
	stale  bool
	synced time.Time
}

func (fakeCore) CacheStats() (uint64, uint64, int) { return 40, 2, 17 }
func (c fakeCore) Stale() (bool, time.Time)        { return c.stale, c.synced }
func (fakeCore) PolicyVersion() int64              { return 6 }

type fakeCRL struct{ st crl.Status }

func (c fakeCRL) Status() crl.Status { return c.st }

// fakeKicks counts the queries; block makes each wait for its context.
type fakeKicks struct {
	mu      sync.Mutex
	queries int
	err     error
	block   bool
}

func (k *fakeKicks) CountKicks(ctx context.Context) (map[store.KickStatus]int64, error) {
	k.mu.Lock()
	k.queries++
	k.mu.Unlock()
	if k.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return map[store.KickStatus]int64{store.KickFailed: 3, store.KickDone: 9}, k.err
}

func (k *fakeKicks) count() int { k.mu.Lock(); defer k.mu.Unlock(); return k.queries }

// movingClock is a clock a test sets.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *movingClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock(t time.Time) *movingClock    { return &movingClock{t: t} }
func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestSourcesAtScrape(t *testing.T) {
	clk := newClock(now)
	m := metrics.New(metrics.Config{Now: clk.Now})
	m.Watch(metrics.Sources{Core: fakeCore{stale: true, synced: now.Add(-90 * time.Second)},
		CRL:   fakeCRL{crl.Status{Number: 12, ThisUpdate: now.Add(-time.Hour), Entries: 5}},
		Kicks: &fakeKicks{}})
	g := m.Gatherer()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_decision_cache_requests_total", labels("result", "hit"), 40},
		{"gatehouse_decision_cache_requests_total", labels("result", "miss"), 2},
		{"gatehouse_decision_cache_entries", nil, 17},
		{"gatehouse_sync_staleness_seconds", nil, 90},
		{"gatehouse_sync_stale", nil, 1},
		{"gatehouse_policy_active_version", nil, 6},
		{"gatehouse_crl_number", nil, 12},
		{"gatehouse_crl_age_seconds", nil, 3600},
		{"gatehouse_crl_entries", nil, 5},
		{"gatehouse_session_kicks", labels("status", "failed"), 3},
		{"gatehouse_session_kicks", labels("status", "done"), 9},
		{"gatehouse_session_kicks", labels("status", "pending"), 0},
		{"gatehouse_session_kicks", labels("status", "cancelled"), 0},
	} {
		if got := value(t, g, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	series := 0
	for _, mf := range gather(t, g) {
		if mf.GetName() == "gatehouse_session_kicks" {
			series = len(mf.GetMetric())
		}
	}
	if series != 4 {
		t.Errorf("%d kick series, want one per status", series)
	}
}

// TestSourcesBeforeFirstSync: a core that never synced is infinitely
// stale, and no CRL means no CRL series rather than a number 0.
func TestSourcesBeforeFirstSync(t *testing.T) {
	m := metrics.New(metrics.Config{Now: func() time.Time { return now }})
	m.Watch(metrics.Sources{Core: fakeCore{}, CRL: fakeCRL{}})
	g := m.Gatherer()
	if got := value(t, g, "gatehouse_sync_staleness_seconds", nil); !math.IsInf(got, 1) {
		t.Errorf("staleness before any sync = %v, want +Inf", got)
	}
	for _, mf := range gather(t, g) {
		if strings.HasPrefix(mf.GetName(), "gatehouse_crl_") {
			t.Errorf("%s exported with no CRL installed", mf.GetName())
		}
	}
}

// TestKickCountCached: scrapes reuse one count for KickCountEvery (at least
// 5s, whatever is configured), a failure included, so scrapes cannot
// hammer the store; after it the store is asked again.
func TestKickCountCached(t *testing.T) {
	clk := newClock(now)
	kicks := &fakeKicks{err: errors.New("database away")}
	m := metrics.New(metrics.Config{Now: clk.Now, KickCountEvery: time.Millisecond})
	m.Watch(metrics.Sources{Kicks: kicks})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	scrape := func() string {
		t.Helper()
		res, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("a failed kick count made /metrics answer %d", res.StatusCode)
		}
		return string(b)
	}
	for range 20 {
		if body := scrape(); !strings.Contains(body, "go_goroutines") || strings.Contains(body, "gatehouse_session_kicks{") {
			t.Fatal("with the store failing, /metrics must still serve the rest and no kick series")
		}
	}
	clk.Add(4 * time.Second)
	scrape()
	if n := kicks.count(); n != 1 {
		t.Fatalf("%d counts within 4s, want 1", n)
	}
	kicks.mu.Lock()
	kicks.err = nil
	kicks.mu.Unlock()
	clk.Add(time.Second)
	if body := scrape(); !strings.Contains(body, `gatehouse_session_kicks{status="failed"} 3`) {
		t.Fatalf("after 5s the count is not refreshed:\n%s", body)
	}
	if n := kicks.count(); n != 2 {
		t.Fatalf("%d counts after 5s, want 2", n)
	}
}

// TestKickCountBounded: a store that does not answer costs a scrape at most
// KickCountTimeout.
func TestKickCountBounded(t *testing.T) {
	kicks := &fakeKicks{block: true}
	m := metrics.New(metrics.Config{KickCountTimeout: 50 * time.Millisecond})
	m.Watch(metrics.Sources{Kicks: kicks})
	done := make(chan error, 1)
	go func() { _, err := m.Gatherer().Gather(); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Fatalf("gather with a hung store: %v, want the deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a hung store hung the scrape")
	}
}
