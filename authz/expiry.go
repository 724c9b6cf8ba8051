package authz

import (
	"container/heap"
	"math"
	"time"
)

// maxExpiryEvents bounds the device announcements of one expiry pass: past
// it (a fleet enrolled together expires together) one reset is announced,
// not a burst that would overflow a broker's event stream.
const maxExpiryEvents = 256

// expiring is a min-heap of device entries by certificate expiry, so an
// expiry pass looks only at what expired since the last one, not at every
// device. An entry replaced by a newer upsert stays until it surfaces and
// is then dropped.
type expiring []expiryItem

type expiryItem struct {
	notAfter int64 // UnixNano
	e        *deviceEntry
}

func (h expiring) Len() int           { return len(h) }
func (h expiring) Less(i, j int) bool { return h[i].notAfter < h[j].notAfter }
func (h expiring) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiring) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiring) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// add records e's expiry, under Authorizer.mu.
func (h *expiring) add(e *deviceEntry) {
	if !e.notAfter.IsZero() {
		heap.Push(h, expiryItem{notAfter: expiryKey(e.notAfter), e: e})
	}
}

// expiryKey orders expiries; instants UnixNano cannot hold are clamped,
// so the heap's order always agrees with time.Time's.
func expiryKey(t time.Time) int64 {
	switch {
	case t.Year() >= 2262:
		return math.MaxInt64
	case t.Year() <= 1677:
		return math.MinInt64
	}
	return t.UnixNano()
}

// announceExpired tells Changes of every device whose certificate expired
// since the last pass. An expiry changes decisions (a deny from then on)
// without any write to announce it, so a broker caching decisions (the
// Mosquitto plugin) would otherwise keep allowing the device for as long
// as its session lasts. Run calls it every WarmEvery.
func (a *Authorizer) announceExpired(now time.Time) {
	if a.cfg.Changes == nil {
		return
	}
	a.expiryMu.Lock()
	from := a.expiredUpTo
	if !now.After(from) {
		a.expiryMu.Unlock()
		return
	}
	a.expiredUpTo = now
	a.expiryMu.Unlock()
	ids := a.expiredSince(from, now)
	if len(ids) > maxExpiryEvents {
		a.cfg.Changes.Reset()
		return
	}
	for _, id := range ids {
		a.cfg.Changes.DeviceChanged(id)
	}
}

// expiryBatch is how many expiries expiredSince pops per hold of the
// write lock: a fleet expiring at once must not stall decisions.
const expiryBatch = 4096

// expiredSince pops the certificates that expired up to now and returns
// the devices, still current, whose expiry is in (from, now] (authorize
// denies from NotAfter on); past maxExpiryEvents it only counts them.
func (a *Authorizer) expiredSince(from, now time.Time) []string {
	var ids []string
	for more := true; more; {
		a.mu.Lock()
		for i := 0; ; i++ {
			if a.expiry.Len() == 0 || a.expiry[0].e.notAfter.After(now) {
				more = false
				break
			}
			if i == expiryBatch {
				break
			}
			it := heap.Pop(&a.expiry).(expiryItem)
			if a.devices[it.e.id] == it.e && it.e.notAfter.After(from) && len(ids) <= maxExpiryEvents {
				ids = append(ids, it.e.id)
			}
		}
		a.mu.Unlock()
	}
	return ids
}

// trackExpiry records e's expiry for announceExpired, under a.mu. Without
// Changes nothing is announced, so nothing is kept. Entries replaced by a
// newer upsert wait in the heap for their old expiry; when they outnumber
// the devices, the heap is rebuilt from the current ones.
func (a *Authorizer) trackExpiry(e *deviceEntry) {
	if a.cfg.Changes == nil {
		return
	}
	a.expiry.add(e)
	if len(a.expiry) <= 2*len(a.devices)+1024 {
		return
	}
	a.expiry = a.expiry[:0]
	for _, d := range a.devices {
		if !d.notAfter.IsZero() {
			a.expiry = append(a.expiry, expiryItem{notAfter: expiryKey(d.notAfter), e: d})
		}
	}
	heap.Init(&a.expiry)
}
