package policy

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// idUse classifies a residual term by how it depends on input.device.id.
// The order matters: combining takes the maximum.
type idUse int

const (
	noID      idUse = iota // does not depend on the id
	idText                 // a string: the id spliced between constant text
	idInValue              // a collection holding idText values (not as keys)
	idUnsafe               // anything else: the policy is per-device
)

// residualIsText checks the partial evaluation of the grants query with the
// input unknown (see shared.go): the id may be spliced into strings (concat
// over an array, sprintf with a %s-only format), and those strings may be
// bound to variables, placed in arrays, sets or object values and returned
// as rule values or set members. Any other use, of the id or of input or
// input.device as a whole, is unsafe. Support rules that carry the id are
// followed to a fixpoint: a reference to one is as tainted as its value.
func residualIsText(pq *rego.PartialQueries) bool {
	rc := &residualCheck{tainted: map[string]idUse{}}
	for changed := true; changed; {
		rc.changed = false
		for _, m := range pq.Support {
			for _, r := range m.Rules {
				if !rc.rule(m, r) {
					return false
				}
			}
		}
		changed = rc.changed
	}
	for _, q := range pq.Queries {
		b := rc.newBody(true)
		if !b.exprs(q) {
			return false
		}
	}
	return true
}

type residualCheck struct {
	// tainted maps the path of a support rule to what its value holds.
	tainted map[string]idUse
	changed bool
}

// rule checks one support rule (and its else chain) and records its taint.
func (rc *residualCheck) rule(m *ast.Module, r *ast.Rule) bool {
	for ; r != nil; r = r.Else {
		b := rc.newBody(false)
		if !b.exprs(r.Body) {
			return false
		}
		h := r.Head
		for _, t := range h.Ref()[1:] {
			if b.term(t) != noID {
				return false
			}
		}
		var use idUse
		for _, a := range h.Args {
			if b.term(a) != noID {
				return false
			}
		}
		switch {
		case h.RuleKind() == ast.MultiValue:
			use = holding(b.term(h.Key))
		case h.Key != nil:
			if b.term(h.Key) != noID {
				return false
			}
			use = holding(b.term(h.Value))
		case h.Value != nil:
			use = b.term(h.Value)
		}
		if use == idUnsafe || (use != noID && len(h.Args) > 0) {
			return false
		}
		if use != noID {
			path := m.Package.Path.Extend(h.Ref().GroundPrefix()).String()
			if use > rc.tainted[path] {
				rc.tainted[path], rc.changed = use, true
			}
		}
	}
	return true
}

// holding is the use of a collection whose member or value has use u.
func holding(u idUse) idUse {
	if u == idText {
		return idInValue
	}
	return u
}

// body tracks one rule body or query: which variables are bound, and to
// what.
type body struct {
	rc    *residualCheck
	query bool
	vars  map[ast.Var]idUse
	bound map[ast.Var]bool
}

func (rc *residualCheck) newBody(query bool) *body {
	return &body{rc: rc, query: query, vars: map[ast.Var]idUse{}, bound: map[ast.Var]bool{}}
}

func (b *body) exprs(es ast.Body) bool {
	for _, e := range es {
		if !b.expr(e) {
			return false
		}
		ast.WalkVars(e, func(v ast.Var) bool {
			b.bound[v] = true
			return false
		})
	}
	return true
}

func (b *body) expr(e *ast.Expr) bool {
	if e.Negated || len(e.With) > 0 {
		return !b.mentions(e)
	}
	switch ts := e.Terms.(type) {
	case *ast.Term:
		// A term alone is a condition in a rule; in the query, the answer.
		u := b.term(ts)
		return u == noID || (b.query && u != idUnsafe)
	case []*ast.Term:
		return b.call(ts)
	}
	return !b.mentions(e)
}

// call checks a call expression: a binding of a fresh variable (x = t,
// concat/sprintf with an output variable) carries taint; everything else
// must not touch the id.
func (b *body) call(ts []*ast.Term) bool {
	op := ts[0].String()
	args := ts[1:]
	if (op == "eq" || op == "assign") && len(args) == 2 {
		for _, p := range [][2]*ast.Term{{args[0], args[1]}, {args[1], args[0]}} {
			if v, ok := p[0].Value.(ast.Var); ok && !b.bound[v] {
				u := b.term(p[1])
				b.vars[v] = u
				return u != idUnsafe
			}
		}
	}
	if (op == "concat" || op == "sprintf") && len(args) == 3 {
		if v, ok := args[2].Value.(ast.Var); ok && !b.bound[v] {
			u := b.term(ast.CallTerm(ts[0], args[0], args[1]))
			b.vars[v] = u
			return u != idUnsafe
		}
	}
	for _, a := range args {
		if b.term(a) != noID {
			return false
		}
	}
	return true
}

