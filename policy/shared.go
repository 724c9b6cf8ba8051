package policy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/topic"
)

// Shared grants. A million devices of a few dozen fleets and profiles ask
// the policy the same question a million times, differing only by id. When
// a policy uses the id only as text spliced into its output (concat, or
// sprintf with plain %s), the grants of every device of a class (same
// fleet, profile, roles and labels) are those of one evaluation with the id
// replaced by a symbol, with the symbol replaced back by the device's id.
//
// Analyze proves that for a policy by partial evaluation with the whole
// input unknown: every place the residual policy touches input.device.id
// must be such a splice whose result flows only into grants. A condition on
// the id (a comparison, startswith, regex, a lookup keyed by it), any other
// built-in applied to it, or the id object as a whole makes the policy
// per-device: evaluated once per device, exactly as before.

// MaxSharedID is the longest id the shared grants stand for; longer ids,
// and ids with characters outside [A-Za-z0-9._:-], are evaluated per device.
const MaxSharedID = 64

// sharedAnalysisTimeout bounds the partial evaluation in Analyze; a policy
// whose analysis takes longer is evaluated per device.
const sharedAnalysisTimeout = 2 * time.Second

// newSymbol returns a random stand-in for the id that occurs nowhere in the
// policy text, so no constant of the policy can be mistaken for the id.
func newSymbol(src Source) string {
	for {
		var b [12]byte
		_, _ = rand.Read(b[:])
		s := "gh" + hex.EncodeToString(b[:])
		if !strings.Contains(src.Policy, s) && !strings.Contains(src.Tests, s) {
			return s
		}
	}
}

// idIsText reports whether the policy uses input.device.id only as text
// spliced into its grants (see above). Any failure of the analysis is a no.
//
// Partial evaluation computes what it can, so a constant runaway (a
// numbers.range over a billion) runs here: like eval, the analysis is
// abandoned at its deadline (the policy is then per-device), so an
// activation never hangs on it.
func idIsText(ctx context.Context, compiler *ast.Compiler, caps *ast.Capabilities) bool {
	ctx, cancel := context.WithTimeout(ctx, sharedAnalysisTimeout)
	defer cancel()
	done := make(chan bool, 1)
	go func() {
		pq, err := rego.New(rego.Query(Query), rego.Compiler(compiler), rego.Capabilities(caps),
			rego.Unknowns([]string{"input"})).Partial(ctx)
		done <- err == nil && residualIsText(pq)
	}()
	select {
	case ok := <-done:
		return ok && ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// Analyze runs the sharing analysis once per policy (later calls wait for
// the first and return its answer) and reports whether the policy's grants
// are shared per class. It is not part of Compile: a policy that is only
// validated, tested or simulated never pays for it. The analysis is bounded
// by sharedAnalysisTimeout, whatever ctx allows.
func (p *Policy) Analyze(ctx context.Context) bool {
	p.analysis.Do(func() {
		if idIsText(context.WithoutCancel(ctx), p.compiler, sandbox()) {
			p.symbol = newSymbol(p.source)
		}
		p.analyzed.Store(true)
	})
	return p.Shared()
}

// Shared reports whether the policy's grants are shared per class: false
// until Analyze has found so. It never waits.
func (p *Policy) Shared() bool { return p.analyzed.Load() && p.symbol != "" }

// SharedID reports whether a device with this id may take its class's
// shared grants: an id that cannot change a topic's levels or wildcards.
func SharedID(id string) bool {
	if id == "" || len(id) > MaxSharedID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ErrNotShared is returned by ClassGrants when the class must be evaluated
// per device: the policy is not shared, or this class's inputs contain the
// symbol, or its grants cannot stand for every id (an error or a filter
// that a long id could push past the topic length limit).
var ErrNotShared = fault.New(EvalFailed, "grants of this class are evaluated per device")

// Template is a class's grants with the id as a symbol.
type Template struct {
	Symbol string
	Grants []Grant
	// HasID marks the grants whose filter or rule contain the symbol.
	HasID []bool
	// parts are each filter split at the symbol (AppendFilter).
	parts [][]string
}

// AppendFilter appends grant i's filter for the device id to dst: the
// decision matches a topic against it without allocating.
func (t *Template) AppendFilter(dst []byte, i int, id string) []byte {
	for j, p := range t.parts[i] {
		if j > 0 {
			dst = append(dst, id...)
		}
		dst = append(dst, p...)
	}
	return dst
}

// Fill returns grant i for the device id.
func (t *Template) Fill(i int, id string) Grant {
	g := t.Grants[i]
	if t.HasID[i] {
		g.Filter = strings.ReplaceAll(g.Filter, t.Symbol, id)
		g.Rule = strings.ReplaceAll(g.Rule, t.Symbol, id)
	}
	return g
}

// ClassGrants evaluates the grants of d's class (d.ID is ignored) with the
// id as the symbol. A Timeout is returned as from Grants; ErrNotShared
// means the caller must use Grants per device.
func (p *Policy) ClassGrants(ctx context.Context, d Device) (*Template, error) {
	if !p.Shared() || classHas(d, p.symbol) {
		return nil, ErrNotShared
	}
	d.ID = p.symbol
	gs, err := p.Grants(ctx, d)
	if fault.Is(err, Timeout) || (err != nil && !fault.Is(err, EvalFailed) && !fault.Is(err, Invalid)) {
		return nil, err
	}
	if err != nil {
		// The error may hold for the symbol and not for a real id (a
		// conflict between a spliced and a constant value): per device.
		return nil, ErrNotShared
	}
	t := &Template{Symbol: p.symbol, Grants: gs, HasID: make([]bool, len(gs)), parts: make([][]string, len(gs))}
	for i, g := range gs {
		n := strings.Count(g.Filter, p.symbol)
		if len(g.Filter)+n*(MaxSharedID-len(p.symbol)) > topic.MaxLen {
			return nil, ErrNotShared
		}
		t.HasID[i] = n > 0 || strings.Contains(g.Rule, p.symbol)
		t.parts[i] = strings.Split(g.Filter, p.symbol)
	}
	return t, nil
}

func classHas(d Device, s string) bool {
	if strings.Contains(d.Fleet, s) || strings.Contains(d.Profile, s) {
		return true
	}
	if slices.ContainsFunc(d.Roles, func(r string) bool { return strings.Contains(r, s) }) {
		return true
	}
	for k, v := range d.Labels {
		if strings.Contains(k, s) || strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// LessGrant is the total order of grants that decisions follow: the first
// grant in it that allows a request is the decision's rule, whatever order
// the grants were computed in.
func LessGrant(x, y *Grant) bool { return CompareGrants(x, y) < 0 }

// CompareGrants compares grants by action, filter, rule, max QoS, retain.
func CompareGrants(x, y *Grant) int {
	if c := strings.Compare(string(x.Action), string(y.Action)); c != 0 {
		return c
	}
	if c := strings.Compare(x.Filter, y.Filter); c != 0 {
		return c
	}
	if c := strings.Compare(x.Rule, y.Rule); c != 0 {
		return c
	}
	if x.MaxQoS != y.MaxQoS {
		return x.MaxQoS - y.MaxQoS
	}
	switch {
	case x.Retain == y.Retain:
		return 0
	case !x.Retain:
		return -1
	}
	return 1
}
