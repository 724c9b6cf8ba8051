// Package loop is the one wake-up loop of the background workers: do the
// work on every tick and whenever something asks for it early.
//
// Every worker (device sync, policy follow, CRL upkeep, session kicks,
// revocation jobs, superseded sweeps, grant warming) had its own copy of the
// same ticker-and-channel select; one copy keeps the details the same for
// all: a wake-up never blocks the caller, several wake-ups before the worker
// gets to them collapse into one, and a cancelled context ends the loop
// before the next round of work.
package loop

import (
	"context"
	"time"
)

// Waker collects wake-up requests for a loop. Its zero value is not usable;
// make one with NewWaker.
type Waker struct{ c chan struct{} }

// NewWaker returns a Waker with no wake-up pending.
func NewWaker() *Waker { return &Waker{c: make(chan struct{}, 1)} }

// Wake asks the loop to run now. It never blocks: a wake-up already pending
// covers this one, since the work it starts sees every change made so far.
func (w *Waker) Wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// C delivers the pending wake-up, for Run or a loop of its own.
func (w *Waker) C() <-chan struct{} { return w.c }

// Run calls fn every interval and on every value from wake (nil: ticks
// only) until ctx ends. The first call waits for the first tick or wake-up;
// a worker that must start at once uses RunNow.
func Run(ctx context.Context, every time.Duration, wake <-chan struct{}, fn func(context.Context)) {
	run(ctx, false, every, wake, fn)
}

// RunNow is Run with a first call of fn straight away.
func RunNow(ctx context.Context, every time.Duration, wake <-chan struct{}, fn func(context.Context)) {
	run(ctx, true, every, wake, fn)
}

func run(ctx context.Context, now bool, every time.Duration, wake <-chan struct{}, fn func(context.Context)) {
	t := time.NewTicker(every)
	defer t.Stop()
	if now && ctx.Err() == nil {
		fn(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		// A tick and ctx's end can be ready together; select picks either.
		if ctx.Err() != nil {
			return
		}
		fn(ctx)
	}
}
