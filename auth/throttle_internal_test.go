package auth

import (
	"fmt"
	"testing"
	"time"
)

// TestThrottleFloodKeepsHeldBackKeys: a flood of distinct one-guess keys
// fills the table; pruning must drop those, not the account already held
// back, or the flood would reset its counter.
func TestThrottleFloodKeepsHeldBackKeys(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := newThrottle(5, time.Second, time.Minute, 15*time.Minute)
	th.maxEntries = 100
	for range 6 {
		if d := th.begin("victim", now); d > 0 {
			t.Fatalf("held back within the free failures: %v", d)
		}
	}
	before := th.begin("victim", now)
	if before <= 0 {
		t.Fatal("victim is not held back after 6 failures")
	}
	for i := range 1000 {
		th.begin(fmt.Sprintf("flood-%d", i), now)
	}
	if d := th.begin("victim", now); d <= 0 {
		t.Fatalf("flood of distinct keys reset the victim's throttle (wait %v, was %v)", d, before)
	}
	if n := len(th.entries); n > th.maxEntries {
		t.Fatalf("table grew to %d entries (cap %d)", n, th.maxEntries)
	}
}
