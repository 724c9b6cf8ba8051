package ca_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// TestGenerateKey: GenerateKey makes what KeyType names, and refuses a name
// KeyType never gives.
func TestGenerateKey(t *testing.T) {
	for _, kind := range []string{"P-256", "P-384", "Ed25519", "RSA-2048"} {
		key, err := ca.GenerateKey(kind)
		if err != nil || ca.KeyType(key.Public()) != kind {
			t.Errorf("GenerateKey(%s): %T %v", kind, key, err)
		}
	}
	for _, bad := range []string{"", "RSA", "RSA-1024", "P-521", "ed25519"} {
		if _, err := ca.GenerateKey(bad); !fault.Is(err, fault.InvalidArgument) {
			t.Errorf("GenerateKey(%q): %v, want invalid_argument", bad, err)
		}
	}
}
