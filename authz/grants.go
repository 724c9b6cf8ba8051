package authz

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// grantSet is the outcome of one grant evaluation under one policy
// generation: a device's grants, or a class's grants with the id as a
// symbol (tmpl), or the verdict that the class is evaluated per device.
type grantSet struct {
	policyGen uint64
	grants    []policy.Grant
	tmpl      *policy.Template
	// perDevice: the class's grants cannot stand for its devices.
	perDevice bool
	// timedOutUntil, when set, marks an evaluation that was cut off: the
	// device (or class) is denied until then, then evaluated again.
	timedOutUntil time.Time
}

// len is the number of grants.
func (gs *grantSet) len() int {
	if gs.tmpl != nil {
		return len(gs.tmpl.Grants)
	}
	return len(gs.grants)
}

// action is grant i's action, which never holds the id.
func (gs *grantSet) action(i int) policy.Action {
	if gs.tmpl != nil {
		return gs.tmpl.Grants[i].Action
	}
	return gs.grants[i].Action
}

// filter is grant i's filter for device id, built in buf when it holds
// the id: valid only until buf is reused.
func (gs *grantSet) filter(i int, id string, buf []byte) string {
	if gs.tmpl == nil {
		return gs.grants[i].Filter
	}
	if !gs.tmpl.HasID[i] {
		return gs.tmpl.Grants[i].Filter
	}
	b := gs.tmpl.AppendFilter(buf[:0], i, id)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// limits are grant i's QoS and retain bounds, which never hold the id.
func (gs *grantSet) limits(i int) (maxQoS int, retain bool) {
	if gs.tmpl != nil {
		return gs.tmpl.Grants[i].MaxQoS, gs.tmpl.Grants[i].Retain
	}
	return gs.grants[i].MaxQoS, gs.grants[i].Retain
}

// less orders grants i and j for device id (policy.LessGrant).
func (gs *grantSet) less(i, j int, id string) bool {
	x, y := gs.grant(i, id), gs.grant(j, id)
	return policy.LessGrant(&x, &y)
}

// rule is grant i's rule for device id.
func (gs *grantSet) rule(i int, id string) string {
	if gs.tmpl != nil && gs.tmpl.HasID[i] {
		return strings.ReplaceAll(gs.tmpl.Grants[i].Rule, gs.tmpl.Symbol, id)
	}
	if gs.tmpl != nil {
		return gs.tmpl.Grants[i].Rule
	}
	return gs.grants[i].Rule
}

// grant is grant i for device id.
func (gs *grantSet) grant(i int, id string) policy.Grant {
	if gs.tmpl != nil {
		return gs.tmpl.Fill(i, id)
	}
	return gs.grants[i]
}

// shares reports whether e may take its class's grants under ap.
func shares(ap *activePolicy, e *deviceEntry) bool {
	return e.sharedID && ap.p.Shared()
}

// grants returns the grants deciding for e under the active policy,
// evaluating the policy only when the device's class (or, per device, the
// device) or the policy changed since last time. The evaluation is bounded
// by Config.EvalTimeout; a cut-off one returns errPolicyTimeout, for that
// evaluation and for timeoutRetry after it.
func (a *Authorizer) grants(ctx context.Context, ap *activePolicy, e *deviceEntry) (*grantSet, error) {
	if shares(ap, e) {
		gs, err := a.evaluate(ctx, ap, &e.class.grants, e.id, func(ctx context.Context) (*grantSet, error) {
			t, err := ap.p.ClassGrants(ctx, e.class.input(""))
			if errors.Is(err, policy.ErrNotShared) {
				return &grantSet{policyGen: ap.gen, perDevice: true}, nil
			}
			return &grantSet{policyGen: ap.gen, tmpl: t}, err
		})
		if err != nil || !gs.perDevice {
			return gs, err
		}
	}
	return a.evaluate(ctx, ap, &e.grants, e.id, func(ctx context.Context) (*grantSet, error) {
		gs, err := ap.p.Grants(ctx, e.class.input(e.id))
		return &grantSet{policyGen: ap.gen, grants: gs}, err
	})
}

// evaluate returns the grant set held in slot for ap, or computes it with
// eval in an evaluation slot under Config.EvalTimeout and stores it.
func (a *Authorizer) evaluate(ctx context.Context, ap *activePolicy, slot *atomic.Pointer[grantSet], id string,
	eval func(context.Context) (*grantSet, error)) (*grantSet, error) {
	if gs := slot.Load(); gs != nil && gs.policyGen == ap.gen {
		if gs.timedOutUntil.IsZero() {
			return gs, nil
		}
		if a.cfg.Now().Before(gs.timedOutUntil) {
			return nil, errPolicyTimeout
		}
	}
	select {
	case a.evalSlots <- struct{}{}:
		defer func() { <-a.evalSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ectx, cancel := context.WithTimeout(ctx, a.cfg.EvalTimeout)
	defer cancel()
	began := a.grantsStart()
	gs, err := eval(ectx)
	a.observeGrants(began)
	if fault.Is(err, policy.Timeout) {
		slot.Store(&grantSet{policyGen: ap.gen, timedOutUntil: a.cfg.Now().Add(timeoutRetry)})
		if a.cfg.Log != nil && a.timeoutLogged.Swap(ap.gen) != ap.gen {
			a.cfg.Log.Warn("policy evaluation cut off at its time limit: the device is denied (further timeouts under this version are not logged; see the recent denies)",
				"device", id, "policy_version", ap.version, "eval_timeout", a.cfg.EvalTimeout)
		}
		return nil, errPolicyTimeout
	}
	if err != nil {
		return nil, err
	}
	slot.Store(gs)
	return gs, nil
}

// ready reports whether e's grants under ap are computed (or cut off).
func ready(ap *activePolicy, e *deviceEntry) bool {
	if shares(ap, e) {
		gs := e.class.grants.Load()
		if gs == nil || gs.policyGen != ap.gen {
			return false
		}
		if !gs.perDevice {
			return true
		}
	}
	gs := e.grants.Load()
	return gs != nil && gs.policyGen == ap.gen
}

// WarmGrants computes the grants of every active device that lacks them
// under the active policy, so decisions for those devices never wait on
// the policy engine. After a policy activation it passes over every
// device once; after that only over the devices upserted since the last
// call. Devices of a class share one evaluation (see policy.ClassGrants).
// It returns how many evaluations it made; devices whose grants fail are
// left cold (their requests then return the error, failing closed) and
// the first such error is returned after the rest are warmed; devices
// whose evaluation was cut off are skipped (denied with
// ReasonPolicyTimeout until their requests retry).
func (a *Authorizer) WarmGrants(ctx context.Context) (int, error) {
	ap := a.policy.Load()
	if ap == nil {
		return 0, ErrNoPolicy
	}
	a.mu.Lock()
	todo := a.pending
	a.pending = nil
	full := a.warmedGen != ap.gen
	drops := a.pendingDrops
	a.mu.Unlock()
	if full {
		// Once per policy, before the pass, so the pass shares grants
		// where it can; until then decisions evaluate per device.
		ap.p.Analyze(ctx)
		todo = a.snapshot()
	}
	n, err := a.warm(ctx, ap, todo)
	if ctx.Err() != nil {
		// Cut short: what is left is taken up again next time.
		a.mu.Lock()
		a.pending = append(a.pending, todo...)
		a.mu.Unlock()
		return n, ctx.Err()
	}
	if full {
		a.mu.Lock()
		if a.pendingDrops == drops {
			a.warmedGen = ap.gen
		}
		a.mu.Unlock()
	}
	return n, err
}

// snapshot lists every device.
func (a *Authorizer) snapshot() []*deviceEntry {
	a.mu.RLock()
	defer a.mu.RUnlock()
	all := make([]*deviceEntry, 0, len(a.devices))
	for _, e := range a.devices {
		all = append(all, e)
	}
	return all
}

func (a *Authorizer) warm(ctx context.Context, ap *activePolicy, todo []*deviceEntry) (int, error) {
	n := 0
	var first error
	for _, e := range todo {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if !e.active || ready(ap, e) {
			continue
		}
		_, err := a.grants(ctx, ap, e)
		switch {
		case errors.Is(err, errPolicyTimeout):
		case err != nil:
			first = cmp.Or(first, err)
		default:
			n++
		}
	}
	return n, first
}

// Simulate answers req for dev under policy p, with a throwaway core, so a
// what-if never touches the live cache or decision log nor waits on the
// sharing analysis (one device gains nothing from it), under the same
// evaluation bound as the live core (a cut-off evaluation is the same
// ReasonPolicyTimeout deny). It takes its evaluation slot from the live
// core's, so a burst of simulations cannot take more CPUs than the bound.
// The request's identity and client id are the device's.
func (a *Authorizer) Simulate(ctx context.Context, p *policy.Policy, version int64, dev Device, req Request) (Decision, error) {
	var obs Observer
	if a.cfg.Observer != nil {
		obs = decisionsOnly{a.cfg.Observer}
	}
	sim := New(Config{CacheSize: 1, EvalTimeout: a.cfg.EvalTimeout, Now: a.cfg.Now, Observer: obs})
	sim.evalSlots = a.evalSlots
	sim.SetPolicy(p, version)
	sim.UpsertDevice(dev)
	req.Identity, req.ClientID, req.Dialect = dev.ID, dev.ID, DialectSimulate
	return sim.Authorize(ctx, req)
}

// decisionsOnly passes a simulation's decisions on (as dialect simulate)
// but not its grant evaluations: those metrics describe the live core, and
// any viewer can run simulations.
type decisionsOnly struct{ Observer }

func (decisionsOnly) GrantsComputed(time.Duration) {}
