package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// Prefixes make a leaked secret recognisable (and greppable by secret
// scanners) without revealing anything about it.
const (
	BootstrapPrefix = "ghb_"
	AdminPrefix     = "gha_"
)

// NewSecret returns prefix + 32 random bytes, base64url without padding.
func NewSecret(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; if it ever does,
		// issuing a guessable token would be worse than stopping.
		panic("crypto/rand: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashSecret is how bootstrap and admin tokens are stored. The secrets carry
// 256 bits of entropy, so a fast hash is enough: there is nothing to
// brute-force, and lookup stays one indexed equality query.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
