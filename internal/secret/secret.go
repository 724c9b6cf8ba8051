// Package secret makes and hashes the random bearer secrets Gatehouse hands
// out: bootstrap tokens and renewal challenges (enroll), admin API tokens and
// session cookies (auth). They share one shape and one storage rule, so a
// change to either (more entropy, another hash) happens in one place.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// bodyLen is the length of a secret without its prefix: 32 random bytes,
// base64url without padding.
const bodyLen = 43

// New returns prefix + 32 random bytes, base64url without padding. Prefixes
// make a leaked secret recognisable (and greppable by secret scanners)
// without revealing anything about it.
func New(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; if it ever does,
		// issuing a guessable secret would be worse than stopping.
		panic("crypto/rand: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// WellFormed reports whether s could have come from New(prefix). It lets a
// caller refuse garbage without a database lookup.
func WellFormed(s, prefix string) bool {
	body, ok := strings.CutPrefix(s, prefix)
	if !ok || len(body) != bodyLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(body)
	return err == nil
}

// Hash is how secrets are stored and looked up: SHA-256, hex. The secrets
// carry 256 bits of entropy, so a fast hash is enough: there is nothing to
// brute-force, and lookup stays one indexed equality query.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
