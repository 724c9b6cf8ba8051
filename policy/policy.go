// Package policy compiles, tests and evaluates Gatehouse topic ACLs written
// in Rego (OPA v1 syntax).
//
// A policy answers one question per device identity: which grants does it
// hold (data.gatehouse.authz.grants)? Matching a topic against grants is
// done in Go by the caller, so Rego runs once per identity and never on the
// per-message hot path. The query is prepared once per compiled version.
package policy

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/topic"
)

// Query is the rule every policy must define.
const Query = "data.gatehouse.authz.grants"

// Codes of policy failures.
const (
	// Invalid: the policy does not compile (or calls a built-in outside the
	// sandbox), or its grants are malformed.
	Invalid fault.Code = "policy_invalid"
	// EvalFailed: the policy compiles but its evaluation fails for this
	// input (conflicting rule outputs, a built-in error in strict mode…).
	EvalFailed fault.Code = "policy_eval_failed"
	// Timeout: the evaluation was cut off at its deadline.
	Timeout fault.Code = "policy_timeout"
)

//go:embed default.rego
var defaultPolicy string

//go:embed default_test.rego
var defaultTests string

// Default returns the policy that ships with Gatehouse and its tests.
func Default() Source { return Source{Policy: defaultPolicy, Tests: defaultTests} }

// Source is a policy version's Rego: the policy module and its test module.
type Source struct {
	Policy string
	Tests  string
}

// Digest identifies a source by content.
func (s Source) Digest() string {
	h := sha256.New()
	h.Write([]byte(s.Policy))
	h.Write([]byte{0})
	h.Write([]byte(s.Tests))
	return hex.EncodeToString(h.Sum(nil))
}

// Problem is one compile error, located in the module it came from.
type Problem struct {
	Module  string `json:"module"` // "policy" or "tests"
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// CompileError lists every problem of a source that does not compile.
type CompileError struct{ Problems []Problem }

func (e *CompileError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = fmt.Sprintf("%s:%d:%d: %s", p.Module, p.Line, p.Column, p.Message)
	}
	return "policy does not compile: " + strings.Join(parts, "; ")
}

// Unwrap lets fault.CodeOf see the error as policy_invalid.
func (e *CompileError) Unwrap() error { return &fault.Error{Code: Invalid, Message: e.Error()} }

// Device is who the grants are computed for.
type Device struct {
	ID      string            `json:"id"`
	Fleet   string            `json:"fleet"`
	Profile string            `json:"profile"`
	Roles   []string          `json:"roles"`
	Labels  map[string]string `json:"labels"`
}

// Action is what a grant allows.
type Action string

// Grantable actions.
const (
	Publish   Action = "publish"
	Subscribe Action = "subscribe"
)

// Grant allows one action on the topics a filter matches.
type Grant struct {
	Action Action
	Filter string
	MaxQoS int
	Retain bool
	Rule   string
}

// Policy is a compiled, prepared policy version. It is immutable and safe
// for concurrent use.
type Policy struct {
	source   Source
	modules  map[string]*ast.Module
	compiler *ast.Compiler
	query    rego.PreparedEvalQuery
	// overruns counts evaluations still running past their deadline (see
	// eval); while there is one, Grants refuses to start another.
	overruns atomic.Int32
	// symbol stands for the id in shared grants (shared.go); empty when
	// the policy is evaluated per device. Set by Analyze before analyzed.
	symbol   string
	analysis sync.Once
	analyzed atomic.Bool
}

const (
	policyFile = "policy.rego"
	testsFile  = "policy_test.rego"
)

// Compile parses and compiles src and prepares its grants query. Every
// error is a *CompileError with line and column.
func Compile(ctx context.Context, src Source) (*Policy, error) {
	if strings.TrimSpace(src.Policy) == "" {
		return nil, &CompileError{Problems: []Problem{{Module: "policy", Line: 1, Column: 1, Message: "policy is empty"}}}
	}
	modules := map[string]*ast.Module{}
	var problems []Problem
	for _, m := range []struct{ name, file, text string }{{"policy", policyFile, src.Policy}, {"tests", testsFile, src.Tests}} {
		if m.text == "" {
			continue
		}
		mod, err := ast.ParseModuleWithOpts(m.file, m.text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			problems = append(problems, problemsOf(err, m.name)...)
			continue
		}
		modules[m.file] = mod
	}
	if len(problems) > 0 {
		return nil, &CompileError{Problems: problems}
	}
	if pkg := modules[policyFile].Package.Path.String(); pkg != "data.gatehouse.authz" {
		return nil, &CompileError{Problems: []Problem{{Module: "policy", Line: modules[policyFile].Package.Location.Row,
			Column: modules[policyFile].Package.Location.Col, Message: "package must be gatehouse.authz, not " + strings.TrimPrefix(pkg, "data.")}}}
	}
	// Built-ins outside the sandbox (network, environment, clock,
	// randomness: sandbox.go) fail here as located problems.
	caps := sandbox()
	compiler := ast.NewCompiler().WithCapabilities(caps).WithStrict(false)
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, &CompileError{Problems: problemsOf(compiler.Errors, "")}
	}
	if !definesGrants(modules[policyFile]) {
		return nil, &CompileError{Problems: []Problem{{Module: "policy", Line: 1, Column: 1, Message: "policy must define the rule grants"}}}
	}
	// The grants query sees the policy module alone. The tests module may
	// declare package gatehouse.authz too (OPA allows it), and a rule it
	// adds there would otherwise grant live: a version's grants are what
	// its policy text says, never something hidden among its tests.
	if _, ok := modules[testsFile]; ok {
		compiler = ast.NewCompiler().WithCapabilities(caps).WithStrict(false)
		compiler.Compile(map[string]*ast.Module{policyFile: modules[policyFile]})
		if compiler.Failed() {
			return nil, &CompileError{Problems: problemsOf(compiler.Errors, "policy")}
		}
	}
	q, err := rego.New(rego.Query(Query), rego.Compiler(compiler), rego.Capabilities(caps)).PrepareForEval(ctx)
	if err != nil {
		return nil, &CompileError{Problems: problemsOf(err, "policy")}
	}
	return &Policy{source: src, modules: modules, compiler: compiler, query: q}, nil
}

