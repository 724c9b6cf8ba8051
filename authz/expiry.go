package authz

import "time"

// maxExpiryEvents bounds the device announcements of one expiry pass: past
// it (a fleet enrolled together expires together) one reset is announced,
// not a burst that would overflow a broker's event stream.
const maxExpiryEvents = 256

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
	var ids []string
	a.mu.RLock()
	for id, e := range a.devices {
		// authorize denies from NotAfter on: expired in (from, now].
		if na := e.dev.CertNotAfter; !na.IsZero() && na.After(from) && !na.After(now) {
			ids = append(ids, id)
		}
	}
	a.mu.RUnlock()
	if len(ids) > maxExpiryEvents {
		a.cfg.Changes.Reset()
		return
	}
	for _, id := range ids {
		a.cfg.Changes.DeviceChanged(id)
	}
}
