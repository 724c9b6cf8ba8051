package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestNotifyWakesRun: with a one-minute poll, only Notify explains Run
// loading an activation made behind the service's back (as another replica
// does) within a second.
func TestNotifyWakesRun(t *testing.T) {
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DSN: testdb.SQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	core := authz.New(authz.Config{})
	svc, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: core,
		Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.EnsureActive(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = svc.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	v2 := policy.Default()
	v2.Policy += "\n# v2\n"
	pv, err := st.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: v2.Policy, Tests: v2.Tests, CreatedBy: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ActivatePolicyVersion(ctx, pv.Version, "other replica", nil); err != nil {
		t.Fatal(err)
	}
	svc.Notify()
	deadline := time.Now().Add(time.Second)
	for core.PolicyVersion() != pv.Version {
		if time.Now().After(deadline) {
			t.Fatalf("core at version %d a second after Notify, want %d", core.PolicyVersion(), pv.Version)
		}
		time.Sleep(time.Millisecond)
	}
}
