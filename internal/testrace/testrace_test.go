package testrace_test

import (
	"sync/atomic"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testrace"
)

// TestRun: every index is called once, and Run returns after all of them.
func TestRun(t *testing.T) {
	const n = 64
	var calls [n]atomic.Int32
	var total atomic.Int32
	testrace.Run(n, func(i int) {
		calls[i].Add(1)
		total.Add(1)
	})
	if got := total.Load(); got != n {
		t.Fatalf("%d calls returned before Run, want %d", got, n)
	}
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("index %d called %d times", i, c)
		}
	}
}
