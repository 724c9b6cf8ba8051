package authz_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// TestRunWarmsGrantsAndLogsStale: Run computes the grants of every active
// device at once and again after a policy change, logs entering the stale
// state without any request, and returns when ctx ends.
func TestRunWarmsGrantsAndLogsStale(t *testing.T) {
	clk := testclock.New(now)
	logs := &logCounter{}
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := authz.New(authz.Config{Now: clk.Now, MaxStaleness: time.Minute, Log: slog.New(logs), WarmEvery: 5 * time.Millisecond})
	a.SetPolicy(p, 1)
	for _, id := range []string{"temp-1", "temp-2", "temp-3"} {
		a.UpsertDevice(authz.Device{ID: id, Fleet: "plant", Profile: "sensor", Roles: []string{"telemetry"},
			Active: true, Status: "active", CertNotAfter: now.Add(24 * time.Hour)})
	}
	a.DevicesSynced(clk.Now())
	a.PolicySynced(clk.Now())
	if n := authz.ColdDevices(a); n != 3 {
		t.Fatalf("before Run: %d cold devices, want 3", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("Run never %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("warmed the devices", func() bool { return authz.ColdDevices(a) == 0 })
	a.SetPolicy(p, 2) // every device's grants are now out of date
	waitFor("warmed the devices under the new policy", func() bool { return authz.ColdDevices(a) == 0 })
	clk.Add(2 * time.Minute)
	waitFor("logged the stale state", func() bool { return logs.count(enterMsg) == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}
