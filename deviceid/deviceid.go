// Package deviceid is the one definition of what a device id may look like.
//
// A device id becomes a certificate's subject CN, part of its identity URI
// (urn:gatehouse:<fleet>:<id>), a URL path segment of the API and the UI,
// an MQTT client id and topic level, and often a file name on a factory
// line. The grammar keeps it safe in all of them:
//
//	[A-Za-z0-9][A-Za-z0-9._:-]{0,63}, with no ".." anywhere
//
// The first character is a letter or digit, so "." and ".." (which browsers
// and curl remove from URLs), hidden file names and option-like "-x" are
// impossible. A single "." is allowed anywhere after it (sensor.v2, gw-1.);
// two in a row never, so an id joined into a path cannot climb out of a
// directory. ":" is allowed (e.g. a MAC address); "/", "+", "#", spaces and
// everything outside ASCII are not. The length bound is RFC 5280's upper
// bound for a common name (64), which the id becomes.
package deviceid

import (
	"strings"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// MaxLen is the longest device id.
const MaxLen = 64

// Grammar describes a valid id in error messages and documentation.
const Grammar = `[A-Za-z0-9][A-Za-z0-9._:-]{0,63} without ".."`

// Valid reports whether id may name a new device.
func Valid(id string) bool {
	if len(id) == 0 || len(id) > MaxLen || !alnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if !alnum(id[i]) && !punct(id[i]) {
			return false
		}
	}
	return !strings.Contains(id, "..")
}

// Check returns a stable invalid_argument error naming the grammar when id
// may not name a new device. what says where the id came from (e.g.
// "device_id").
func Check(what, id string) error {
	if Valid(id) {
		return nil
	}
	return fault.New(fault.InvalidArgument, "%s %q is not a valid device id: it must match %s", what, clip(id), Grammar)
}

// ValidRef reports whether id may refer to an existing device: a valid id,
// or one created before this grammar, under the older
// [A-Za-z0-9._-]{1,64}. Such devices must stay reachable (to revoke, renew
// or delete them); nothing new is ever named that way.
func ValidRef(id string) bool {
	if Valid(id) {
		return true
	}
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !alnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-' {
			return false
		}
	}
	return true
}

// CheckRef is Check for ids that refer to an existing device (ValidRef).
func CheckRef(what, id string) error {
	if ValidRef(id) {
		return nil
	}
	return fault.New(fault.InvalidArgument, "%s %q is not a valid device id: it must match %s", what, clip(id), Grammar)
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func punct(c byte) bool { return c == '.' || c == '_' || c == ':' || c == '-' }

// clip keeps an error message short and printable whatever the input was.
func clip(id string) string {
	if len(id) > MaxLen+8 {
		id = id[:MaxLen+8] + "…"
	}
	return id
}
