package testclock

import (
	"sync"
	"testing"
	"time"
)

// TestClock: Add and Set move the clock, and many goroutines moving and
// reading it at once lose no step (run with -race).
func TestClock(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := New(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				c.Add(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(1600*time.Second); !got.Equal(want) {
		t.Fatalf("after 1600 Adds: %v, want %v", got, want)
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("after Set: %v, want %v", got, t0)
	}
	var zero Clock
	if !zero.Now().IsZero() {
		t.Fatal("zero Clock does not read the zero time")
	}
}
