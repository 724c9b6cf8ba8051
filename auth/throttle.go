package auth

import (
	"sync"
	"time"
)

// throttle slows down password guessing. Each key (a username, a client
// address) may fail freeFailures times within window; after that every
// further attempt must wait a delay that doubles with each failure, capped at
// maxDelay. A success clears the key. The state is per process: with several
// replicas an attacker gets a few more guesses, never unlimited ones.
type throttle struct {
	mu           sync.Mutex
	entries      map[string]*throttleEntry
	freeFailures int
	baseDelay    time.Duration
	maxDelay     time.Duration
	window       time.Duration
	maxEntries   int
}

type throttleEntry struct {
	failures int
	last     time.Time
	until    time.Time
}

func newThrottle(free int, base, maxDelay, window time.Duration) *throttle {
	return &throttle{entries: map[string]*throttleEntry{}, freeFailures: free, baseDelay: base, maxDelay: maxDelay,
		window: window, maxEntries: 100_000}
}

// waitLocked returns how long key must still wait before its next attempt.
func (t *throttle) waitLocked(key string, now time.Time) time.Duration {
	e := t.entries[key]
	if e == nil || now.Sub(e.last) > t.window {
		return 0
	}
	if d := e.until.Sub(now); d > 0 {
		return d
	}
	return 0
}

// begin starts an attempt for key: it returns how long key must still wait
// or, when it need not, counts the attempt as a failure until succeed clears
// it. Checking and counting under one lock matters: checked first and counted
// after the (slow) password hash, a burst of parallel guesses would all pass
// the check before the first failure was counted.
func (t *throttle) begin(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.waitLocked(key, now); d > 0 {
		return d
	}
	t.failLocked(key, now)
	return 0
}

// failLocked records a failed attempt for key.
func (t *throttle) failLocked(key string, now time.Time) {
	e := t.entries[key]
	if e == nil || now.Sub(e.last) > t.window {
		if len(t.entries) >= t.maxEntries {
			t.prune(now)
		}
		e = &throttleEntry{}
		t.entries[key] = e
	}
	e.failures++
	e.last = now
	if over := e.failures - t.freeFailures; over > 0 {
		d := t.baseDelay << min(over-1, 20)
		if d > t.maxDelay || d <= 0 {
			d = t.maxDelay
		}
		e.until = now.Add(d)
	}
}

// refund takes back the failure begin counted for an attempt that
// succeeded, keeping earlier failures.
func (t *throttle) refund(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil {
		return
	}
	e.failures--
	if e.failures <= 0 {
		delete(t.entries, key)
	} else if e.failures <= t.freeFailures {
		e.until = time.Time{}
	}
}

// succeed clears key.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	delete(t.entries, key)
	t.mu.Unlock()
}

// prune drops entries older than the window. If that frees nothing (a flood
// of distinct keys), it drops the keys that are not being held back yet:
// a flood of one-guess usernames must not reset a real account that is
// under attack. Only if every entry is held back does it drop everything,
// rather than grow without bound.
func (t *throttle) prune(now time.Time) {
	for k, e := range t.entries {
		if now.Sub(e.last) > t.window {
			delete(t.entries, k)
		}
	}
	if len(t.entries) < t.maxEntries {
		return
	}
	for k, e := range t.entries {
		if e.failures <= t.freeFailures {
			delete(t.entries, k)
		}
	}
	if len(t.entries) >= t.maxEntries {
		clear(t.entries)
	}
}