func definesGrants(m *ast.Module) bool {
	for _, r := range m.Rules {
		if r.Head.Name.String() == "grants" || (len(r.Head.Reference) > 0 && r.Head.Reference[0].String() == "grants") {
			return true
		}
	}
	return false
}

// problemsOf turns OPA parse/compile errors into located problems.
func problemsOf(err error, module string) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return []Problem{{Module: module, Line: 1, Column: 1, Message: err.Error()}}
	}
	out := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{Module: module, Message: explainRefused(e.Message)}
		if e.Location != nil {
			p.Line, p.Column = e.Location.Row, e.Location.Col
			switch e.Location.File {
			case policyFile:
				p.Module = "policy"
			case testsFile:
				p.Module = "tests"
			}
		}
		out = append(out, p)
	}
	return out
}

// Source returns the policy's Rego.
func (p *Policy) Source() Source { return p.source }

// Grants evaluates the policy for a device. A grant the policy returns in a
// wrong shape is an error, never silently dropped or widened. The caller
// bounds the evaluation with ctx: OPA checks it between steps (and inside
// the generating built-ins) and stops; a cut-off evaluation is a Timeout
// error, a failing one EvalFailed, so neither reads as "no grants".
func (p *Policy) Grants(ctx context.Context, d Device) ([]Grant, error) {
	if d.Roles == nil {
		d.Roles = []string{}
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if p.overruns.Load() > 0 {
		return nil, fault.New(Timeout, "an earlier evaluation of this policy version is still running past its time limit; "+
			"evaluations are cut off until it ends")
	}
	rs, err := p.eval(ctx, map[string]any{"device": d})
	if err != nil {
		return nil, evalError(ctx, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // grants undefined: nothing is granted
	}
	raw, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fault.New(Invalid, "grants must be a set of objects")
	}
	out := make([]Grant, 0, len(raw))
	for _, r := range raw {
		g, err := grantOf(r)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	// Sets come back in a deterministic order already; sort anyway in the
	// total order decisions follow (LessGrant).
	slices.SortFunc(out, func(x, y Grant) int { return CompareGrants(&x, &y) })
	return out, nil
}

// overrunGrace is how long eval waits, once its context is done, for the
// evaluation to stop by itself, which it normally does within microseconds.
const overrunGrace = 50 * time.Millisecond

// eval runs the grants query, returning by the context's end plus
// overrunGrace whatever the evaluation does. OPA checks the context between
// steps and inside its generating built-ins, but not inside every built-in:
// one call of regex.match over a long text, or a deep comparison, runs for
// seconds. Such an evaluation cannot be stopped, so it is left to finish on
// its own and counted in p.overruns meanwhile: the decision does not wait
// for it, and Grants starts no other evaluation of this version (each would
// cost a core) until it ends.
func (p *Policy) eval(ctx context.Context, input map[string]any) (rego.ResultSet, error) {
	type result struct {
		rs  rego.ResultSet
		err error
	}
	done := make(chan result, 1)
	go func() {
		rs, err := p.query.Eval(ctx, rego.EvalInput(input))
		done <- result{rs, err}
	}()
	select {
	case r := <-done:
		return r.rs, r.err
	case <-ctx.Done():
	}
	grace := time.NewTimer(overrunGrace)
	defer grace.Stop()
	select {
	case r := <-done:
		return r.rs, r.err
	case <-grace.C:
	}
	p.overruns.Add(1)
	go func() {
		<-done
		p.overruns.Add(-1)
	}()
	return nil, ctx.Err()
}

// evalError classifies an evaluation error: cut off by the context's
// deadline, or a failure of the policy for this input.
func evalError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("evaluate policy: %w", ctx.Err()) // the caller gave up: not the policy's fault
	}
	if ctx.Err() != nil || topdown.IsCancel(err) {
		return fault.Wrap(err, Timeout, "policy evaluation exceeded its time limit and was cut off")
	}
	return fault.Wrap(err, EvalFailed, "policy evaluation failed: %v", err)
}

