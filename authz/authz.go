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
	"runtime"
	"sync"
	"sync/atomic"
	"time"

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
	// Dialect names the edge that asked (hooks' "emqx", "native", …); it
	// only labels the Observer's counts and never changes a decision.
	Dialect string
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
	// Observer, when set, is told of every decision and grant evaluation.
	Observer Observer
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

// errPolicyTimeout is what grants returns for a cut-off evaluation; decide
// turns it into a deny.
var errPolicyTimeout = errors.New("authz: policy evaluation timed out")

// Authorizer makes decisions. It is safe for concurrent use.
type Authorizer struct {
	cfg    Config
	policy atomic.Pointer[activePolicy]
	gens   atomic.Uint64 // source of unique generations for devices and policies
	// mu guards devices, classes, statuses, pending, warmedGen, expiry.
	mu       sync.RWMutex
	devices  map[string]*deviceEntry
	classes  map[string]*deviceClass
	statuses map[string]*string
	keyBuf   []byte // appendClassKey's, under mu
	// pending are the entries upserted since WarmGrants last ran, and
	// warmedGen the policy generation whose every device it has passed
	// over: Run's tick costs what changed, not the fleet's size.
	pending   []*deviceEntry
	warmedGen uint64
	// pendingDrops counts the times pending overflowed (addPending): a
	// full pass that began before one does not count as complete.
	pendingDrops uint64
	expiry       expiring
	cache        *decisionCache
	logged       atomic.Uint64
	denies       *recentDenies
	fresh        freshness

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
	a := &Authorizer{cfg: cfg, devices: make(map[string]*deviceEntry),
		classes: make(map[string]*deviceClass), statuses: make(map[string]*string), cache: newDecisionCache(cfg.CacheSize),
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

// ErrNoPolicy is returned while no policy is active.
var ErrNoPolicy = errors.New("authz: no active policy")

func deny(dev, reason string) Decision { return Decision{Device: dev, Reason: reason} }

// Authorize answers one request.
func (a *Authorizer) Authorize(ctx context.Context, req Request) (Decision, error) {
	start := a.observeStart()
	d, err := a.authorize(ctx, req)
	a.observe(start, &req, &d, err)
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
	switch {
	case !e.active:
		return deny(id, "device is "+*e.status), nil
	case e.notAfter.IsZero():
		return deny(id, "device has no current certificate"), nil
	case !now.Before(e.notAfter):
		return deny(id, "certificate has expired"), nil
	case req.CertSerial != "" && req.CertSerial != e.certSerial:
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
	h := a.cache.hash(&key)
	if d, ok := a.cache.get(h, &key, ap.gen, e.gen); ok {
		return d, nil
	}
	d, err := a.decide(ctx, ap, e, req)
	if err != nil {
		return Decision{}, err
	}
	if d.Reason != ReasonPolicyTimeout { // retried after timeoutRetry, so never cached
		a.cache.put(h, cacheEntry{key: key, decision: d, policyGen: ap.gen, deviceGen: e.gen})
	}
	return d, nil
}

// decide matches a request against the device's grants.
func (a *Authorizer) decide(ctx context.Context, ap *activePolicy, e *deviceEntry, req Request) (Decision, error) {
	id := e.id
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
	gs, err := a.grants(ctx, ap, e)
	if errors.Is(err, errPolicyTimeout) {
		return Decision{Device: id, Reason: ReasonPolicyTimeout, PolicyVersion: ap.version}, nil
	}
	if err != nil {
		return Decision{}, err
	}
	if req.Action == Publish {
		return matchGrants(gs, policy.Publish, id, filter, req, ap.version), nil
	}
	return matchGrants(gs, policy.Subscribe, id, filter, req, ap.version), nil
}

// matchGrants decides on the grants in their total order (policy.LessGrant)
// whatever order they are held in: the least grant that allows the request
// is its rule; with none, the reason is that of the greatest grant that
// covers the topic but not the QoS or retain flag, as a pass over the
// sorted grants would leave it. Shared grants are matched with the id
// filled in on the stack; only a tie between two candidates allocates.
func matchGrants(gs *grantSet, want policy.Action, id, topicOrFilter string, req Request, version int64) Decision {
	var buf [256]byte
	allow, refuse := -1, -1
	for i := range gs.len() {
		if gs.action(i) != want {
			continue
		}
		f := gs.filter(i, id, buf[:])
		var covered bool
		if want == policy.Publish || req.Action == Read {
			// A name (published or delivered): the grant's filter must match it.
			covered = topic.Match(f, topicOrFilter)
		} else {
			// Containment: the filter may only match topics the grant allows.
			covered = topic.Contains(f, topicOrFilter)
		}
		maxQoS, retain := gs.limits(i)
		switch {
		case !covered:
		case req.QoS > maxQoS || (req.Retain && !retain):
			if refuse < 0 || gs.less(refuse, i, id) {
				refuse = i
			}
		case allow < 0 || gs.less(i, allow, id):
			allow = i
		}
	}
	reason := "no grant matches"
	switch {
	case allow >= 0:
		return Decision{Allow: true, Device: id, Reason: "granted", Rule: gs.rule(allow, id), PolicyVersion: version}
	case refuse >= 0:
		if maxQoS, _ := gs.limits(refuse); req.QoS > maxQoS {
			reason = "qos above the grant's maximum"
		} else {
			reason = "retain not allowed by the grant"
		}
	}
	return Decision{Device: id, Reason: reason, PolicyVersion: version}
}
