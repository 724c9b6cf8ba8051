// Package authz is the decision core behind every broker dialect: who is
// this client, may it connect, publish this topic, subscribe this filter?
//
// A deny is a value; an error is a malfunction that the edge turns into the
// broker's explicit deny. Nothing here touches the database or the network:
// device state lives in memory (fed by the control plane on every change),
// the active policy is prepared once, and decisions are cached under
// generation counters so a policy activation or a device status change
// invalidates them at once, without scanning.
package authz

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/topic"
)

// Action is what the client asks to do.
type Action string

// Actions a broker asks about.
const (
	Connect   Action = "connect"
	Publish   Action = "publish"
	Subscribe Action = "subscribe"
	// Read is the delivery of a PUBLISH to a subscriber (Mosquitto checks
	// every delivered message): Topic is the message's topic name, decided
	// like a subscription to exactly that name. The retain flag of a
	// delivered message is not the device's to choose, so Retain is ignored.
	Read Action = "read"
)

// Request is one broker question, already decoded from its dialect.
type Request struct {
	Action Action
	// Identity is the device id a TLS-terminating broker vouches for: the
	// common name of a client certificate it verified against the Gatehouse
	// CA. Devices have no passwords; without it every request is denied.
	Identity string
	ClientID string
	Username string
	// CertSerial, when set, is the serial of the certificate the client
	// presented (native endpoint): it must be the device's current one, so a
	// revoked or superseded certificate is refused even if it still verifies.
	CertSerial string
	// Topic is the PUBLISH topic name or the SUBSCRIBE filter.
	Topic  string
	QoS    int
	Retain bool
}

// Decision is the answer. Reason is for logs and operators, never for the
// broker or the client.
type Decision struct {
	Allow         bool
	Reason        string
	Device        string
	Rule          string
	PolicyVersion int64
}

// Device is what a decision needs to know about a device; the control plane
// upserts it on every change.
type Device struct {
	ID      string
	Fleet   string
	Profile string
	Active  bool
	Status  string
	Labels  map[string]string
	// Roles are those of the device's current certificate.
	Roles []string
	// CertSerial and CertNotAfter describe the current certificate; a zero
	// CertNotAfter means the device holds no usable certificate.
	CertSerial   string
	CertNotAfter time.Time
	// CertFingerprint is the SHA-256 of the current certificate's DER:
	// a broker hook that is shown exactly these bytes knows the device
	// without parsing or verifying them (Gatehouse issued and recorded
	// them; expiry and status are still decided here).
	CertFingerprint [32]byte
}

// Changes learns of every change to the state decisions rest on, so a
// broker that caches decisions can drop those that changed (the event
// stream). It is called after the new state is in place, never under a
// lock of the core, and must not block.
type Changes interface {
	// DeviceChanged: a device was added, removed, or its state differs.
	DeviceChanged(id string)
	// Reset: something that may change many decisions (the active policy).
	Reset()
}

// Config configures an Authorizer.
type Config struct {
	// Changes, when set, is told of device and policy changes.
	Changes Changes
	// CacheSize bounds the decision cache; default 1<<20 entries.
	CacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives the sampled decision log, the stale transitions and
	// Run's failures to compute grants; nil disables all three.
	Log *slog.Logger
	// LogEvery logs one decision in N (denies included); 0 logs none.
	LogEvery uint64
	// RecentDenies is how many of the last denies RecentDenies keeps;
	// default 256.
	RecentDenies int
	// MaxStaleness bounds how old the device and policy views may be (see
	// DevicesSynced, PolicySynced): past it every decision is a deny with
	// reason ReasonStale until a sync succeeds again. Bounded, the core is
	// stale until both views have synced once. 0 means no bound: a replica
	// cut off from the database keeps deciding on what it last knew
	// (availability over safety).
	MaxStaleness time.Duration
	// EvalTimeout bounds one evaluation of a device's grants; an evaluation
	// cut off is a deny with ReasonPolicyTimeout. Default 100ms.
	EvalTimeout time.Duration
	// EvalSlots is how many grant evaluations may run at once; an
	// evaluation's EvalTimeout starts when it gets a slot. Default
	// GOMAXPROCS: more only share the CPUs and pass the bound together.
	EvalSlots int
	// WarmEvery is how often Run computes missing grants and checks
	// staleness; default 1s.
	WarmEvery time.Duration
}

// DefaultEvalTimeout is Config.EvalTimeout's default: grants are computed
// once per device and policy version, and the default policy takes well
// under a millisecond, so 100ms only stops a runaway policy.
const DefaultEvalTimeout = 100 * time.Millisecond

