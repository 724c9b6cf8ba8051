package policy

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestSandboxClassifiesEveryBuiltin: each built-in of the linked OPA is
// either allowed or refused with a reason, never both, and both lists name
// only real built-ins. On an OPA upgrade that adds built-ins this fails and
// names them; until someone classifies them they are refused (allow-list).
func TestSandboxClassifiesEveryBuiltin(t *testing.T) {
	all := map[string]bool{}
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		all[b.Name] = true
		_, refused := refusedBuiltins[b.Name]
		switch {
		case allowedBuiltins[b.Name] && refused:
			t.Errorf("%s is both allowed and refused", b.Name)
		case !allowedBuiltins[b.Name] && !refused:
			t.Errorf("%s (new in this OPA?) is neither allowed nor refused: read it and classify it in sandbox.go", b.Name)
		}
	}
	for n := range allowedBuiltins {
		if !all[n] {
			t.Errorf("allowed built-in %s does not exist in this OPA", n)
		}
	}
	for n := range refusedBuiltins {
		if !all[n] {
			t.Errorf("refused built-in %s does not exist in this OPA", n)
		}
	}
	if got := len(AllowedBuiltins()); got != len(allowedBuiltins) {
		t.Errorf("sandbox has %d built-ins, allow-list %d", got, len(allowedBuiltins))
	}
}
