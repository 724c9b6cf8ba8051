package fault_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// TestKnownHasEveryCode: every Code constant declared in fault.go is
// Known, so a code added there is not counted as "other" by the metrics;
// and what is not declared is not Known.
func TestKnownHasEveryCode(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "fault.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			v := spec.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for _, val := range v.Values {
				lit, ok := val.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("a Code constant that is not a string literal: %#v", val)
				}
				code := fault.Code(lit.Value[1 : len(lit.Value)-1])
				n++
				if !fault.Known(code) {
					t.Errorf("code %q is declared but not Known", code)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("found %d Code constants in fault.go; the test no longer reads them", n)
	}
	for _, c := range []fault.Code{"", "ok", "repeated", "other", "Internal", "token_used "} {
		if fault.Known(c) {
			t.Errorf("%q is Known", c)
		}
	}
}
