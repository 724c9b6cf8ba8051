// Package topic implements MQTT 3.1.1 and 5.0 topic names and topic filters:
// validation, matching a filter against a name, and containment of one
// filter in another. It is written from the specifications (MQTT 3.1.1
// section 4.7, MQTT 5.0 sections 4.7 and 4.8.2), not copied from a broker.
//
// It exists because every broker hook Gatehouse answers reduces to two
// questions about topics. May this client publish to this topic name? That is
// Match of the name against the filters the client is allowed. May it
// subscribe to this filter? That is Contains: every topic the requested
// filter can ever deliver must lie inside an allowed filter; matching the
// requested filter as if it were a name would let "devices/#" through an ACL
// for "devices/+", its '+' taking the '#' for a level. The corner cases of the specifications — empty
// levels, '#' matching its parent level, wildcards not matching topics that
// start with '$', shared subscriptions — are exactly where an ad-hoc matcher
// silently widens access, so they live here once, with a brute-force
// reference and fuzzers in the tests.
//
// Match and Contains sit on the authorization hot path: they use no regexp
// and do not allocate. Both read their arguments literally and assume they
// are valid (see ValidateName and ValidateFilter, which callers run when a
// rule is loaded or a packet arrives); on invalid input they never panic and
// lean towards false. A shared subscription "$share/<group>/<filter>" is not
// special to them: split it with SplitShared and authorise the inner filter.
package topic

import (
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// MaxLen is the longest topic name or filter MQTT can carry, in bytes: on the
// wire it is a UTF-8 string with a two-byte length prefix.
const MaxLen = 65535

// sharePrefix starts an MQTT 5.0 shared subscription filter.
const sharePrefix = "$share/"

// ValidateName reports whether name is a valid PUBLISH topic name: non-empty,
// at most MaxLen bytes of valid UTF-8 without U+0000, and free of the
// wildcards '+' and '#'. Errors are *fault.Error with code
// fault.InvalidArgument.
func ValidateName(name string) error {
	if err := validateString("topic name", name); err != nil {
		return err
	}
	if i := strings.IndexAny(name, "+#"); i >= 0 {
		return fault.New(fault.InvalidArgument, "topic name must not contain the wildcard '%c' (byte %d)", name[i], i)
	}
	return nil
}

// ValidateFilter reports whether filter is a valid SUBSCRIBE topic filter:
// non-empty, at most MaxLen bytes of valid UTF-8 without U+0000, '+' only as
// a whole level and '#' only as the whole last level.
//
// A filter whose first level is "$share" must be a shared subscription
// "$share/<group>/<filter>": the group non-empty and free of '/', '+' and
// '#', the inner filter non-empty and valid. Errors are *fault.Error with code
// fault.InvalidArgument.
func ValidateFilter(filter string) error {
	if err := validateString("topic filter", filter); err != nil {
		return err
	}
	if filter == "$share" || strings.HasPrefix(filter, sharePrefix) {
		return validateShared(filter)
	}
	return validateLevels("topic filter", filter, 0)
}

// validateString checks what names and filters have in common.
func validateString(kind, s string) error {
	switch {
	case s == "":
		return fault.New(fault.InvalidArgument, "%s must not be empty", kind)
	case len(s) > MaxLen:
		return fault.New(fault.InvalidArgument, "%s is %d bytes long; the limit is %d", kind, len(s), MaxLen)
	case !utf8.ValidString(s):
		return fault.New(fault.InvalidArgument, "%s is not valid UTF-8", kind)
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fault.New(fault.InvalidArgument, "%s must not contain U+0000 (byte %d)", kind, i)
	}
	return nil
}

// validateShared checks a filter that starts with "$share".
func validateShared(filter string) error {
	group, inner, ok := SplitShared(filter)
	switch {
	case !ok:
		return fault.New(fault.InvalidArgument, "shared subscription must have the form $share/<share name>/<topic filter>")
	case group == "":
		return fault.New(fault.InvalidArgument, "shared subscription share name must not be empty")
	case strings.ContainsAny(group, "+#"):
		return fault.New(fault.InvalidArgument, "shared subscription share name must not contain '+' or '#'")
	case inner == "":
		return fault.New(fault.InvalidArgument, "shared subscription topic filter must not be empty")
	}
	return validateLevels("shared subscription topic filter", inner, len(filter)-len(inner))
}

// validateLevels checks the placement of wildcards in a filter. base is the
// offset of s in the filter the client sent, for the error messages.
func validateLevels(kind, s string, base int) error {
	start := 0 // offset of the current level
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/':
			start = i + 1
		case '+':
			if i != start || (i+1 < len(s) && s[i+1] != '/') {
				return fault.New(fault.InvalidArgument, "%s: '+' must occupy a whole level (byte %d)", kind, base+i)
			}
		case '#':
			if i != start || (i+1 < len(s) && s[i+1] != '/') {
				return fault.New(fault.InvalidArgument, "%s: '#' must occupy a whole level (byte %d)", kind, base+i)
			}
			if i+1 < len(s) {
				return fault.New(fault.InvalidArgument, "%s: '#' must be the last level (byte %d)", kind, base+i)
			}
		}
	}
	return nil
}

