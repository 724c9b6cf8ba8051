package main

import (
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// TestPolicyEvalTimeout: policy.eval_timeout defaults to 100ms, is read
// from GATEHOUSE_POLICY_EVAL_TIMEOUT, and has no "unbounded" value.
func TestPolicyEvalTimeout(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration // 0: refused
	}{
		{"", 100 * time.Millisecond},
		{"250ms", 250 * time.Millisecond},
		{"1ms", time.Millisecond},
		{"10s", 10 * time.Second},
		{"0", 0},
		{"0s", 0},
		{"-1s", 0},
		{"11s", 0},
		{"500us", 0},
		{"fast", 0},
	} {
		if tc.env != "" {
			t.Setenv("GATEHOUSE_POLICY_EVAL_TIMEOUT", tc.env)
		}
		v, err := loadConfig(&cobra.Command{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := policyEvalTimeout(v)
		if tc.want == 0 {
			if !fault.Is(err, fault.InvalidArgument) {
				t.Errorf("%q: got %s, %v; want invalid_argument", tc.env, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %s, %v; want %s", tc.env, got, err, tc.want)
		}
	}
}
