package secret_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/secret"
)

func TestNewIsPrefixedUniqueAndWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s := secret.New("gha_")
		if !strings.HasPrefix(s, "gha_") || len(s) != len("gha_")+43 || seen[s] {
			t.Fatalf("New = %q (seen before: %t)", s, seen[s])
		}
		seen[s] = true
		if !secret.WellFormed(s, "gha_") {
			t.Fatalf("WellFormed(%q) = false", s)
		}
	}
}

func TestWellFormed(t *testing.T) {
	good := secret.New("")
	for _, tc := range []struct {
		name, s, prefix string
		want            bool
	}{
		{"plain", good, "", true},
		{"prefixed", "ghb_" + good, "ghb_", true},
		{"wrong prefix", "ghb_" + good, "gha_", false},
		{"missing prefix", good, "gha_", false},
		{"short", good[:42], "", false},
		{"long", good + "A", "", false},
		{"not base64url", strings.Repeat("+", 43), "", false},
		{"padding bits set", good[:42] + "B", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := secret.WellFormed(tc.s, tc.prefix); got != tc.want {
				t.Fatalf("WellFormed(%q, %q) = %t, want %t", tc.s, tc.prefix, got, tc.want)
			}
		})
	}
}

func TestHashIsHexSHA256(t *testing.T) {
	// sha256("abc"), FIPS 180-2 appendix B.1: the stored hashes of existing
	// tokens must not change.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := secret.Hash("abc"); got != want {
		t.Fatalf("Hash(abc) = %s, want %s", got, want)
	}
}