// SplitShared splits an MQTT 5.0 shared subscription: "$share/g/a/b" gives
// ("g", "a/b", true). Anything else, including a "$share/g" with no filter
// after the group, gives ("", filter, false). It does not validate: the group
// may be empty and the inner filter empty or malformed unless ValidateFilter
// accepted filter first. Authorise the inner filter; the group only selects
// which subscriber of the group receives a message.
func SplitShared(filter string) (group, inner string, shared bool) {
	if !strings.HasPrefix(filter, sharePrefix) {
		return "", filter, false
	}
	rest := filter[len(sharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", filter, false
	}
	return rest[:i], rest[i+1:], true
}

// Levels returns the number of levels in a topic name or filter as Match sees
// them: one more than the number of '/'. Empty levels count, so "a//b" and
// "/a/" have 3 levels, and the (invalid) empty string has 1.
func Levels(s string) int {
	return strings.Count(s, "/") + 1
}

// wholeLevel reports whether the level of s that starts at offset i is the
// single byte c.
func wholeLevel(s string, i int, c byte) bool {
	return i < len(s) && s[i] == c && (i+1 == len(s) || s[i+1] == '/')
}

// skipLevel returns the offset of the end of the level of s that contains
// offset i: the next '/' or len(s).
func skipLevel(s string, i int) int {
	for i < len(s) && s[i] != '/' {
		i++
	}
	return i
}

// literalLevel compares the literal level of a that starts at offset i with
// the level of b that starts at j. If they are equal it returns the offsets of
// their ends (a '/' or the end of the string) and true.
func literalLevel(a string, i int, b string, j int) (int, int, bool) {
	for i < len(a) && a[i] != '/' {
		if j == len(b) || b[j] != a[i] {
			return i, j, false
		}
		i++
		j++
	}
	return i, j, j == len(b) || b[j] == '/'
}

// startsWithWildcard reports whether filter starts with '+' or '#': for a
// valid filter, whether its first level is a wildcard.
func startsWithWildcard(filter string) bool {
	return filter != "" && (filter[0] == '+' || filter[0] == '#')
}

// Match reports whether topic filter matches topic name.
//
// Both are split into levels on '/'; empty levels are levels ("a//b" has
// three). A literal level matches only itself, '+' matches exactly one level
// (an empty one too), and '#' matches its parent level and any number of
// levels below it: "a/#" matches "a", "a/" and "a/b/c". There is no prefix
// matching: "a/b" does not match "a/b/c". A filter that starts with a
// wildcard never matches a name that starts with '$': "#" and "+/x" do not
// match "$SYS/x", "$SYS/#" does.
//
// Match does not allocate. The filter is taken literally, so split shared
// subscriptions first; a '#' that is not the last level matches nothing.
func Match(filter, name string) bool {
	if filter == "" || name == "" {
		return false
	}
	if name[0] == '$' && startsWithWildcard(filter) {
		return false
	}
	i, j := 0, 0 // the starts of the current levels of filter and name
	for {
		ok := true
		switch {
		case wholeLevel(filter, i, '#'):
			// Matches this level and any below. '#' must be the last level.
			return i+1 == len(filter)
		case wholeLevel(filter, i, '+'):
			i, j = i+1, skipLevel(name, j)
		default:
			i, j, ok = literalLevel(filter, i, name, j)
		}
		if !ok {
			return false
		}
		// Both levels ended at a '/' or at the end of their string.
		switch {
		case i == len(filter):
			return j == len(name)
		case j == len(name):
			// The name has no more levels: only a final '#', which matches
			// its parent level, can still match.
			return filter[i+1:] == "#"
		}
		i, j = i+1, j+1
	}
}

// Contains reports whether filter outer contains filter inner: whether every
// topic name inner matches is also matched by outer. A subscription to inner
// is then never delivered anything outer would not allow. Both arguments are
// assumed valid filters (a topic name is a filter without wildcards, and
// Contains(filter, name) == Match(filter, name)).
//
// Examples: "devices/d1/#" contains "devices/d1/cmd/+" and "devices/d1" (as
// '#' matches its parent); "devices/d1/#" does not contain
// "devices/+/cmd/#"; "a/+" does not contain "a/#" (which matches "a"). The
// '$' rule is respected: "#" does not contain "$SYS/#", and "+/a" does not
// contain "$x/a", because wildcard-first filters match no '$' topics. Topic
// names are never empty, so "#" is contained only by "#" and by "+/#", which
// match exactly the same names, and "/+/#" contains "/#" (whose parent level
// would be the empty name).
//
// Contains does not allocate. Shared subscriptions are taken literally: split
// them with SplitShared and pass the inner filter.
func Contains(outer, inner string) bool {
	if outer == "" || inner == "" {
		return false
	}
	// inner starts with a literal '$' level, so it matches only '$' names,
	// none of which a wildcard-first outer matches; inner matches at least one
	// name, so it is not contained.
	if inner[0] == '$' && startsWithWildcard(outer) {
		return false
	}
	i, j := 0, 0 // the starts of the current levels of outer and inner
	for {
		ok := true
		switch {
		case wholeLevel(outer, i, '#'):
			// Covers whatever inner has from here on, including nothing more:
			// inner's names that end before this level are outer's parent.
			return i+1 == len(outer)
		case wholeLevel(inner, j, '#'):
			// inner matches its parent, the name made of its levels before
			// this one, and every name with one or more levels from here on.
			// outer's level is '+' or a literal, so outer needs one more level
			// and misses the parent. But the parent is no topic name when it
			// is empty: when inner has no levels before this one (j == 0) or
			// a single empty one (j == 1), that is, inner is "#" or "/#". Then
			// outer contains inner iff it matches anything from here on, iff
			// the rest of outer is "+/#".
			return j <= 1 && outer[i:] == "+/#"
		case wholeLevel(inner, j, '+'):
			// inner matches any level here; so must outer.
			ok = wholeLevel(outer, i, '+')
			i, j = i+1, j+1
		case wholeLevel(outer, i, '+'):
			i, j = i+1, skipLevel(inner, j)
		default:
			i, j, ok = literalLevel(outer, i, inner, j)
		}
		if !ok {
			return false
		}
		// Both levels ended at a '/' or at the end of their string.
		switch {
		case i == len(outer):
			return j == len(inner) // outer's names end here; so must inner's
		case j == len(inner):
			// inner's names end here: outer must match its parent level.
			return outer[i+1:] == "#"
		}
		i, j = i+1, j+1
	}
}

// FromRoutingKey turns an AMQP 0-9-1 routing key from RabbitMQ back into the
// MQTT topic name or filter it stands for: '.' becomes '/', '*' becomes '+',
// and '#' and everything else stay. RabbitMQ presents MQTT topics this way,
// for instance to its HTTP auth backend's topic checks.
//
// The mapping is lossy in one direction, so the result is the topic RabbitMQ
// routes by, not necessarily the one the client sent. RabbitMQ's MQTT plugin
// turns an MQTT topic into a routing key by replacing each '/' with '.' and
// each '+' with '*' and leaves every other byte alone, so a '.' or '*' that was
// already in the MQTT topic reaches the routing key unchanged: the key "a.b"
// comes from MQTT "a/b" or from "a.b". RabbitMQ's documentation states the
// consequence as: a '.' in an MQTT topic becomes a '/' (its topic exchange
// splits the key on '.', so it routes "a.b" as two levels whichever it was),
// and FromRoutingKey agrees, which is what authorization should judge. A
// literal '*' inside an MQTT topic name comes back as '+' and makes the result
// an invalid name, so ValidateName rejects it and such publishes fail closed;
// a whole-level '*' in a filter is a wildcard to RabbitMQ's exchange anyway.
// A '/' in a key (only AMQP publishers can put one there) stays '/'. With the
// plugin's Sparkplug mode on, the '.' of a leading "spBv1.0" is sent as "___"
// and is not restored here: rules must name "spBv1___0/...".
func FromRoutingKey(rk string) string {
	if strings.IndexByte(rk, '.') < 0 && strings.IndexByte(rk, '*') < 0 {
		return rk
	}
	b := []byte(rk)
	for i, c := range b {
		switch c {
		case '.':
			b[i] = '/'
		case '*':
			b[i] = '+'
		}
	}
	return string(b)
}
