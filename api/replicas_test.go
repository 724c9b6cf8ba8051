package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// replica is a second Gatehouse process on a stack's PostgreSQL database:
// its own store connections, decision core, device sync and policy service.
// Its polls run once a minute, so within a test only a change announcement
// (LISTEN/NOTIFY) can explain it seeing another replica's change.
type replica struct {
	st   *store.Store
	core *authz.Authorizer
	sync *authzsync.Syncer
	pol  *policy.Service
}

const replicaPoll = time.Minute

func newReplica(t testing.TB, dsn string, roles authzsync.Roles) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatalf("replica store: %v", err)
	}
	r := &replica{st: st, core: authz.New(authz.Config{})}
	if r.pol, err = policy.NewService(policy.ServiceConfig{Versions: st, Active: r.core,
		Interval: replicaPoll}); err != nil {
		t.Fatal(err)
	}
	if err := r.pol.EnsureActive(ctx); err != nil {
		t.Fatal(err)
	}
	if r.sync, err = authzsync.New(authzsync.Config{Source: st, Roles: roles, Sink: r.core, Interval: replicaPoll}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sync.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	run := func(f func(context.Context) error) {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := f(ctx); err != nil {
				t.Errorf("replica loop: %v", err)
			}
		}()
	}
	run(r.sync.Run)
	run(r.pol.Run)
	listening := make(chan struct{})
	first := true
	run(func(ctx context.Context) error {
		return st.Listen(ctx, func(topic string) {
			if first {
				// The once-per-connect calls start with the first topic.
				first = false
				close(listening)
			}
			switch topic {
			case store.TopicDevices:
				r.sync.Notify()
			case store.TopicPolicy:
				r.pol.Notify()
			}
		})
	})
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
		_ = st.Close()
	})
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("replica is not listening after 10s")
	}
	return r
}

// allows reports whether core lets device id publish telemetry.
func allows(t testing.TB, core *authz.Authorizer, id string) bool {
	t.Helper()
	d, err := core.Authorize(context.Background(), authz.Request{Action: authz.Publish, Identity: id, ClientID: id,
		Topic: "fleets/default/devices/" + id + "/telemetry/t", QoS: 1})
	if err != nil {
		t.Fatalf("authorize %s: %v", id, err)
	}
	return d.Allow
}

// until polls cond every 100 µs and returns how long it took to hold; it
// fails t after limit.
func until(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Since(start)
}

// TestReplicasLearnAtCommit runs two replicas on one PostgreSQL database and
// checks that replica B applies replica A's changes as soon as they commit:
// an enrollment (B allows the new device), a revocation through A's API (B
// denies within 100 ms of the call returning; the goal of issue 4) and a
// policy activation. B polls only once a minute.
func TestReplicasLearnAtCommit(t *testing.T) {
	var coreA *authz.Authorizer
	var syncA *authzsync.Syncer
	dsn := testdb.Postgres(t)
	a := newStack(t, dsn, withPolicies(&coreA, &syncA))
	b := newReplica(t, dsn, a.ca)

	// Three revocations: the median must meet the goal; each must be far
	// below B's one-minute poll, so only the announcement explains it. The
	// median keeps one scheduler stall on a loaded CI machine from failing
	// the run; BenchmarkReplicaRevokeToDeny reports mean and worst.
	var lags []time.Duration
	for range 3 {
		enr, _, _ := a.enrollOK(t, a.token(t))
		id := enr.DeviceID
		d := until(t, 5*time.Second, "B allows the device A enrolled", func() bool { return allows(t, b.core, id) })
		t.Logf("enrollment on A → allow on B: %v", d)

		a.call(t, "POST", "/api/v1/devices/"+id+"/revoke", a.admin, map[string]any{"reason": "keyCompromise"}, 200, nil)
		if allows(t, coreA, id) {
			t.Fatal("A still allows the device after its revoke call returned")
		}
		d = until(t, 5*time.Second, "B denies the device A revoked", func() bool { return !allows(t, b.core, id) })
		t.Logf("revoke call on A returned → deny on B: %v", d)
		if d > time.Second {
			t.Errorf("revoke → deny on another replica took %v: the announcement did not arrive", d)
		}
		lags = append(lags, d)
	}
	slices.Sort(lags)
	if lags[1] > 100*time.Millisecond {
		t.Errorf("revoke → deny on another replica, median %v of %v (goal ≤ 100 ms)", lags[1], lags)
	}

	v2 := policy.Default()
	v2.Policy += "\n# replica test\n"
	a.call(t, "POST", "/api/v1/policies", a.admin, map[string]any{"policy": v2.Policy, "tests": v2.Tests}, 201, nil)
	a.call(t, "POST", "/api/v1/policies/2/activate", a.admin, nil, 200, nil)
	d := until(t, 5*time.Second, "B follows A's policy activation", func() bool { return b.core.PolicyVersion() == 2 })
	t.Logf("policy activation on A → active on B: %v", d)
}

// BenchmarkReplicaRevokeToDeny measures, on PostgreSQL, the time from a
// revoke API call on replica A returning to replica B's decision core
// denying the device, B learning of it only through the change
// announcement (its poll is a minute). same-replica is the baseline in the
// same run: the time to A's own deny (A refreshes before the call returns).
// Each op is one full cycle: the revoke call plus polling to the deny.
//
//	CI=true go test ./api -run '^$' -bench ReplicaRevokeToDeny -benchtime 100x
func BenchmarkReplicaRevokeToDeny(b *testing.B) {
	var coreA *authz.Authorizer
	var syncA *authzsync.Syncer
	dsn := testdb.Postgres(b)
	a := newStack(b, dsn, withPolicies(&coreA, &syncA))
	rb := newReplica(b, dsn, a.ca)
	for _, c := range []struct {
		name string
		core *authz.Authorizer
	}{{"same-replica", coreA}, {"other-replica", rb.core}} {
		b.Run(c.name, func(b *testing.B) {
			ids := make([]string, b.N)
			for i := range ids {
				enr, _, _ := a.enrollOK(b, a.token(b))
				ids[i] = enr.DeviceID
			}
			if _, err := syncA.Sync(b.Context()); err != nil {
				b.Fatal(err)
			}
			for _, id := range ids {
				until(b, 5*time.Second, "enrolled device allowed", func() bool { return allows(b, c.core, id) })
			}
			var toDeny, worst time.Duration
			b.ResetTimer()
			for _, id := range ids {
				a.call(b, "POST", "/api/v1/devices/"+id+"/revoke", a.admin, map[string]any{"reason": "keyCompromise"}, 200, nil)
				d := until(b, 5*time.Second, "revoked device denied", func() bool { return !allows(b, c.core, id) })
				toDeny += d
				worst = max(worst, d)
			}
			b.StopTimer()
			b.ReportMetric(float64(toDeny.Nanoseconds())/float64(b.N), "return-to-deny-ns")
			b.ReportMetric(float64(worst.Nanoseconds()), "worst-return-to-deny-ns")
			if worst > 100*time.Millisecond {
				b.Errorf("revoke → deny took up to %v (goal ≤ 100 ms)", worst)
			}
		})
	}
}
