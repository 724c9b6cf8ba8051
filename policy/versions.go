package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Versions stores policy versions and activations.
type Versions interface {
	CreatePolicyVersion(ctx context.Context, v store.PolicyVersion, audit *store.AuditEvent) (store.PolicyVersion, error)
	GetPolicyVersion(ctx context.Context, version int64) (store.PolicyVersion, error)
	ListPolicyVersions(ctx context.Context) ([]store.PolicyVersion, error)
	ActivatePolicyVersion(ctx context.Context, version int64, actor string, audit *store.AuditEvent) (store.PolicyActivation, error)
	ActivePolicy(ctx context.Context) (store.PolicyActivation, error)
}

// Activator receives the compiled active policy (the decision core).
type Activator interface {
	SetPolicy(p *Policy, version int64)
	PolicyVersion() int64
}

// Freshness learns when the policy view last matched the database: the
// decision core, which denies as stale past its bound.
type Freshness interface {
	PolicySynced(at time.Time)
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Versions Versions
	Active   Activator
	// Interval between checks for activations made by other replicas; default 2s.
	Interval time.Duration
	// Fresh, when set, is told the start time of every check of the active
	// version that succeeded (EnsureActive, Run's polls and notified checks).
	Fresh Freshness
	// Now is the clock for Fresh; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Service manages versions: create, validate, test, activate, roll back,
// diff; and keeps the decision core on the active version.
type Service struct {
	cfg ServiceConfig
	mu  sync.Mutex
	// compiled caches compiled versions; versions are immutable.
	compiled map[int64]*Policy
	// kick wakes Run before its next tick (Notify).
	wake *loop.Waker
}

// NewService returns a Service.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Versions == nil || cfg.Active == nil {
		return nil, errors.New("policy: Versions and Active are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, compiled: map[int64]*Policy{}, wake: loop.NewWaker()}, nil
}

// Compiled returns a stored version, compiled (cached: versions never change).
func (s *Service) Compiled(ctx context.Context, version int64) (*Policy, store.PolicyVersion, error) {
	v, err := s.cfg.Versions.GetPolicyVersion(ctx, version)
	if err != nil {
		return nil, store.PolicyVersion{}, err
	}
	s.mu.Lock()
	p := s.compiled[version]
	s.mu.Unlock()
	if p != nil {
		return p, v, nil
	}
	p, err = Compile(ctx, Source{Policy: v.Policy, Tests: v.Tests})
	if err != nil {
		return nil, v, err
	}
	s.mu.Lock()
	s.compiled[version] = p
	s.mu.Unlock()
	return p, v, nil
}

// Validate compiles a source without storing it.
func (s *Service) Validate(ctx context.Context, src Source) error {
	_, err := Compile(ctx, src)
	return err
}

// Create stores a new version; a source that does not compile is refused
// with its problems.
func (s *Service) Create(ctx context.Context, actor string, src Source, comment string) (store.PolicyVersion, error) {
	if len(src.Policy) > 256<<10 || len(src.Tests) > 256<<10 {
		return store.PolicyVersion{}, fault.New(fault.InvalidArgument, "policy and tests are limited to 256 KiB each")
	}
	if _, err := Compile(ctx, src); err != nil {
		return store.PolicyVersion{}, err
	}
	v, err := s.cfg.Versions.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: src.Policy, Tests: src.Tests,
		Digest: src.Digest(), Comment: comment, CreatedBy: actor},
		// The store fills in the version number it assigns.
		audit.Event(actor, "policy.create", "policy", "", comment))
	if err != nil {
		return store.PolicyVersion{}, err
	}
	return v, nil
}

// Test runs a stored version's tests.
func (s *Service) Test(ctx context.Context, version int64) (TestReport, error) {
	p, _, err := s.Compiled(ctx, version)
	if err != nil {
		return TestReport{}, err
	}
	return runTests(ctx, p)
}

// runTests runs p's tests within TestRunTimeout.
func runTests(ctx context.Context, p *Policy) (TestReport, error) {
	ctx, cancel := context.WithTimeout(ctx, TestRunTimeout)
	defer cancel()
	return p.Test(ctx)
}

// Code for a version whose tests do not pass.
const TestsFailed fault.Code = "policy_tests_failed"

