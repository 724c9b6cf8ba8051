package kick_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

var base = time.Date(2030, time.March, 1, 12, 0, 0, 0, time.UTC)

// broker is a programmable Broker: it fails while failing is set, and
// counts deliveries per device.
type broker struct {
	name    string
	mu      sync.Mutex
	failing error
	calls   map[string]int
	last    kick.Request
	hit     chan string
}

func newBroker(name string) *broker {
	return &broker{name: name, calls: map[string]int{}, hit: make(chan string, 100)}
}

func (b *broker) Name() string { return b.name }

func (b *broker) Disconnect(_ context.Context, r kick.Request) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls[r.Device]++
	b.last = r
	select {
	case b.hit <- r.Device:
	default:
	}
	return b.failing
}

func (b *broker) fail(err error) { b.mu.Lock(); b.failing = err; b.mu.Unlock() }

func (b *broker) count(dev string) int { b.mu.Lock(); defer b.mu.Unlock(); return b.calls[dev] }

func openStore(t *testing.T, backend string) *store.Store {
	t.Helper()
	return openDSN(t, testdb.DSN(t, backend))
}

func openDSN(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.New(context.Background(), store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newService(t *testing.T, st kick.Store, clk *testclock.Clock, bs ...kick.Broker) *kick.Service {
	t.Helper()
	s, err := kick.New(kick.Config{Store: st, Brokers: bs, Now: clk.Now, Poll: time.Hour,
		Retry: kick.Retry{Initial: time.Second, Max: 4 * time.Second, Attempts: 4, Slow: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func statusOf(t *testing.T, st *store.Store, dev string) map[string]store.SessionKick {
	t.Helper()
	ks, err := st.DeviceKicks(context.Background(), dev)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.SessionKick{}
	for _, k := range ks {
		m[k.Broker] = k
	}
	return m
}

func TestService(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			t.Run("DeliverAndRetry", func(t *testing.T) { testDeliverAndRetry(t, backend) })
			t.Run("Replicas", func(t *testing.T) { testReplicas(t, backend) })
		})
	}
}

// One broker works, one fails: the failure is retried with doubling
// backoff, marked failed after the fast retries (and still retried slowly),
// and done once the broker answers.
func testDeliverAndRetry(t *testing.T, backend string) {
	st := openStore(t, backend)
	clk := testclock.New(base)
	ok, bad := newBroker("ok"), newBroker("bad")
	bad.fail(errors.New("DELETE http://bad/api: 503 Service Unavailable"))
	svc := newService(t, st, clk, ok, bad)
	ctx := context.Background()

	if err := svc.Kick(ctx, "d1", "device.revoke"); err != nil {
		t.Fatal(err)
	}
	if n := svc.DeliverDue(ctx); n != 2 {
		t.Fatalf("first round delivered %d, want 2", n)
	}
	if ok.last != (kick.Request{Device: "d1", Reason: "device.revoke", At: base}) {
		t.Errorf("broker got %+v", ok.last)
	}
	s := statusOf(t, st, "d1")
	if s["ok"].Status != store.KickDone || s["ok"].Attempts != 1 {
		t.Errorf("ok broker: %+v", s["ok"])
	}
	steps := []struct {
		wait       time.Duration // clock advance before the round
		delivered  int
		status     store.KickStatus
		attempts   int
		nextIn     time.Duration
		succeedNow bool
	}{
		{0, 0, store.KickPending, 1, time.Second, false},               // backoff 1s not over
		{time.Second, 1, store.KickPending, 2, 2 * time.Second, false}, // attempt 2
		{2 * time.Second, 1, store.KickPending, 3, 4 * time.Second, false},
		{4 * time.Second, 1, store.KickFailed, 4, time.Minute, false}, // gave up fast retries
		{30 * time.Second, 0, store.KickFailed, 4, 30 * time.Second, false},
		{30 * time.Second, 1, store.KickDone, 5, 0, true}, // slow retry succeeds
	}
	for i, c := range steps {
		clk.Add(c.wait)
		if c.succeedNow {
			bad.fail(nil)
		}
		if n := svc.DeliverDue(ctx); n != c.delivered {
			t.Fatalf("step %d: delivered %d, want %d", i, n, c.delivered)
		}
		k := statusOf(t, st, "d1")["bad"]
		if k.Status != c.status || k.Attempts != c.attempts {
			t.Fatalf("step %d: %s after %d attempts, want %s after %d", i, k.Status, k.Attempts, c.status, c.attempts)
		}
		if c.status != store.KickDone {
			if !strings.Contains(k.LastError, "503 Service Unavailable") {
				t.Errorf("step %d: last error %q", i, k.LastError)
			}
			if got := k.NextAttemptAt.Sub(clk.Now()); got != c.nextIn {
				t.Errorf("step %d: next attempt in %s, want %s", i, got, c.nextIn)
			}
		} else if k.LastError != "" || k.DoneAt == nil {
			t.Errorf("step %d: done kick %+v", i, k)
		}
	}
	if ok.count("d1") != 1 || bad.count("d1") != 5 {
		t.Errorf("deliveries ok=%d bad=%d, want 1 and 5", ok.count("d1"), bad.count("d1"))
	}

	// Without brokers, Kick records nothing.
	none := newService(t, st, clk)
	if err := none.Kick(ctx, "d2", "device.suspend"); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, st, "d2"); len(s) != 0 {
		t.Errorf("kick recorded without brokers: %+v", s)
	}
}

// Two replicas on one database: every kick reaches the broker once.
func testReplicas(t *testing.T, backend string) {
	dsn, clk := testdb.DSN(t, backend), testclock.New(base)
	st1 := openDSN(t, dsn)
	st2 := st1
	if backend == "postgres" {
		// Its own connection pool, as a second replica has. (Replicas
		// share PostgreSQL only; on SQLite the workers share one store.)
		st2 = openDSN(t, dsn)
	}
	b := newBroker("rabbitmq")
	a, c := newService(t, st1, clk, b), newService(t, st2, clk, b)
	ctx := context.Background()
	const n = 30
	for i := range n {
		if err := a.Kick(ctx, "dev-"+string(rune('a'+i)), "device.revoke"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, s := range []*kick.Service{a, c, a, c} {
		wg.Add(1)
		go func() { defer wg.Done(); s.DeliverDue(ctx) }()
	}
	wg.Wait()
	for i := range n {
		if got := b.count("dev-" + string(rune('a'+i))); got != 1 {
			t.Errorf("dev-%c delivered %d times", 'a'+i, got)
		}
	}
}

// Run delivers a kick as soon as it is recorded, not at the next poll.
func TestRunWakesOnKick(t *testing.T) {
	st := openStore(t, "sqlite")
	b := newBroker("rabbitmq")
	svc, err := kick.New(kick.Config{Store: st, Brokers: []kick.Broker{b}, Poll: time.Hour, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	time.Sleep(50 * time.Millisecond) // the first (empty) round
	for _, dev := range []string{"d1", "d2"} {
		start := time.Now()
		if err := svc.Kick(ctx, dev, "device.suspend"); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-b.hit:
			if got != dev {
				t.Fatalf("delivered %s, want %s", got, dev)
			}
			t.Logf("%s delivered %s after Kick", dev, time.Since(start))
		case <-time.After(2 * time.Second):
			t.Fatalf("%s not delivered within 2s of Kick", dev)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for statusOf(t, st, "d2")["rabbitmq"].Status != store.KickDone {
		if time.Now().After(deadline) {
			t.Fatalf("d2 not marked done: %+v", statusOf(t, st, "d2"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	st := openStore(t, "sqlite")
	cases := []struct {
		name string
		cfg  kick.Config
	}{
		{"no store", kick.Config{}},
		{"duplicate names", kick.Config{Store: st, Brokers: []kick.Broker{newBroker("x"), newBroker("x")}}},
		{"empty name", kick.Config{Store: st, Brokers: []kick.Broker{newBroker("")}}},
	}
	for _, c := range cases {
		if _, err := kick.New(c.cfg); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
