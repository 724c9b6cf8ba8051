package store_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/store"
)

// TestCountKicks: the queue counted by status matches what was done to it,
// on every backend; an empty queue counts nothing.
func TestCountKicks(t *testing.T) {
	onEveryBackend(t, []backendCase{{"ByStatus", testCountKicks}})
}

func testCountKicks(t *testing.T, backend string) {
	s, _ := newStore(t, backend)
	ctx := context.Background()
	if got := must(s.CountKicks(ctx))(t); len(got) != 0 {
		t.Fatalf("empty queue counts %v", got)
	}
	must(0, s.EnqueueKicks(ctx, "d1", "device.revoke", brokers, base))(t)
	must(0, s.EnqueueKicks(ctx, "d2", "device.suspend", brokers, base))(t)
	must(0, s.EnqueueKicks(ctx, "d3", "device.suspend", []string{"emqx"}, base))(t)
	must(s.ClaimKicks(ctx, brokers, base.Add(time.Second), time.Minute, 10))(t)
	must(s.FinishKick(ctx, "d1", "emqx", 1, base.Add(2*time.Second)))(t)
	must(s.RetryKick(ctx, "d1", "rabbitmq", 1, "boom", base.Add(time.Hour), true, base.Add(2*time.Second)))(t)
	must(s.CancelKicks(ctx, "d2", base.Add(3*time.Second)))(t)
	want := map[store.KickStatus]int64{store.KickDone: 1, store.KickFailed: 1, store.KickCancelled: 2, store.KickPending: 1}
	if got := must(s.CountKicks(ctx))(t); !maps.Equal(got, want) {
		t.Fatalf("CountKicks = %v, want %v", got, want)
	}
}
