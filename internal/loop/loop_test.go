package loop_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/loop"
)

// hour keeps ticks out of the tests that are about wake-ups.
const hour = time.Hour

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		run   func(context.Context, time.Duration, <-chan struct{}, func(context.Context))
		every time.Duration
		wakes int
		want  int // calls at least
	}{
		{"wait first: no call without a tick or wake", loop.Run, hour, 0, 0},
		{"run now: one call at once", loop.RunNow, hour, 0, 1},
		{"wake-up runs it", loop.Run, hour, 1, 1},
		{"ticks run it", loop.Run, time.Millisecond, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			w := loop.NewWaker()
			calls := make(chan struct{}, 100)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.run(ctx, tc.every, w.C(), func(context.Context) { calls <- struct{}{} })
			}()
			for range tc.wakes {
				w.Wake()
			}
			for i := range tc.want {
				select {
				case <-calls:
				case <-time.After(5 * time.Second):
					t.Fatalf("call %d never came", i+1)
				}
			}
			select {
			case <-calls:
				if tc.every == hour {
					t.Fatal("a call nothing asked for")
				}
			case <-time.After(20 * time.Millisecond):
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after ctx ended")
			}
		})
	}
}

// Wake never blocks, from any number of goroutines, and wake-ups that pile
// up while the loop works collapse into one more round.
func TestWakeCoalesces(t *testing.T) {
	w := loop.NewWaker()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				w.Wake()
			}
		}()
	}
	wg.Wait() // would hang if Wake blocked
	var n atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.Run(ctx, hour, w.C(), func(context.Context) { n.Add(1) })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	if got := n.Load(); got != 1 {
		t.Fatalf("6400 wake-ups before the loop ran: %d calls, want 1", got)
	}
}

// A cancelled context stops the loop before the next call, even with a
// wake-up pending.
func TestRunStopsOnCancel(t *testing.T) {
	w := loop.NewWaker()
	w.Wake()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	loop.RunNow(ctx, time.Millisecond, w.C(), func(context.Context) { called = true })
	if called {
		t.Fatal("fn ran after ctx ended")
	}
}