// ReasonPolicyTimeout is the reason of a deny whose grant evaluation was
// cut off at Config.EvalTimeout.
const ReasonPolicyTimeout = "policy_timeout"

// timeoutRetry is how long a device whose grants timed out is denied
// without evaluating again: a slow policy then costs at most one cut-off
// evaluation per device per interval, not one per broker request.
const timeoutRetry = time.Second

type activePolicy struct {
	p       *policy.Policy
	version int64
	gen     uint64
}

type deviceEntry struct {
	dev    Device
	gen    uint64
	grants atomic.Pointer[grantSet]
}

type grantSet struct {
	policyGen uint64
	grants    []policy.Grant
	// timedOutUntil, when set, marks an evaluation that was cut off: the
	// device is denied until then, then evaluated again.
	timedOutUntil time.Time
}

// errPolicyTimeout is what grants returns for a cut-off evaluation; decide
// turns it into a deny.
var errPolicyTimeout = errors.New("authz: policy evaluation timed out")

// Authorizer makes decisions. It is safe for concurrent use.
type Authorizer struct {
	cfg     Config
	policy  atomic.Pointer[activePolicy]
	gens    atomic.Uint64 // source of unique generations for devices and policies
	mu      sync.RWMutex
	devices map[string]*deviceEntry
	cache   *decisionCache
	logged  atomic.Uint64
	denies  *recentDenies
	fresh   freshness

	// timeoutLogged is the policy generation whose first cut-off evaluation
	// was logged: one line per policy version, not one per device.
	timeoutLogged atomic.Uint64
	// evalSlots admits at most GOMAXPROCS grant evaluations at once, and
	// an evaluation's time bound starts only when it holds a slot: in a
	// CONNECT storm after a policy activation, thousands of cold devices
	// would otherwise share the CPUs and each take longer than the bound
	// in wall-clock time, so a good policy would be cut off (a deny) for
	// want of a CPU rather than for running away.
	evalSlots chan struct{}

	// expiryMu guards expiredUpTo: certificates that expired up to that
	// instant have been announced (announceExpired).
	expiryMu    sync.Mutex
	expiredUpTo time.Time
}

// New returns an Authorizer with no policy: until SetPolicy, every request
// is denied.
func New(cfg Config) *Authorizer {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EvalTimeout <= 0 {
		cfg.EvalTimeout = DefaultEvalTimeout
	}
	if cfg.EvalSlots <= 0 {
		cfg.EvalSlots = max(runtime.GOMAXPROCS(0), 1)
	}
	if cfg.WarmEvery <= 0 {
		cfg.WarmEvery = time.Second
	}
	a := &Authorizer{cfg: cfg, devices: make(map[string]*deviceEntry), cache: newDecisionCache(cfg.CacheSize),
		denies: newRecentDenies(cfg.RecentDenies), evalSlots: make(chan struct{}, cfg.EvalSlots)}
	a.fresh.init(cfg.MaxStaleness, cfg.Now())
	a.expiredUpTo = cfg.Now()
	return a
}

// SetPolicy activates a compiled policy version; every cached decision made
// under the previous one becomes invalid at once.
func (a *Authorizer) SetPolicy(p *policy.Policy, version int64) {
	a.policy.Store(&activePolicy{p: p, version: version, gen: a.gens.Add(1)})
	if a.cfg.Changes != nil {
		a.cfg.Changes.Reset()
	}
}

// PolicyVersion returns the active policy version, 0 when none.
func (a *Authorizer) PolicyVersion() int64 {
	if ap := a.policy.Load(); ap != nil {
		return ap.version
	}
	return 0
}

