// Package auth decides who may use the admin API and what they may do:
// the roles and their ranking, admin API bearer tokens (issue and check),
// and web UI sign-in: argon2id password hashes, user accounts, database-
// backed sessions with idle and absolute expiry, per-session CSRF tokens,
// and throttling of failed logins.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Params are argon2id cost parameters. They travel inside every stored
// hash (PHC string format), so raising them later leaves old hashes
// verifiable and Verify reports that they should be rehashed.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams cost about 50–150 ms and 64 MiB per hash on one server
// core: RFC 9106's second recommended option (t=3, 64 MiB) with the pass
// count lowered to 1 and two lanes, since logins are rare and serialised
// (see Config.MaxConcurrentHashes). BenchmarkHashPassword measures it.
var DefaultParams = Params{Memory: 64 * 1024, Time: 1, Threads: 2, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read back from a stored hash: a hash string is data,
// and a corrupt or hostile one must not make a login allocate gigabytes or
// spin for minutes.
const (
	maxMemory  = 1 << 20 // 1 GiB in KiB
	maxTime    = 16
	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 64
	maxPHCLen  = 256
)

var b64 = base64.RawStdEncoding

// HashPassword returns the PHC string of password under p with a fresh
// random salt:
//
//	$argon2id$v=19$m=65536,t=1,p=2$<salt>$<key>
func HashPassword(password string, p Params) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// PHC is a parsed argon2id hash string.
type PHC struct {
	Params Params
	Salt   []byte
	Key    []byte
}

// ParsePHC parses an argon2id PHC string. Anything else, including argon2i,
// argon2d, other versions and out-of-bounds parameters, is
// fault.InvalidArgument.
func ParsePHC(s string) (PHC, error) {
	bad := func(why string) (PHC, error) {
		return PHC{}, fault.New(fault.InvalidArgument, "password hash is not a supported argon2id PHC string: %s", why)
	}
	if len(s) > maxPHCLen {
		return bad("too long")
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return bad("want $argon2id$v=19$m=…,t=…,p=…$salt$key")
	}
	if parts[1] != "argon2id" {
		return bad("algorithm is not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("version is not 19")
	}
	var ph PHC
	seen := map[string]bool{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return bad("malformed parameters")
		}
		seen[k] = true
		// ParseUint rejects signs, spaces and leading "+", so every value
		// has one spelling.
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return bad("malformed parameter " + k)
		}
		switch k {
		case "m":
			ph.Params.Memory = uint32(n)
		case "t":
			ph.Params.Time = uint32(n)
		case "p":
			if n > 255 {
				return bad("p out of range")
			}
			ph.Params.Threads = uint8(n)
		default:
			return bad("unknown parameter " + k)
		}
	}
	if len(seen) != 3 {
		return bad("m, t and p are required")
	}
	if ph.Params.Time < 1 || ph.Params.Time > maxTime || ph.Params.Threads < 1 ||
		ph.Params.Memory < 8*uint32(ph.Params.Threads) || ph.Params.Memory > maxMemory {
		return bad("parameters out of range")
	}
	var err error
	if ph.Salt, err = b64.Strict().DecodeString(parts[4]); err != nil || len(ph.Salt) < minSaltLen || len(ph.Salt) > maxSaltLen {
		return bad("bad salt")
	}
	if ph.Key, err = b64.Strict().DecodeString(parts[5]); err != nil || len(ph.Key) < minKeyLen || len(ph.Key) > maxKeyLen {
		return bad("bad key")
	}
	ph.Params.SaltLen, ph.Params.KeyLen = uint32(len(ph.Salt)), uint32(len(ph.Key))
	return ph, nil
}

// VerifyPassword reports whether password matches the PHC string hash, in
// time independent of where the keys differ. A malformed hash is an error,
// never a match.
func VerifyPassword(password, hash string) (bool, error) {
	ph, err := ParsePHC(hash)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), ph.Salt, ph.Params.Time, ph.Params.Memory, ph.Params.Threads, ph.Params.KeyLen)
	return subtle.ConstantTimeCompare(key, ph.Key) == 1, nil
}

// needsRehash reports whether a stored hash was made with parameters other
// than p, so a successful login can upgrade it.
func needsRehash(hash string, p Params) bool {
	ph, err := ParsePHC(hash)
	if err != nil {
		return true
	}
	return ph.Params.Memory != p.Memory || ph.Params.Time != p.Time || ph.Params.Threads != p.Threads ||
		ph.Params.KeyLen != p.KeyLen || ph.Params.SaltLen != p.SaltLen
}
