package events

import (
	"time"
)

// Why echoes: a plugin's stream reaches one replica, but when its decisions
// go through a balancer they may be answered by another replica that has
// not synced the change yet. That stale answer arrives after the event that
// voided the cache and is cached again, with nothing left to drop it. Every
// device and reset event is therefore announced again after each of
// Config.Echo's delays: by the last (the decision core's max_staleness and a
// margin), every replica has either synced the change or gone stale and
// denies, so a stale cached answer outlives its change by at most that
// long. The README still advises one replica per broker, which needs none
// of this.

// maxEchoQueue bounds each delay's queue of devices to announce again;
// past it the queue is replaced by one reset echo.
const maxEchoQueue = 65536

type echoItem struct {
	due    time.Time
	device string // "" for a reset
}

// echoQueue holds one delay's pending echoes, oldest first: the delay is
// constant, so items are queued in due order.
type echoQueue struct {
	delay time.Duration
	items []echoItem
	// resetDue, when set, is a reset echo that replaced an overflowing queue.
	resetDue time.Time
}

// scheduleEcho queues ev's echoes; h.mu is held.
func (h *Hub) scheduleEcho(device string, now time.Time) {
	for i := range h.echoes {
		q := &h.echoes[i]
		if len(q.items) >= maxEchoQueue {
			q.items = q.items[:0]
			q.resetDue = now.Add(q.delay)
			continue
		}
		q.items = append(q.items, echoItem{due: now.Add(q.delay), device: device})
	}
}

// flushEchoes broadcasts the echoes due at now, each device once however
// often it is due, a reset instead of them all when one is due.
func (h *Hub) flushEchoes(now time.Time) {
	h.mu.Lock()
	var reset bool
	due := map[string]struct{}{}
	for i := range h.echoes {
		q := &h.echoes[i]
		if !q.resetDue.IsZero() && !now.Before(q.resetDue) {
			reset, q.resetDue = true, time.Time{}
		}
		n := 0
		for n < len(q.items) && !now.Before(q.items[n].due) {
			if d := q.items[n].device; d == "" {
				reset = true
			} else {
				due[d] = struct{}{}
			}
			n++
		}
		q.items = append(q.items[:0], q.items[n:]...)
	}
	h.mu.Unlock()
	if reset {
		h.broadcast(Reset(), false)
		return
	}
	for d := range due {
		h.broadcast(Device(d), false)
	}
}

// pendingEchoes counts queued echoes (tests).
func (h *Hub) pendingEchoes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, q := range h.echoes {
		n += len(q.items)
		if !q.resetDue.IsZero() {
			n++
		}
	}
	return n
}
