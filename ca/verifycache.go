package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"
)

// verifiedCap bounds the verified-certificate cache: about 100 bytes an
// entry, so at most ~10 MiB. A fleet larger than this still verifies
// correctly; only the reconnects past the bound pay the full verification.
const verifiedCap = 100_000

// verifiedCache remembers which exact certificates (by the SHA-256 of their
// DER) chained to this CA with clientAuth, and until when that stays true.
//
// Why it is safe: x509.Verify's answer for given bytes, roots and
// intermediates changes only with the clock, and every certificate in the
// chain is only valid until its NotAfter, so an entry is used only before
// the earliest NotAfter of the chain it was verified on. Revocation and
// supersession are not part of it: the decision core checks the serial
// against the device's current certificate on every CONNECT. Only
// successes are cached, so a foreign or broken certificate is verified (and
// refused) every time. The roots and intermediates are fixed when the CA is
// loaded; whatever comes to change them (intermediate rotation) must clear
// this cache with them.
//
// Why it matters: a broker restart brings the whole fleet back in the same
// second, each CONNECT asking the hook with the certificate it already
// showed before; chain verification (two ECDSA verifications) is most of
// what such a CONNECT costs Gatehouse (BenchmarkVerifyClientCert).
type verifiedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verified
}

type verified struct {
	id     Identity
	serial string // SerialHex of the certificate
	until  time.Time
}

// get looks the bytes up without parsing them: a hit needs no X.509 parse.
func (v *verifiedCache) get(der []byte, now time.Time) (verified, bool) {
	key := sha256.Sum256(der)
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[key]
	if !ok {
		return verified{}, false
	}
	if !now.Before(e.until) {
		delete(v.m, key)
		return verified{}, false
	}
	return e, true
}

func (v *verifiedCache) put(der []byte, id Identity, serial string, chains [][]*x509.Certificate) {
	if len(chains) == 0 {
		return
	}
	// The earliest NotAfter over every certificate of every chain found:
	// past it, Verify could answer differently.
	var until time.Time
	for _, chain := range chains {
		for _, c := range chain {
			if until.IsZero() || c.NotAfter.Before(until) {
				until = c.NotAfter
			}
		}
	}
	key := sha256.Sum256(der)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[[sha256.Size]byte]verified)
	}
	if len(v.m) >= verifiedCap {
		// Full: start over rather than track recency on the hot path; the
		// next reconnects refill it.
		clear(v.m)
	}
	v.m[key] = verified{id: id, serial: serial, until: until}
}

func (v *verifiedCache) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}