func grantOf(v any) (Grant, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Grant{}, fault.New(Invalid, "a grant must be an object")
	}
	g := Grant{MaxQoS: 2, Retain: true}
	for k, val := range m {
		switch k {
		case "action":
			s, _ := val.(string)
			g.Action = Action(s)
		case "filter":
			g.Filter, _ = val.(string)
		case "rule":
			g.Rule, _ = val.(string)
		case "max_qos":
			n, err := asInt(val)
			if err != nil || n < 0 || n > 2 {
				return Grant{}, fault.New(Invalid, "grant max_qos must be 0, 1 or 2")
			}
			g.MaxQoS = n
		case "retain":
			b, ok := val.(bool)
			if !ok {
				return Grant{}, fault.New(Invalid, "grant retain must be a boolean")
			}
			g.Retain = b
		default:
			return Grant{}, fault.New(Invalid, "grant has unknown field %q", k)
		}
	}
	if g.Action != Publish && g.Action != Subscribe {
		return Grant{}, fault.New(Invalid, "grant action must be publish or subscribe, got %q", g.Action)
	}
	if err := topic.ValidateFilter(g.Filter); err != nil {
		return Grant{}, fault.New(Invalid, "grant filter %q: %s", g.Filter, fault.MessageOf(err))
	}
	if _, _, shared := topic.SplitShared(g.Filter); shared {
		return Grant{}, fault.New(Invalid, "grant filter %q must not be a shared subscription", g.Filter)
	}
	return g, nil
}

func asInt(v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case float64:
		if n == float64(int(n)) {
			return int(n), nil
		}
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		return int(i), err
	}
	return 0, errors.New("not an integer")
}

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	Name     string        `json:"name"`
	Passed   bool          `json:"passed"`
	Error    string        `json:"error,omitempty"`
	Line     int           `json:"line"`
	Duration time.Duration `json:"duration_ns"`
}

// TestReport summarises a test run.
type TestReport struct {
	Passed  int          `json:"passed"`
	Failed  int          `json:"failed"`
	Results []TestResult `json:"results"`
}

// OK reports whether at least one test ran and none failed.
func (r TestReport) OK() bool { return r.Failed == 0 && r.Passed > 0 }

// Bounds of a test run: each test rule's evaluation, and the whole run
// (Service applies it). A test cut off fails, so the version cannot be
// activated.
const (
	TestTimeout    = time.Second
	TestRunTimeout = 10 * time.Second
)

// Test runs the policy's test_ rules in-process, like `opa test`, inside
// the same sandbox as the grants. It returns by ctx's end (plus
// overrunGrace) even if a test is stuck in one built-in call that ignores
// the deadline (see eval); that call runs on to its end unobserved.
func (p *Policy) Test(ctx context.Context) (TestReport, error) {
	type result struct {
		rep TestReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := p.test(ctx)
		done <- result{rep, err}
	}()
	select {
	case r := <-done:
		return r.rep, r.err
	case <-ctx.Done():
	}
	grace := time.NewTimer(overrunGrace)
	defer grace.Stop()
	select {
	case r := <-done:
		return r.rep, r.err
	case <-grace.C:
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return TestReport{}, fmt.Errorf("run policy tests: %w", ctx.Err())
	}
	return TestReport{}, fault.New(Timeout, "policy tests exceeded their time limit (%s per test, %s per run) and were cut off", TestTimeout, TestRunTimeout)
}

func (p *Policy) test(ctx context.Context) (TestReport, error) {
	ch, err := tester.NewRunner().SetCompiler(newCompiler()).SetTimeout(TestTimeout).
		SetDefaultRegoVersion(ast.RegoV1).Run(ctx, p.modules)
	if err != nil {
		return TestReport{}, fmt.Errorf("run policy tests: %w", err)
	}
	var rep TestReport
	for r := range ch {
		tr := TestResult{Name: r.Name, Passed: r.Pass(), Duration: r.Duration}
		if r.Location != nil {
			tr.Line = r.Location.Row
		}
		if r.Error != nil {
			tr.Error = r.Error.Error()
			if topdown.IsCancel(r.Error) {
				tr.Error = fmt.Sprintf("test cut off: it exceeded its time limit (%s per test, %s per run)", TestTimeout, TestRunTimeout)
			}
		} else if r.Fail {
			tr.Error = "test failed"
		}
		if tr.Passed {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Results = append(rep.Results, tr)
	}
	sort.Slice(rep.Results, func(i, j int) bool { return rep.Results[i].Line < rep.Results[j].Line })
	return rep, nil
}
