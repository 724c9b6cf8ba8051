package authz

import (
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/policy"
)

// deviceClass is what the policy sees of a device besides its id: devices
// of one class share one copy of it (a million devices have a few dozen
// fleets, profiles and label sets) and, when the policy allows, one
// evaluation of their grants (policy.ClassGrants).
type deviceClass struct {
	key     string
	fleet   string
	profile string
	roles   []string
	labels  map[string]string
	// refs counts the devices of the class, under Authorizer.mu: a class
	// nobody holds is dropped, so label churn cannot grow the map.
	refs   int
	grants atomic.Pointer[grantSet]
}

// deviceEntry is one device, compact: its class holds the policy inputs.
type deviceEntry struct {
	id         string
	class      *deviceClass
	status     *string // interned: statuses are few
	certSerial string
	notAfter   time.Time
	// certFP is the current certificate's SHA-256 (Device.CertFingerprint).
	certFP [32]byte
	active bool
	// sharedID: the id may take its class's grants (policy.SharedID).
	sharedID bool
	gen      uint64
	// grants are the device's own, when its class's cannot stand for it
	// (a policy that looks at the id, or an id unfit for substitution).
	grants atomic.Pointer[grantSet]
}

// device returns the entry as a Device sharing the class's roles and
// labels: callers inside the package only read them.
func (e *deviceEntry) device() Device {
	c := e.class
	return Device{ID: e.id, Fleet: c.fleet, Profile: c.profile, Active: e.active, Status: *e.status,
		Labels: c.labels, Roles: c.roles, CertSerial: e.certSerial, CertNotAfter: e.notAfter, CertFingerprint: e.certFP}
}

// input is the policy input of the class for a device id.
func (c *deviceClass) input(id string) policy.Device {
	return policy.Device{ID: id, Fleet: c.fleet, Profile: c.profile, Roles: c.roles, Labels: c.labels}
}

// appendClassKey appends to b what makes two devices alike for the
// policy, each part length-prefixed so no two classes share a key. The
// map lookup with string(key) does not allocate: a device of a known
// class costs no key string.
func appendClassKey(b []byte, d *Device) []byte {
	part := func(b []byte, s string) []byte {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		return append(b, s...)
	}
	b = part(b, d.Fleet)
	b = part(b, d.Profile)
	b = strconv.AppendInt(b, int64(len(d.Roles)), 10)
	b = append(b, 'r')
	for _, r := range d.Roles {
		b = part(b, r)
	}
	var stack [8]string
	keys := stack[:0]
	for k := range d.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = strconv.AppendInt(b, int64(len(keys)), 10)
	b = append(b, 'l')
	for _, k := range keys {
		b = part(b, k)
		b = part(b, d.Labels[k])
	}
	return b
}

// UpsertDevice records a device's current state and invalidates its
// cached decisions and grants.
func (a *Authorizer) UpsertDevice(d Device) {
	a.mu.Lock()
	old := a.devices[d.ID]
	// The sync re-reads recent changes on every poll (its overlap), so most
	// upserts repeat the state already held: those keep the entry, its
	// grants and its cached decisions, and are not announced, or every poll
	// would void the brokers' caches.
	if old != nil {
		if od := old.device(); sameDevice(&od, &d) {
			a.mu.Unlock()
			return
		}
	}
	a.keyBuf = appendClassKey(a.keyBuf[:0], &d)
	c := a.classes[string(a.keyBuf)]
	if c == nil {
		key := string(a.keyBuf)
		c = &deviceClass{key: key, fleet: d.Fleet, profile: d.Profile, roles: slices.Clone(d.Roles), labels: maps.Clone(d.Labels)}
		a.classes[key] = c
	}
	c.refs++
	e := &deviceEntry{id: d.ID, class: c, status: a.intern(d.Status), certSerial: d.CertSerial, notAfter: d.CertNotAfter, certFP: d.CertFingerprint,
		active: d.Active, sharedID: policy.SharedID(d.ID), gen: a.gens.Add(1)}
	a.devices[d.ID] = e
	if old != nil {
		a.release(old.class)
	}
	a.addPending(e)
	a.trackExpiry(e)
	a.mu.Unlock()
	if a.cfg.Changes != nil {
		a.cfg.Changes.DeviceChanged(d.ID)
	}
}

// addPending queues e for WarmGrants, under a.mu. A core whose
// WarmGrants does not run (no Run) must not queue without bound: past the
// fleet's size the queue is dropped for one full pass.
func (a *Authorizer) addPending(e *deviceEntry) {
	if len(a.pending) >= max(len(a.devices), 1024) {
		a.pending, a.warmedGen = nil, 0
		a.pendingDrops++
		return
	}
	a.pending = append(a.pending, e)
}

// intern returns the held copy of a status (a handful of values), under
// a.mu.
func (a *Authorizer) intern(s string) *string {
	if held, ok := a.statuses[s]; ok {
		return held
	}
	held := &s
	if len(a.statuses) < 64 { // statuses are few; a flood of new ones is not interned
		a.statuses[s] = held
	}
	return held
}

// release drops a device's hold on its class, under a.mu.
func (a *Authorizer) release(c *deviceClass) {
	if c.refs--; c.refs == 0 {
		delete(a.classes, c.key)
	}
}

// sameDevice reports whether two states of a device decide alike.
func sameDevice(x, y *Device) bool {
	return x.ID == y.ID && x.Fleet == y.Fleet && x.Profile == y.Profile && x.Active == y.Active &&
		x.Status == y.Status && maps.Equal(x.Labels, y.Labels) && slices.Equal(x.Roles, y.Roles) &&
		x.CertSerial == y.CertSerial && x.CertNotAfter.Equal(y.CertNotAfter) && x.CertFingerprint == y.CertFingerprint
}

// RemoveDevice forgets a device; its next request is denied.
func (a *Authorizer) RemoveDevice(id string) {
	a.mu.Lock()
	old, had := a.devices[id]
	if had {
		delete(a.devices, id)
		a.release(old.class)
	}
	a.mu.Unlock()
	if had && a.cfg.Changes != nil {
		a.cfg.Changes.DeviceChanged(id)
	}
}

// Device returns the state the core holds for a device.
func (a *Authorizer) Device(id string) (Device, bool) {
	a.mu.RLock()
	e := a.devices[id]
	a.mu.RUnlock()
	if e == nil {
		return Device{}, false
	}
	d := e.device()
	// The class's roles and labels are shared by its devices: the caller
	// gets its own copies.
	d.Roles, d.Labels = slices.Clone(d.Roles), maps.Clone(d.Labels)
	return d, true
}
