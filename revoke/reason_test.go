package revoke_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/revoke"
)

// FuzzReasonCode: any string is either a known RFC 5280 name, mapped to its
// code, or refused with invalid_argument; never a panic or another code.
func FuzzReasonCode(f *testing.F) {
	for name := range revoke.Reasons {
		f.Add(name)
	}
	for _, s := range []string{"", "KeyCompromise", "keycompromise", "removeFromCRL", "certificateHold", "7", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		code, err := revoke.ReasonCode(name)
		want, known := revoke.Reasons[name]
		switch {
		case name == "":
			if err != nil || code != 0 {
				t.Fatalf("empty reason = %d, %v; want unspecified", code, err)
			}
		case known:
			if err != nil || code != want {
				t.Fatalf("%q = %d, %v; want %d", name, code, err, want)
			}
		default:
			if fault.CodeOf(err) != fault.InvalidArgument {
				t.Fatalf("%q = %d, %v; want invalid_argument", name, code, err)
			}
		}
	})
}