// UpsertDevice records a device's current state and invalidates its
// cached decisions and grants.
func (a *Authorizer) UpsertDevice(d Device) {
	e := &deviceEntry{dev: d, gen: a.gens.Add(1)}
	a.mu.Lock()
	old := a.devices[d.ID]
	a.devices[d.ID] = e
	a.mu.Unlock()
	// The sync re-reads recent changes on every poll (its overlap), so most
	// upserts repeat the state already held: only a real change is
	// announced, or every poll would void the brokers' caches.
	if a.cfg.Changes != nil && (old == nil || !sameDevice(&old.dev, &d)) {
		a.cfg.Changes.DeviceChanged(d.ID)
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
	_, had := a.devices[id]
	delete(a.devices, id)
	a.mu.Unlock()
	if had && a.cfg.Changes != nil {
		a.cfg.Changes.DeviceChanged(id)
	}
}

// ErrNoPolicy is returned while no policy is active.
var ErrNoPolicy = errors.New("authz: no active policy")

func deny(dev, reason string) Decision { return Decision{Device: dev, Reason: reason} }

// Authorize answers one request.
func (a *Authorizer) Authorize(ctx context.Context, req Request) (Decision, error) {
	d, err := a.authorize(ctx, req)
	if !d.Allow || err != nil {
		a.recordDeny(req, d, err)
	}
	if a.cfg.LogEvery > 0 && a.cfg.Log != nil && a.logged.Add(1)%a.cfg.LogEvery == 0 {
		a.cfg.Log.Info("decision", "device", req.Identity, "client_id", req.ClientID, "action", string(req.Action),
			"topic", req.Topic, "qos", req.QoS, "retain", req.Retain, "allow", d.Allow, "reason", d.Reason,
			"rule", d.Rule, "policy_version", d.PolicyVersion, "error", err)
	}
	return d, err
}

func (a *Authorizer) authorize(ctx context.Context, req Request) (Decision, error) {
	ap := a.policy.Load()
	if ap == nil {
		return Decision{}, ErrNoPolicy
	}
	id := req.Identity
	// One clock read serves the staleness bound and the certificate expiry.
	now := a.cfg.Now()
	if a.fresh.isStale(now) {
		if !a.fresh.stale.Load() {
			a.enterStale(now)
		}
		return deny(id, ReasonStale), nil
	}
	if id == "" {
		return deny("", "no certificate identity"), nil
	}
	// The MQTT client id is bound to the certificate: a client presenting
	// dev1's certificate may not act as dev2.
	if req.ClientID != id && (req.Action == Connect || req.ClientID != "") {
		return deny(id, "client id does not match the certificate"), nil
	}
	a.mu.RLock()
	e := a.devices[id]
	a.mu.RUnlock()
	if e == nil {
		return deny(id, "unknown device"), nil
	}
	dev := &e.dev
	switch {
	case !dev.Active:
		return deny(id, "device is "+dev.Status), nil
	case dev.CertNotAfter.IsZero():
		return deny(id, "device has no current certificate"), nil
	case !now.Before(dev.CertNotAfter):
		return deny(id, "certificate has expired"), nil
	case req.CertSerial != "" && req.CertSerial != dev.CertSerial:
		return deny(id, "certificate is not the device's current certificate"), nil
	}
	switch req.Action {
	case Connect:
		return Decision{Allow: true, Device: id, Reason: "device active", PolicyVersion: ap.version}, nil
	case Publish, Subscribe:
	case Read:
		// A delivered message's retain flag is not the device's choice:
		// decided, and cached, as if unset.
		req.Retain = false
	default:
		return deny(id, "unknown action"), nil
	}
	if req.QoS < 0 || req.QoS > 2 {
		return deny(id, "invalid qos"), nil
	}
	key := cacheKey{device: id, action: req.Action, topic: req.Topic, qos: uint8(req.QoS), retain: req.Retain}
	if d, ok := a.cache.get(key, ap.gen, e.gen); ok {
		return d, nil
	}
	d, err := a.decide(ctx, ap, e, req)
	if err != nil {
		return Decision{}, err
	}
	if d.Reason != ReasonPolicyTimeout { // retried after timeoutRetry, so never cached
		a.cache.put(key, cacheEntry{decision: d, policyGen: ap.gen, deviceGen: e.gen})
	}
	return d, nil
}

// decide matches a request against the device's grants.
func (a *Authorizer) decide(ctx context.Context, ap *activePolicy, e *deviceEntry, req Request) (Decision, error) {
	id := e.dev.ID
	filter := req.Topic
	if req.Action == Publish || req.Action == Read {
		if err := topic.ValidateName(req.Topic); err != nil {
			return deny(id, "invalid topic name"), nil
		}
	} else {
		if err := topic.ValidateFilter(req.Topic); err != nil {
			return deny(id, "invalid topic filter"), nil
		}
		// A shared subscription is authorised on the filter it shares.
		_, filter, _ = topic.SplitShared(req.Topic)
	}
	grants, err := a.grants(ctx, ap, e)
	if errors.Is(err, errPolicyTimeout) {
		return Decision{Device: id, Reason: ReasonPolicyTimeout, PolicyVersion: ap.version}, nil
	}
	if err != nil {
		return Decision{}, err
	}
	want := policy.Publish
	if req.Action != Publish {
		want = policy.Subscribe
	}
	reason := "no grant matches"
	for _, g := range grants {
		if g.Action != want {
			continue
		}
		var covered bool
		if want == policy.Publish || req.Action == Read {
			// A name (published or delivered): the grant's filter must match it.
			covered = topic.Match(g.Filter, filter)
		} else {
			// Containment: the filter may only match topics the grant allows.
			covered = topic.Contains(g.Filter, filter)
		}
		if !covered {
			continue
		}
		if req.QoS > g.MaxQoS {
			reason = "qos above the grant's maximum"
			continue
		}
		if req.Retain && !g.Retain {
			reason = "retain not allowed by the grant"
			continue
		}
		return Decision{Allow: true, Device: id, Reason: "granted", Rule: g.Rule, PolicyVersion: ap.version}, nil
	}
	return Decision{Device: id, Reason: reason, PolicyVersion: ap.version}, nil
}

// grants returns the device's grants under the active policy, evaluating
// the policy only when the device or the policy changed since last time.
// The evaluation is bounded by Config.EvalTimeout; a cut-off one returns
// errPolicyTimeout, for that evaluation and for timeoutRetry after it.
func (a *Authorizer) grants(ctx context.Context, ap *activePolicy, e *deviceEntry) ([]policy.Grant, error) {
	if gs := e.grants.Load(); gs != nil && gs.policyGen == ap.gen {
		if gs.timedOutUntil.IsZero() {
			return gs.grants, nil
		}
		if a.cfg.Now().Before(gs.timedOutUntil) {
			return nil, errPolicyTimeout
		}
	}
	d := e.dev
	select {
	case a.evalSlots <- struct{}{}:
		defer func() { <-a.evalSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ectx, cancel := context.WithTimeout(ctx, a.cfg.EvalTimeout)
	defer cancel()
	gs, err := ap.p.Grants(ectx, policy.Device{ID: d.ID, Fleet: d.Fleet, Profile: d.Profile, Roles: d.Roles, Labels: d.Labels})
	if fault.Is(err, policy.Timeout) {
		e.grants.Store(&grantSet{policyGen: ap.gen, timedOutUntil: a.cfg.Now().Add(timeoutRetry)})
		if a.cfg.Log != nil && a.timeoutLogged.Swap(ap.gen) != ap.gen {
			a.cfg.Log.Warn("policy evaluation cut off at its time limit: the device is denied (further timeouts under this version are not logged; see the recent denies)",
				"device", d.ID, "policy_version", ap.version, "eval_timeout", a.cfg.EvalTimeout)
		}
		return nil, errPolicyTimeout
	}
	if err != nil {
		return nil, err
	}
	e.grants.Store(&grantSet{policyGen: ap.gen, grants: gs})
	return gs, nil
}

// Device returns the state the core holds for a device.
func (a *Authorizer) Device(id string) (Device, bool) {
	a.mu.RLock()
	e := a.devices[id]
	a.mu.RUnlock()
	if e == nil {
		return Device{}, false
	}
	return e.dev, true
}

// Simulate answers req for dev under policy p, with a throwaway core, so a
// what-if never touches the live cache or decision log, under the same
// evaluation bound as the live core (a cut-off evaluation is the same
// ReasonPolicyTimeout deny). The request's identity and client id are the
// device's.
func (a *Authorizer) Simulate(ctx context.Context, p *policy.Policy, version int64, dev Device, req Request) (Decision, error) {
	sim := New(Config{CacheSize: 64, EvalTimeout: a.cfg.EvalTimeout, Now: a.cfg.Now})
	sim.SetPolicy(p, version)
	sim.UpsertDevice(dev)
	req.Identity, req.ClientID = dev.ID, dev.ID
	return sim.Authorize(ctx, req)
}

// WarmGrants computes the grants of every device that lacks them under the
// active policy, so decisions for those devices never wait on the policy
// engine. It returns how many it computed; devices whose grants fail are
// left cold (their requests then return the error, failing closed), and
// devices whose evaluation was cut off are skipped (denied with
// ReasonPolicyTimeout until their requests retry).
func (a *Authorizer) WarmGrants(ctx context.Context) (int, error) {
	ap := a.policy.Load()
	if ap == nil {
		return 0, ErrNoPolicy
	}
	a.mu.RLock()
	cold := make([]*deviceEntry, 0)
	for _, e := range a.devices {
		if gs := e.grants.Load(); (gs == nil || gs.policyGen != ap.gen) && e.dev.Active {
			cold = append(cold, e)
		}
	}
	a.mu.RUnlock()
	n := 0
	for _, e := range cold {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		_, err := a.grants(ctx, ap, e)
		if errors.Is(err, errPolicyTimeout) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
