package authz

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ReasonStale is the reason of every decision made while this replica's
// copy of the database (its device view or its policy view) is older than
// Config.MaxStaleness. A replica cut off from the database cannot know what
// was revoked meanwhile, so past the bound it fails closed.
const ReasonStale = "stale"

// freshness tracks when the two views decisions rest on last matched the
// database. Writers (the sync loops, a few times a second at most) take mu;
// the decision path reads only deadline.
type freshness struct {
	max time.Duration // 0: no bound
	// base is the clock at New: the deadline is kept as an offset from it
	// so that, with the real clock, comparisons use the monotonic reading
	// and a wall-clock step (NTP) neither hides nor fakes staleness.
	base time.Time

	mu       sync.Mutex
	devices  time.Time // last good device sync; zero: never
	policy   time.Time // last good policy sync; zero: never
	staleAt  time.Time // when the current stale period was first seen
	deadline atomic.Int64
	// stale is the state last logged, so each transition is logged once.
	stale atomic.Bool
}

func (f *freshness) init(max time.Duration, now time.Time) {
	f.max, f.base = max, now
	f.recompute()
}

// recompute sets the deadline from the older view; f.mu is held (or the
// freshness is not shared yet). Unbounded, the deadline is never reached;
// bounded, a view never synced is stale at once (fail closed).
func (f *freshness) recompute() {
	switch {
	case f.max <= 0:
		f.deadline.Store(math.MaxInt64)
	case f.devices.IsZero() || f.policy.IsZero():
		f.deadline.Store(math.MinInt64)
	default:
		oldest := f.devices
		if f.policy.Before(oldest) {
			oldest = f.policy
		}
		// Stale from the deadline itself on: isStale compares with >.
		f.deadline.Store(int64(oldest.Add(f.max).Sub(f.base)) - 1)
	}
}

// isStale reports whether a decision at now must be the stale deny: one
// atomic load and a compare. Sub saturates at MaxInt64, which never exceeds
// the unbounded deadline, whatever the clock says.
func (f *freshness) isStale(now time.Time) bool {
	return int64(now.Sub(f.base)) > f.deadline.Load()
}

// DevicesSynced records that the device view matched the database as of at
// (the start of a sync that succeeded). Older marks are ignored.
func (a *Authorizer) DevicesSynced(at time.Time) { a.synced(&a.fresh.devices, at) }

// PolicySynced records that the policy view matched the database as of at.
func (a *Authorizer) PolicySynced(at time.Time) { a.synced(&a.fresh.policy, at) }

func (a *Authorizer) synced(view *time.Time, at time.Time) {
	f := &a.fresh
	f.mu.Lock()
	defer f.mu.Unlock()
	if !at.After(*view) {
		return
	}
	*view = at
	f.recompute()
	if now := a.cfg.Now(); f.stale.Load() && !f.isStale(now) {
		f.stale.Store(false)
		a.logStale(false, now)
	}
}

// Stale reports whether decisions are denied as stale now, and when the
// older of the two views last matched the database (zero: never). It also
// logs the transition into the stale state if no decision did yet, so a
// readiness probe or a watchdog tick makes the log timely without traffic.
func (a *Authorizer) Stale() (bool, time.Time) {
	now := a.cfg.Now()
	stale := a.fresh.isStale(now)
	if stale && !a.fresh.stale.Load() {
		a.enterStale(now)
	}
	f := &a.fresh
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devices.IsZero() || f.policy.IsZero() {
		return stale, time.Time{}
	}
	if f.policy.Before(f.devices) {
		return stale, f.policy
	}
	return stale, f.devices
}

// MaxStaleness is the configured bound; 0 means none.
func (a *Authorizer) MaxStaleness() time.Duration { return a.fresh.max }

// enterStale logs the transition into the stale state once; the recheck
// under the lock keeps a sync that lands meanwhile from leaving the logged
// state wrong.
func (a *Authorizer) enterStale(now time.Time) {
	f := &a.fresh
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stale.Load() || !f.isStale(now) {
		return
	}
	f.stale.Store(true)
	f.staleAt = now
	a.logStale(true, now)
}

// logStale logs one transition; f.mu is held.
func (a *Authorizer) logStale(entering bool, now time.Time) {
	if a.cfg.Log == nil {
		return
	}
	f := &a.fresh
	if entering {
		a.cfg.Log.Error("decision state is stale: every broker request is denied until the database is reachable again",
			"max_staleness", f.max.String(), "devices_synced", f.devices, "policy_synced", f.policy)
		return
	}
	a.cfg.Log.Warn("decision state is fresh again: decisions resume",
		"stale_for", now.Sub(f.staleAt).Round(time.Millisecond).String(), "devices_synced", f.devices, "policy_synced", f.policy)
}
