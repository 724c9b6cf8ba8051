package policy_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/policy"
)

func TestLineDiff(t *testing.T) {
	cases := []struct{ a, b, want string }{
		{"", "", ""},
		{"a\nb\n", "a\nb\n", "  a\n  b\n"},
		{"a\nb\nc", "a\nc", "  a\n- b\n  c\n"},
		{"a\nc", "a\nb\nc", "  a\n+ b\n  c\n"},
		{"x", "y", "+ y\n- x\n"},
		{"", "new", "+ new\n"},
	}
	for _, tc := range cases {
		if got := policy.LineDiff(tc.a, tc.b); got != tc.want {
			t.Errorf("LineDiff(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