// Activate makes a version active everywhere: it must compile and its tests
// must pass (at least one test, none failing). Rolling back is activating an
// earlier version; the activation log keeps the history.
func (s *Service) Activate(ctx context.Context, actor string, version int64) (TestReport, error) {
	p, _, err := s.Compiled(ctx, version)
	if err != nil {
		return TestReport{}, err
	}
	rep, err := runTests(ctx, p)
	if err != nil {
		return rep, err
	}
	if !rep.OK() {
		return rep, fault.New(TestsFailed, "version %d cannot be activated: %d tests passed, %d failed (a version needs at least one passing test and no failures)", version, rep.Passed, rep.Failed)
	}
	if _, err := s.cfg.Versions.ActivatePolicyVersion(ctx, version, actor,
		audit.Event(actor, "policy.activate", "policy", strconv.FormatInt(version, 10), "")); err != nil {
		return rep, err
	}
	s.cfg.Active.SetPolicy(p, version)
	return rep, nil
}

// EnsureActive loads the active version into the decision core; on a fresh
// database it first stores and activates the built-in default policy.
func (s *Service) EnsureActive(ctx context.Context) error {
	at := s.cfg.Now()
	act, err := s.cfg.Versions.ActivePolicy(ctx)
	if fault.Is(err, fault.NotFound) {
		v, err := s.Create(ctx, "system", Default(), "built-in default policy")
		if err != nil {
			return err
		}
		if _, err = s.Activate(ctx, "system", v.Version); err != nil {
			return err
		}
		s.synced(at)
		return nil
	}
	if err != nil {
		return err
	}
	err = s.load(ctx, act.Version)
	var ce *CompileError
	if errors.As(err, &ce) {
		// A version stored before the sandbox (or under a newer Gatehouse)
		// no longer compiles. Start anyway with no policy, so every decision
		// is denied while an operator activates a version that compiles
		// through the API: refusing to start would leave no way to fix it.
		s.cfg.Log.Error("the active policy version is refused; every decision is denied until a version that compiles is activated",
			"version", act.Version, "err", err)
		err = nil
	}
	if err != nil {
		return err
	}
	s.synced(at)
	return nil
}

// synced tells Fresh that the policy view matched the database as of at.
func (s *Service) synced(at time.Time) {
	if s.cfg.Fresh != nil {
		s.cfg.Fresh.PolicySynced(at)
	}
}

func (s *Service) load(ctx context.Context, version int64) error {
	if s.cfg.Active.PolicyVersion() == version {
		return nil
	}
	p, _, err := s.Compiled(ctx, version)
	if err != nil {
		return err
	}
	s.cfg.Active.SetPolicy(p, version)
	s.cfg.Log.Info("policy version active", "version", version)
	return nil
}

// Notify asks Run to check the active version now, e.g. when another
// replica announces an activation; it never blocks.
func (s *Service) Notify() { s.wake.Wake() }

// Run follows activations made through other replicas until ctx ends: on
// every tick and on every Notify.
func (s *Service) Run(ctx context.Context) error {
	// The same failure (a database down, an active version the sandbox
	// refuses) is logged once, not on every tick.
	var lastErr string
	loop.Run(ctx, s.cfg.Interval, s.wake.C(), func(ctx context.Context) {
		at := s.cfg.Now()
		act, err := s.cfg.Versions.ActivePolicy(ctx)
		if err == nil {
			err = s.load(ctx, act.Version)
		}
		if err == nil {
			s.synced(at)
		}
		switch {
		case err == nil || ctx.Err() != nil:
			lastErr = ""
		case err.Error() != lastErr:
			// The previous version stays active: a database blip must not
			// leave the broker without a policy.
			lastErr = err.Error()
			s.cfg.Log.Error("policy sync failed", "err", err)
		}
	})
	return nil
}

// Diff returns a unified-style line diff of two stored versions.
func (s *Service) Diff(ctx context.Context, from, to int64) (string, error) {
	a, err := s.cfg.Versions.GetPolicyVersion(ctx, from)
	if err != nil {
		return "", err
	}
	b, err := s.cfg.Versions.GetPolicyVersion(ctx, to)
	if err != nil {
		return "", err
	}
	out := fmt.Sprintf("--- policy v%d\n+++ policy v%d\n", from, to) + LineDiff(a.Policy, b.Policy)
	out += fmt.Sprintf("--- tests v%d\n+++ tests v%d\n", from, to) + LineDiff(a.Tests, b.Tests)
	return out, nil
}
