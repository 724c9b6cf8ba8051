package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestSessionKicks runs the kick queue's cases on every backend.
func TestSessionKicks(t *testing.T) {
	onEveryBackend(t, []backendCase{
		{"Lifecycle", testKickLifecycle},
		{"Requeue", testKickRequeue},
		{"Lease", testKickLease},
		{"ClaimRace", testKickClaimRace},
		{"List", testKickList},
	})
}

var brokers = []string{"emqx", "rabbitmq"}

func kickMap(ks []store.SessionKick) map[string]store.SessionKick {
	m := map[string]store.SessionKick{}
	for _, k := range ks {
		m[k.DeviceID+"/"+k.Broker] = k
	}
	return m
}

func testKickLifecycle(t *testing.T, backend string) {
	s, _ := newStore(t, backend)
	ctx := context.Background()
	if err := s.EnqueueKicks(ctx, "", "device.revoke", brokers, base); !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("enqueue without a device: %v, want invalid_argument", err)
	}
	must(0, s.EnqueueKicks(ctx, "d1", "device.revoke", brokers, base))(t)
	ks := must(s.DeviceKicks(ctx, "d1"))(t)
	if len(ks) != 2 || ks[0].Broker != "emqx" || ks[1].Broker != "rabbitmq" {
		t.Fatalf("device kicks = %+v, want emqx and rabbitmq", ks)
	}
	for _, k := range ks {
		if k.Status != store.KickPending || k.Attempts != 0 || k.Generation != 1 || k.Reason != "device.revoke" ||
			!k.NextAttemptAt.Equal(base) || !k.RequestedAt.Equal(base) || k.DoneAt != nil {
			t.Errorf("new kick = %+v", k)
		}
	}

	// Only configured brokers are claimed; a claim counts the attempt.
	got := must(s.ClaimKicks(ctx, []string{"rabbitmq"}, base, 30*time.Second, 10))(t)
	if len(got) != 1 || got[0].Broker != "rabbitmq" || got[0].Attempts != 1 {
		t.Fatalf("claim = %+v, want the rabbitmq kick at attempt 1", got)
	}
	// Leased: not claimable again until the lease ends.
	if again := must(s.ClaimKicks(ctx, brokers, base.Add(time.Second), 30*time.Second, 10))(t); len(again) != 1 || again[0].Broker != "emqx" {
		t.Fatalf("second claim = %+v, want only emqx", again)
	}

	// rabbitmq fails: due again after the backoff, then succeeds.
	if ok := must(s.RetryKick(ctx, "d1", "rabbitmq", 1, "connection refused", base.Add(2*time.Second), false, base.Add(time.Second)))(t); !ok {
		t.Fatal("RetryKick of the current generation reported false")
	}
	if early := must(s.ClaimKicks(ctx, brokers, base.Add(1500*time.Millisecond), 30*time.Second, 10))(t); len(early) != 0 {
		t.Fatalf("claimed before the backoff ended: %+v", early)
	}
	k := kickMap(must(s.DeviceKicks(ctx, "d1"))(t))["d1/rabbitmq"]
	if k.Status != store.KickPending || k.LastError != "connection refused" || !k.NextAttemptAt.Equal(base.Add(2*time.Second)) {
		t.Fatalf("after a failure: %+v", k)
	}
	got = must(s.ClaimKicks(ctx, brokers, base.Add(2*time.Second), 30*time.Second, 10))(t)
	if len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("claim after backoff = %+v, want attempt 2", got)
	}
	if ok := must(s.FinishKick(ctx, "d1", "rabbitmq", 1, base.Add(3*time.Second)))(t); !ok {
		t.Fatal("FinishKick reported false")
	}
	k = kickMap(must(s.DeviceKicks(ctx, "d1"))(t))["d1/rabbitmq"]
	if k.Status != store.KickDone || k.LastError != "" || k.DoneAt == nil || !k.DoneAt.Equal(base.Add(3*time.Second)) || k.Attempts != 2 {
		t.Fatalf("after success: %+v", k)
	}
	// Done kicks are never claimed again.
	if late := must(s.ClaimKicks(ctx, []string{"rabbitmq"}, base.Add(time.Hour), 30*time.Second, 10))(t); len(late) != 0 {
		t.Fatalf("a done kick was claimed: %+v", late)
	}

	// emqx gives up fast retries: failed, visible, still retried later.
	must(s.RetryKick(ctx, "d1", "emqx", 1, "401 Unauthorized", base.Add(10*time.Minute), true, base.Add(time.Second)))(t)
	k = kickMap(must(s.DeviceKicks(ctx, "d1"))(t))["d1/emqx"]
	if k.Status != store.KickFailed || k.LastError != "401 Unauthorized" {
		t.Fatalf("after giving up: %+v", k)
	}
	if got := must(s.ClaimKicks(ctx, brokers, base.Add(10*time.Minute), 30*time.Second, 10))(t); len(got) != 1 || got[0].Broker != "emqx" {
		t.Fatalf("failed kick not retried slowly: %+v", got)
	}
}