// term classifies a term.
func (b *body) term(t *ast.Term) idUse {
	if t == nil {
		return noID
	}
	switch v := t.Value.(type) {
	case ast.Var:
		return b.vars[v]
	case ast.Ref:
		return b.ref(v)
	case ast.Call:
		return b.callTerm(v)
	case *ast.Array:
		return b.collection(v.Len(), v.Elem, nil)
	case ast.Set:
		s := v.Slice()
		return b.collection(len(s), func(i int) *ast.Term { return s[i] }, nil)
	case ast.Object:
		keys := v.Keys()
		return b.collection(len(keys), func(i int) *ast.Term { return v.Get(keys[i]) }, keys)
	case *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension:
		if b.mentions(t) {
			return idUnsafe
		}
	}
	return noID
}

// collection combines elements: a collection holding the id is idInValue;
// an object key holding it is unsafe (it decides which keys collide).
func (b *body) collection(n int, elem func(int) *ast.Term, keys []*ast.Term) idUse {
	use := noID
	for i := range n {
		if keys != nil && b.term(keys[i]) != noID {
			return idUnsafe
		}
		switch u := b.term(elem(i)); u {
		case idUnsafe:
			return idUnsafe
		case idText, idInValue:
			use = idInValue
		}
	}
	return use
}

// callTerm allows concat(delimiter, [strings]) and sprintf(format, [args])
// with a constant %s-only format; any other call must not touch the id.
func (b *body) callTerm(c ast.Call) idUse {
	args := c[1:]
	use := noID
	for _, a := range args {
		use = max(use, b.term(a))
	}
	if use == noID {
		return noID
	}
	op := c[0].String()
	if len(args) != 2 || b.term(args[0]) != noID || (op != "concat" && op != "sprintf") {
		return idUnsafe
	}
	if op == "sprintf" && !plainFormat(args[0]) {
		return idUnsafe
	}
	arr, ok := args[1].Value.(*ast.Array)
	if !ok {
		return idUnsafe
	}
	for i := range arr.Len() {
		if b.term(arr.Elem(i)) > idText {
			return idUnsafe
		}
	}
	return idText
}

// plainFormat reports whether a sprintf format is a constant whose only
// verbs are %s, %v (for a string the same) and %%: no width or flag that
// would make the output depend on the id's length or content.
func plainFormat(t *ast.Term) bool {
	s, ok := t.Value.(ast.String)
	if !ok {
		return false
	}
	f := string(s)
	for i := strings.IndexByte(f, '%'); i >= 0; i = strings.IndexByte(f, '%') {
		if i+1 >= len(f) || !strings.ContainsRune("sv%", rune(f[i+1])) {
			return false
		}
		f = f[i+2:]
	}
	return true
}

// ref classifies a reference: input.device.id is the id; input and
// input.device (or a dynamic step through them) may reach it and are
// unsafe; a support rule carries its recorded taint.
func (b *body) ref(r ast.Ref) idUse {
	for _, t := range r[1:] {
		if b.term(t) != noID {
			return idUnsafe
		}
	}
	switch h := r[0].Value.(type) {
	case ast.Var:
		if h.Equal(ast.InputRootDocument.Value) {
			return inputRef(r[1:])
		}
		if h.Equal(ast.DefaultRootDocument.Value) {
			return b.dataRef(r)
		}
		if b.vars[h] != noID && len(r) > 1 {
			return idUnsafe // a step into a value holding the id
		}
		return b.vars[h]
	}
	return noID
}

func inputRef(path ast.Ref) idUse {
	want := []string{"device", "id"}
	for i, t := range path {
		if i == len(want) {
			return idUnsafe // a step into the id
		}
		switch s := t.Value.(type) {
		case ast.String:
			if string(s) != want[i] {
				return noID
			}
		case ast.Var, ast.Ref, ast.Call:
			return idUnsafe
		default:
			return noID
		}
	}
	if len(path) == len(want) {
		return idText
	}
	return idUnsafe // input or input.device as a whole
}

// dataRef: a reference to a tainted support rule has its taint; a step
// into it, or a reference to a package holding one, is unsafe.
func (b *body) dataRef(r ast.Ref) idUse {
	s := r.GroundPrefix().String()
	if len(r.GroundPrefix()) != len(r) {
		s = r.String()
	}
	for path, use := range b.rc.tainted {
		switch {
		case s == path:
			return use
		case strings.HasPrefix(s, path+".") || strings.HasPrefix(s, path+"["),
			strings.HasPrefix(path, s+".") || strings.HasPrefix(path, s+"["):
			return idUnsafe
		}
	}
	return noID
}

// mentions reports whether x touches the id or a value holding it at all.
func (b *body) mentions(x any) bool {
	found := false
	ast.WalkTerms(x, func(t *ast.Term) bool {
		if found {
			return true
		}
		switch v := t.Value.(type) {
		case ast.Var:
			found = b.vars[v] != noID
		case ast.Ref:
			found = b.ref(v) != noID
			return true
		}
		return false
	})
	return found
}
