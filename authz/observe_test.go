package authz_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// TestEveryReasonHasAClass reads authz.go for the reasons the core gives
// (deny's argument, a Decision's Reason, the reason variable) and checks
// that each maps to a class other than "other": a reason added without a
// class would fall into "other" on every dashboard.
func TestEveryReasonHasAClass(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "authz.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	lit := func(e ast.Expr) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if s, err := strconv.Unquote(e.Value); err == nil {
				reasons = append(reasons, s)
			}
		case *ast.BinaryExpr: // "device is " + status
			if l, ok := e.X.(*ast.BasicLit); ok {
				s, _ := strconv.Unquote(l.Value)
				reasons = append(reasons, s+"suspended")
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "deny" && len(n.Args) == 2 {
				lit(n.Args[1])
			}
		case *ast.KeyValueExpr:
			if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Reason" {
				lit(n.Value)
			}
		case *ast.AssignStmt:
			if id, ok := n.Lhs[0].(*ast.Ident); ok && id.Name == "reason" {
				lit(n.Rhs[0])
			}
		}
		return true
	})
	if len(reasons) < 15 {
		t.Fatalf("found only %d reasons in authz.go: %q", len(reasons), reasons)
	}
	for _, r := range append(reasons, authz.ReasonStale, authz.ReasonPolicyTimeout) {
		if c := authz.ReasonClass(r); c == authz.ClassOther || !slices.Contains(authz.ReasonClasses(), c) {
			t.Errorf("reason %q has class %q", r, c)
		}
	}
	if c := authz.ReasonClass("dev-7 asked for fleets/x"); c != authz.ClassOther {
		t.Errorf("an unknown reason is %q, want other", c)
	}
}

// observation is one Decided call.
type observation struct {
	dialect        string
	action         authz.Action
	result, reason string
}

type recorder struct {
	mu     sync.Mutex
	seen   []observation
	timed  int
	grants int
}

func (r *recorder) Decided(dialect string, action authz.Action, result, reason string, dur time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, observation{dialect, action, result, reason})
	if dur >= 0 {
		r.timed++
	}
}

func (r *recorder) GrantsComputed(time.Duration) { r.mu.Lock(); r.grants++; r.mu.Unlock() }

// TestObserverSeesEveryDecision: one Decided per Authorize, with the
// request's dialect and the class of the answer; errors are results of
// their own; grant evaluations and cache lookups are counted.
func TestObserverSeesEveryDecision(t *testing.T) {
	rec := &recorder{}
	a := newAuthorizerWith(t, authz.Config{Now: func() time.Time { return now }, Observer: rec})
	pub := func(dialect, id, topic string) authz.Request {
		r := req(authz.Publish, id, topic)
		r.Dialect = dialect
		return r
	}
	cases := []struct {
		req  authz.Request
		want observation
	}{
		{pub("emqx", "temp-1", "fleets/plant/devices/temp-1/telemetry/c"), observation{"emqx", authz.Publish, authz.ResultAllow, authz.ClassOK}},
		{pub("emqx", "temp-1", "fleets/plant/devices/temp-1/telemetry/c"), observation{"emqx", authz.Publish, authz.ResultAllow, authz.ClassOK}},
		{pub("native", "temp-1", "fleets/plant/devices/temp-2/telemetry/c"), observation{"native", authz.Publish, authz.ResultDeny, authz.ClassNoGrant}},
		{pub("vernemq", "susp-1", "x"), observation{"vernemq", authz.Publish, authz.ResultDeny, authz.ClassNotActive}},
		{pub("", "ghost", "x"), observation{"", authz.Publish, authz.ResultDeny, authz.ClassUnknownDevice}},
	}
	for _, c := range cases {
		if _, err := a.Authorize(context.Background(), c.req); err != nil {
			t.Fatal(err)
		}
	}
	empty := authz.New(authz.Config{Observer: rec}) // no policy: an error
	r := req(authz.Connect, "temp-1", "")
	r.Dialect = "rabbitmq"
	if _, err := empty.Authorize(context.Background(), r); !errors.Is(err, authz.ErrNoPolicy) {
		t.Fatalf("no policy: %v", err)
	}
	want := []observation{}
	for _, c := range cases {
		want = append(want, c.want)
	}
	want = append(want, observation{"rabbitmq", authz.Connect, authz.ResultError, authz.ClassNoPolicy})
	if !slices.Equal(rec.seen, want) {
		t.Fatalf("observed\n%v\nwant\n%v", rec.seen, want)
	}
	if rec.grants != 1 {
		t.Errorf("grant evaluations %d, want 1 (temp-1 once; the rest never reached the policy)", rec.grants)
	}
	hits, misses, entries := a.CacheStats()
	if hits != 1 || misses != 2 || entries != 2 {
		t.Errorf("cache hits %d, misses %d, entries %d; want 1, 2, 2", hits, misses, entries)
	}
}

// TestSimulateIsObservedAsSimulate: a what-if decision is labelled
// simulate, never as the dialect of a live broker, and its grant
// evaluation is not counted as the live core's.
func TestSimulateIsObservedAsSimulate(t *testing.T) {
	rec := &recorder{}
	a := newAuthorizerWith(t, authz.Config{Now: func() time.Time { return now }, Observer: rec})
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	dev := authz.Device{ID: "sim-1", Fleet: "plant", Profile: "sensor", Roles: []string{"telemetry"}, Active: true,
		Status: "active", CertNotAfter: now.Add(time.Hour)}
	d, err := a.Simulate(context.Background(), p, 1, dev, authz.Request{Action: authz.Publish, Dialect: "emqx",
		Topic: "fleets/plant/devices/sim-1/telemetry/x"})
	if err != nil || !d.Allow {
		t.Fatalf("Simulate = %+v, %v; want an allowed publish (its grants evaluated)", d, err)
	}
	if len(rec.seen) != 1 || rec.seen[0].dialect != authz.DialectSimulate {
		t.Fatalf("observed %v, want one simulate decision", rec.seen)
	}
	if rec.grants != 0 {
		t.Errorf("a simulation counted %d grant computations of the live core", rec.grants)
	}
}

// TestLatencyIsSampled: about one decision in authz.LatencySample carries
// a duration; the others a negative one, and every one is reported.
func TestLatencyIsSampled(t *testing.T) {
	rec := &recorder{}
	a := newAuthorizerWith(t, authz.Config{Now: func() time.Time { return now }, Observer: rec})
	const n = 8000
	for range n {
		if _, err := a.Authorize(context.Background(), req(authz.Connect, "temp-1", "")); err != nil {
			t.Fatal(err)
		}
	}
	// Binomial(8000, 1/8): mean 1000, standard deviation 30.
	if len(rec.seen) != n || rec.timed < 700 || rec.timed > 1300 {
		t.Fatalf("%d decisions reported, %d timed; want %d, about %d", len(rec.seen), rec.timed, n, n/authz.LatencySample)
	}
}