// A new request while one is in flight resets the row; the old delivery's
// outcome is ignored and the new one is due at once.
func testKickRequeue(t *testing.T, backend string) {
	s, _ := newStore(t, backend)
	ctx := context.Background()
	must(0, s.EnqueueKicks(ctx, "d1", "device.suspend", []string{"rabbitmq"}, base))(t)
	old := must(s.ClaimKicks(ctx, brokers, base, time.Minute, 10))(t)
	if len(old) != 1 {
		t.Fatalf("claim = %+v", old)
	}
	must(0, s.EnqueueKicks(ctx, "d1", "device.revoke", []string{"rabbitmq"}, base.Add(time.Second)))(t)
	if ok := must(s.FinishKick(ctx, "d1", "rabbitmq", old[0].Generation, base.Add(2*time.Second)))(t); ok {
		t.Error("FinishKick of a replaced generation reported true")
	}
	if ok := must(s.RetryKick(ctx, "d1", "rabbitmq", old[0].Generation, "x", base.Add(time.Hour), true, base.Add(2*time.Second)))(t); ok {
		t.Error("RetryKick of a replaced generation reported true")
	}
	k := must(s.DeviceKicks(ctx, "d1"))(t)[0]
	if k.Status != store.KickPending || k.Generation != 2 || k.Attempts != 0 || k.Reason != "device.revoke" ||
		!k.CreatedAt.Equal(base) || !k.RequestedAt.Equal(base.Add(time.Second)) {
		t.Fatalf("requeued kick = %+v", k)
	}
	// The new request is claimable at once, although the old lease runs on.
	got := must(s.ClaimKicks(ctx, brokers, base.Add(2*time.Second), time.Minute, 10))(t)
	if len(got) != 1 || got[0].Generation != 2 || got[0].Attempts != 1 {
		t.Fatalf("claim of the new request = %+v", got)
	}
}

// A lease that runs out (its replica died) makes the kick claimable again.
func testKickLease(t *testing.T, backend string) {
	s, _ := newStore(t, backend)
	ctx := context.Background()
	must(0, s.EnqueueKicks(ctx, "d1", "device.revoke", []string{"rabbitmq"}, base))(t)
	must(s.ClaimKicks(ctx, brokers, base, 30*time.Second, 10))(t)
	for _, c := range []struct {
		at   time.Duration
		want int
	}{{29 * time.Second, 0}, {30 * time.Second, 1}} {
		got := must(s.ClaimKicks(ctx, brokers, base.Add(c.at), 30*time.Second, 10))(t)
		if len(got) != c.want {
			t.Errorf("claim at +%s: %d kicks, want %d", c.at, len(got), c.want)
		}
		if c.want == 1 && got[0].Attempts != 2 {
			t.Errorf("re-claim attempts = %d, want 2", got[0].Attempts)
		}
	}
}

// Several workers (replicas) claim at once: every kick is handed out once.
func testKickClaimRace(t *testing.T, backend string) {
	s, _ := newStore(t, backend)
	ctx := context.Background()
	const devices = 40
	for i := range devices {
		must(0, s.EnqueueKicks(ctx, "d"+string(rune('A'+i)), "device.revoke", brokers, base))(t)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				got, err := s.ClaimKicks(ctx, brokers, base, time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, k := range got {
					seen[k.DeviceID+"/"+k.Broker]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 2*devices {
		t.Errorf("%d kicks claimed, want %d", len(seen), 2*devices)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s claimed %d times", k, n)
		}
	}
}

func testKickList(t *testing.T, backend string) {
	s, _ := newStore(t, backend)
	ctx := context.Background()
	must(0, s.EnqueueKicks(ctx, "d1", "device.revoke", brokers, base))(t)
	must(0, s.EnqueueKicks(ctx, "d2", "device.suspend", []string{"rabbitmq"}, base.Add(time.Second)))(t)
	must(s.ClaimKicks(ctx, brokers, base.Add(2*time.Second), time.Minute, 10))(t)
	must(s.FinishKick(ctx, "d1", "emqx", 1, base.Add(3*time.Second)))(t)
	must(s.RetryKick(ctx, "d2", "rabbitmq", 1, "boom", base.Add(time.Hour), true, base.Add(4*time.Second)))(t)

	cases := []struct {
		f    store.KickFilter
		want []string
	}{
		{store.KickFilter{}, []string{"d2/rabbitmq", "d1/emqx", "d1/rabbitmq"}},
		{store.KickFilter{Status: store.KickFailed}, []string{"d2/rabbitmq"}},
		{store.KickFilter{Status: store.KickDone}, []string{"d1/emqx"}},
		{store.KickFilter{Status: store.KickPending}, []string{"d1/rabbitmq"}},
		{store.KickFilter{Limit: 1}, []string{"d2/rabbitmq"}},
	}
	for _, c := range cases {
		ks := must(s.ListKicks(ctx, c.f))(t)
		var got []string
		for _, k := range ks {
			got = append(got, k.DeviceID+"/"+k.Broker)
		}
		if len(got) != len(c.want) {
			t.Errorf("ListKicks(%+v) = %v, want %v", c.f, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("ListKicks(%+v) = %v, want %v", c.f, got, c.want)
				break
			}
		}
	}
	if _, err := s.ListKicks(ctx, store.KickFilter{Status: "stuck"}); !fault.Is(err, fault.InvalidArgument) {
		t.Errorf("ListKicks with a bad status: %v, want invalid_argument", err)
	}
	if ks := must(s.DeviceKicks(ctx, "nobody"))(t); len(ks) != 0 {
		t.Errorf("kicks of an unknown device: %+v", ks)
	}
}
