package authz_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// Runaway grants for the device "slow" only: a built-in generating 2e6
// numbers (seconds and ~200 MB uncut), or a 9e6-step loop. Every other
// device publishes under ok/.
var runawayPolicies = map[string]string{
	"numbers.range 2e6": `count(numbers.range(1, 2000000)) > 0`,
	"busy loop":         `count([1 | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); i * j == -1]) == 0`,
}

func runawayPolicy(t testing.TB, body string) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(context.Background(), policy.Source{Policy: "package gatehouse.authz\n\n" +
		"grants contains {\"action\": \"publish\", \"filter\": \"ok/#\", \"rule\": \"ok\"} if input.device.id != \"slow\"\n\n" +
		"grants contains {\"action\": \"publish\", \"filter\": \"#\", \"rule\": \"runaway\"} if {\n\tinput.device.id == \"slow\"\n\t" + body + "\n}\n"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunawayPolicyIsATimeoutDeny: on the decision path a runaway grant
// evaluation is cut off at Config.EvalTimeout and answered as a deny with
// reason policy_timeout (a value, not an error, never an allow); the device
// is not evaluated again for a second, then is; other devices are not
// affected; WarmGrants goes on past it; Simulate answers the same deny.
func TestRunawayPolicyIsATimeoutDeny(t *testing.T) {
	for name, body := range runawayPolicies {
		t.Run(name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(now.UnixNano())
			a := authz.New(authz.Config{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
			p := runawayPolicy(t, body)
			a.SetPolicy(p, 7)
			for _, id := range []string{"slow", "fast"} {
				a.UpsertDevice(authz.Device{ID: id, Fleet: "f", Active: true, Status: "active", CertNotAfter: now.Add(time.Hour)})
			}
			ctx := context.Background()
			if n, err := a.WarmGrants(ctx); err != nil || n != 1 {
				t.Fatalf("WarmGrants = %d, %v: want the fast device warmed and the slow one skipped", n, err)
			}
			ask := func(what string, maxTook time.Duration) {
				t.Helper()
				start := time.Now()
				d, err := a.Authorize(ctx, req(authz.Publish, "slow", "ok/x"))
				took := time.Since(start)
				if err != nil || d.Allow || d.Reason != authz.ReasonPolicyTimeout || d.PolicyVersion != 7 {
					t.Fatalf("%s: %+v, %v: want a policy_timeout deny", what, d, err)
				}
				if took > maxTook {
					t.Fatalf("%s took %v, want at most %v", what, took, maxTook)
				}
			}
			// The timed-out evaluation was WarmGrants'; then a request's.
			ask("retry window after warm", 50*time.Millisecond)
			clock.Add(int64(2 * time.Second))
			ask("evaluation after the retry window", time.Second)
			ask("within the retry window", 50*time.Millisecond)
			if d, err := a.Authorize(ctx, req(authz.Publish, "fast", "ok/x")); err != nil || !d.Allow {
				t.Fatalf("fast device: %+v %v", d, err)
			}
			// Concurrent requests racing the retry: every one a timeout deny.
			clock.Add(int64(2 * time.Second))
			var wg sync.WaitGroup
			bad := make(chan string, 32)
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if d, err := a.Authorize(ctx, req(authz.Publish, "slow", "ok/x")); err != nil || d.Allow || d.Reason != authz.ReasonPolicyTimeout {
						bad <- fmt.Sprintf("%+v %v", d, err)
					}
				}()
			}
			wg.Wait()
			close(bad)
			for b := range bad {
				t.Errorf("concurrent request: %s", b)
			}
			if got := a.RecentDenies("slow", 1); len(got) != 1 || got[0].Reason != authz.ReasonPolicyTimeout {
				t.Fatalf("recent denies: %+v", got)
			}
			dev, _ := a.Device("slow")
			start := time.Now()
			d, err := a.Simulate(ctx, p, 7, dev, authz.Request{Action: authz.Publish, Topic: "ok/x"})
			if err != nil || d.Allow || d.Reason != authz.ReasonPolicyTimeout || time.Since(start) > time.Second {
				t.Fatalf("simulate: %+v %v after %v", d, err, time.Since(start))
			}
		})
	}
}

// TestEvalBoundStartsWithItsSlot: an evaluation waiting for a CPU slot (all
// taken by a storm of other cold devices) is not yet running, so its time
// bound has not started: it is answered on its merits once a slot frees,
// not cut off policy_timeout for the wait. A caller that gives up while
// waiting gets its context's error (the edge's explicit deny).
func TestEvalBoundStartsWithItsSlot(t *testing.T) {
	const bound = time.Second
	a := authz.New(authz.Config{EvalTimeout: bound, EvalSlots: 2})
	// "slow"'s grants take ~10 ms of CPU: long enough that OPA notices an
	// expired deadline, far within the bound.
	a.SetPolicy(runawayPolicy(t, `count([1 | some i in numbers.range(1, 20000); i == -1]) == 0`), 1)
	a.UpsertDevice(authz.Device{ID: "slow", Fleet: "f", Active: true, Status: "active", CertNotAfter: time.Now().Add(time.Hour)})
	release := authz.HoldEvalSlots(a)
	type answer struct {
		d   authz.Decision
		err error
	}
	got := make(chan answer, 1)
	go func() {
		d, err := a.Authorize(context.Background(), req(authz.Publish, "slow", "ok/x"))
		got <- answer{d, err}
	}()
	select {
	case r := <-got:
		release()
		t.Fatalf("answered while every slot was taken: %+v %v", r.d, r.err)
	case <-time.After(bound * 3 / 2):
	}
	release()
	if r := <-got; r.err != nil || !r.d.Allow {
		t.Fatalf("after waiting %v for a slot: %+v %v, want an allow (the wait is not evaluation time)", bound*3/2, r.d, r.err)
	}

	a.UpsertDevice(authz.Device{ID: "fast2", Fleet: "f", Active: true, Status: "active", CertNotAfter: time.Now().Add(time.Hour)})
	release = authz.HoldEvalSlots(a)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Its context's error itself, not a policy timeout or a deny: the
	// caller gave up, the policy did not say no.
	if d, err := a.Authorize(ctx, req(authz.Publish, "fast2", "ok/x")); !errors.Is(err, context.DeadlineExceeded) || d.Allow {
		t.Fatalf("caller gave up while waiting for a slot: %+v %v, want context.DeadlineExceeded", d, err)
	}
}

// BenchmarkColdStorm: 64 cold devices per CPU ask at once under a bound of
// 8× one evaluation alone, with the default evaluation slots and with a
// slot per device (the core before it had slots); reports how many were
// cut off policy_timeout. go test ./authz -run '^$' -bench ColdStorm
func BenchmarkColdStorm(b *testing.B) {
	p, err := policy.Compile(context.Background(), policy.Source{Policy: "package gatehouse.authz\n\n" +
		"grants contains {\"action\": \"publish\", \"filter\": \"ok/#\", \"rule\": \"ok\"} if {\n\t" +
		"count([1 | some i in numbers.range(1, 20000); i == -1]) == 0\n}\n"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	alone := time.Duration(1<<63 - 1)
	for i := range 3 {
		a := authz.New(authz.Config{EvalTimeout: 10 * time.Second})
		a.SetPolicy(p, 1)
		id := fmt.Sprintf("probe-%d", i)
		a.UpsertDevice(authz.Device{ID: id, Fleet: "f", Active: true, Status: "active", CertNotAfter: time.Now().Add(time.Hour)})
		start := time.Now()
		if d, err := a.Authorize(ctx, req(authz.Publish, id, "ok/x")); err != nil || !d.Allow {
			b.Fatalf("probe: %+v %v", d, err)
		}
		alone = min(alone, time.Since(start))
	}
	n := 64 * runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		name  string
		slots int
	}{{"default-slots", 0}, {"slot-per-device", n}} {
		b.Run(c.name, func(b *testing.B) {
			var cut int64
			for range b.N {
				a := authz.New(authz.Config{EvalTimeout: 8 * alone, EvalSlots: c.slots})
				a.SetPolicy(p, 1)
				for i := range n {
					a.UpsertDevice(authz.Device{ID: fmt.Sprintf("d%d", i), Fleet: "f", Active: true, Status: "active",
						CertNotAfter: time.Now().Add(time.Hour)})
				}
				var wg sync.WaitGroup
				var cuts atomic.Int64
				start := make(chan struct{})
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						d, err := a.Authorize(ctx, req(authz.Publish, fmt.Sprintf("d%d", i), "ok/x"))
						if err == nil && d.Reason == authz.ReasonPolicyTimeout {
							cuts.Add(1)
						}
					}()
				}
				close(start)
				wg.Wait()
				cut += cuts.Load()
			}
			b.ReportMetric(float64(cut)/float64(b.N), "cut-off/storm")
			b.ReportMetric(float64(n), "devices/storm")
		})
	}
}
