package topic

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// checkInvalid fails unless err is a *fault.Error with code InvalidArgument.
func checkInvalid(t *testing.T, what string, err error) {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Code != fault.InvalidArgument || fe.Message == "" {
		t.Errorf("%s: error %#v is not a *fault.Error with code %q and a message", what, err, fault.InvalidArgument)
	}
}

var long = strings.Repeat("a", MaxLen)

var nameTests = []struct {
	name  string
	valid bool
}{
	{"a", true},
	{"devices/dev-123/telemetry/temp", true},
	{"/", true},
	{"a//b", true},
	{"/a/", true},
	{"$SYS/broker/load", true},
	{"$share/g/a", true}, // a name, not a filter: nothing special
	{"$share", true},
	{"a b/ü/日本", true},
	{"a*b.c", true},
	{long, true},

	{"", false},
	{"\x00", false},
	{"a/\x00/b", false},
	{"a\xffb", false},       // invalid UTF-8
	{"\xed\xa0\x80", false}, // a UTF-16 surrogate encoded in UTF-8
	{long + "a", false},     // 65536 bytes
	{"+", false},
	{"#", false},
	{"a/+", false},
	{"a/#", false},
	{"a+", false},
	{"a#b", false},
	{"$SYS/#", false},
}

func TestValidateName(t *testing.T) {
	for _, tt := range nameTests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.valid {
			t.Errorf("ValidateName(%.40q) = %v; want valid=%v", tt.name, err, tt.valid)
		}
		if err != nil {
			checkInvalid(t, "ValidateName", err)
		}
	}
}

var filterTests = []struct {
	filter string
	valid  bool
}{
	{"a", true},
	{"#", true},
	{"+", true},
	{"/", true},
	{"/#", true},
	{"+/#", true},
	{"a/#", true},
	{"a/+/b", true},
	{"+/+", true},
	{"a//+//#", true},
	{"devices/+/cmd/#", true},
	{"$SYS/#", true},
	{"a/b+c", false},
	{"$share/g/#", true},
	{"$share/g/a/+/b", true},
	{"$share/g//", true},
	{"$share/g/$share/x", true}, // the inner filter is a plain filter
	{"$sharex/#", true},         // not a shared subscription
	{"x/$share", true},
	{long, true},

	{"", false},
	{"\x00", false},
	{"a/\x00", false},
	{"a/\xc3", false}, // truncated UTF-8
	{long + "a", false},
	{"a/#/b", false},
	{"#/b", false},
	{"##", false},
	{"a#", false},
	{"a/#b", false},
	{"a/b#", false},
	{"+a", false},
	{"a+", false},
	{"a/+b", false},
	{"a/b+", false},
	{"++", false},
	{"+#", false},
	{"#+", false},
	{"$share", false},
	{"$share/", false},
	{"$share/g", false},
	{"$share/g/", false},
	{"$share//a", false},
	{"$share/g+/a", false},
	{"$share/+/a", false},
	{"$share/g#/a", false},
	{"$share/#/a", false},
	{"$share/g/a/#/b", false},
	{"$share/g/a+", false},
	{"$share/g/\x00", false},
}

func TestValidateFilter(t *testing.T) {
	for _, tt := range filterTests {
		err := ValidateFilter(tt.filter)
		if (err == nil) != tt.valid {
			t.Errorf("ValidateFilter(%.40q) = %v; want valid=%v", tt.filter, err, tt.valid)
		}
		if err != nil {
			checkInvalid(t, "ValidateFilter", err)
		}
	}
}

func TestValidateMessages(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{ValidateName(""), "topic name must not be empty"},
		{ValidateName("a/+"), "topic name must not contain the wildcard '+' (byte 2)"},
		{ValidateName(long + "a"), "topic name is 65536 bytes long; the limit is 65535"},
		{ValidateFilter("a/#/b"), "topic filter: '#' must be the last level (byte 2)"},
		{ValidateFilter("a/+b"), "topic filter: '+' must occupy a whole level (byte 2)"},
		{ValidateFilter("\xff"), "topic filter is not valid UTF-8"},
		{ValidateFilter("$share//a"), "shared subscription share name must not be empty"},
		{ValidateFilter("$share/g/a#"), "shared subscription topic filter: '#' must occupy a whole level (byte 10)"},
	} {
		if got := fault.MessageOf(tt.err); got != tt.want {
			t.Errorf("message %q; want %q", got, tt.want)
		}
	}
}

func TestSplitShared(t *testing.T) {
	for _, tt := range []struct {
		filter, group, inner string
		shared               bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/group-1/devices/+/cmd", "group-1", "devices/+/cmd", true},
		{"$share//a", "", "a", true}, // shape only; ValidateFilter rejects it
		{"$share/g/", "g", "", true},
		{"$share/g", "", "$share/g", false},
		{"$share/", "", "$share/", false},
		{"$share", "", "$share", false},
		{"$sharex/g/a", "", "$sharex/g/a", false},
		{"a/$share/g/b", "", "a/$share/g/b", false},
		{"a/b", "", "a/b", false},
		{"#", "", "#", false},
		{"", "", "", false},
	} {
		group, inner, shared := SplitShared(tt.filter)
		if group != tt.group || inner != tt.inner || shared != tt.shared {
			t.Errorf("SplitShared(%q) = (%q, %q, %v); want (%q, %q, %v)",
				tt.filter, group, inner, shared, tt.group, tt.inner, tt.shared)
		}
	}
}

func TestLevels(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want int
	}{
		{"a", 1}, {"", 1}, {"/", 2}, {"a/b", 2}, {"a//b", 3}, {"/a/", 3}, {"a/b/c/#", 4},
	} {
		if got := Levels(tt.s); got != tt.want {
			t.Errorf("Levels(%q) = %d; want %d", tt.s, got, tt.want)
		}
	}
}

var matchTests = []struct {
	filter, name string
	want         bool
}{
	// Literal levels: equality, no prefix matching.
	{"a/b", "a/b", true},
	{"a/b", "a/b/c", false},
	{"a/b/c", "a/b", false},
	{"a/b", "a/bc", false},
	{"a/b", "a/B", false},
	{"a", "a/", false},
	{"a/", "a", false},
	{"a/", "a/", true},
	{"/", "/", true},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},

	// '+' matches exactly one level, empty ones too.
	{"+", "a", true},
	{"+", "/", false},
	{"+", "a/b", false},
	{"a/+", "a/b", true},
	{"a/+", "a/", true},
	{"a/+", "a", false},
	{"a/+", "a/b/c", false},
	{"+/+", "/", true},
	{"+/+", "a/b", true},
	{"/+", "/a", true},
	{"/+", "a", false},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a/b/d", false},
	{"devices/+/telemetry/temp", "devices/dev-123/telemetry/temp", true},

	// '#' matches the parent level and any number of child levels.
	{"#", "a", true},
	{"#", "/", true},
	{"#", "a/b/c", true},
	{"a/#", "a", true},
	{"a/#", "a/", true},
	{"a/#", "a/b", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"a/b/#", "a", false},
	{"/#", "/", true},
	{"/#", "/a/b", true},
	{"/#", "a", false},
	{"+/#", "a", true},
	{"+/#", "a/b/c", true},
	{"devices/+/cmd/#", "devices/d1/cmd", true},
	{"devices/+/cmd/#", "devices/d1/cmd/reboot/now", true},
	{"devices/+/cmd/#", "devices/d1/telemetry", false},

	// Wildcard-first filters do not match '$' topics.
	{"#", "$SYS/x", false},
	{"#", "$SYS", false},
	{"+/x", "$SYS/x", false},
	{"+", "$x", false},
	{"+/#", "$SYS/x", false},
	{"$SYS/#", "$SYS/x", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/+", "$SYS/x", true},
	{"$SYS/x", "$SYS/x", true},
	{"a/+", "a/$x", true}, // only the first level is special
	{"a/#", "a/$x/y", true},
	{"#", "a$", true},

	// Literal reading: shared subscriptions and invalid input.
	{"$share/g/#", "a", false},
	{"$share/g/#", "$share/g/a", true},
	{"#/a", "x/a", false}, // '#' not last: matches nothing
	{"", "a", false},
	{"a", "", false},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v; want %v", tt.filter, tt.name, got, tt.want)
		}
		// A name is a filter without wildcards: containment is matching.
		if ValidateFilter(tt.filter) == nil && ValidateName(tt.name) == nil {
			if got := Contains(tt.filter, tt.name); got != tt.want {
				t.Errorf("Contains(%q, %q) = %v; want %v (as Match)", tt.filter, tt.name, got, tt.want)
			}
			if got := refMatch(tt.filter, tt.name); got != tt.want {
				t.Errorf("reference match(%q, %q) = %v; want %v", tt.filter, tt.name, got, tt.want)
			}
		}
	}
}

var containsTests = []struct {
	outer, inner string
	want         bool
}{
	{"devices/d1/#", "devices/d1/cmd/+", true},
	{"devices/d1/#", "devices/d1/#", true},
	{"devices/d1/#", "devices/d1", true},
	{"devices/d1/#", "devices/+/cmd/#", false},
	{"devices/+/cmd/#", "devices/d1/cmd/#", true},
	{"devices/+/cmd/#", "devices/+/cmd", true},
	{"devices/+/cmd/#", "devices/+", false},
	{"devices/+/cmd/+", "devices/d1/cmd/#", false},
	{"devices/+/+", "devices/d1/cmd", true},
	{"devices/+/+", "devices/+/+", true},
	{"devices/d1/+", "devices/+/+", false},
	{"devices/+", "devices/#", false}, // though Match("devices/+", "devices/#") would say yes

	// "#" is contained by "#" and by the equivalent "+/#" only.
	{"#", "#", true},
	{"+/#", "#", true},
	{"#", "+/#", true},
	{"+", "#", false},
	{"+/+/#", "#", false},
	{"a/#", "#", false},
	{"/#", "#", false},
	{"+/#", "+", true},
	{"+/#", "+/+/+", true},
	{"#", "a/b/+/#", true},
	{"#", "/", true},

	// '#' matches its parent.
	{"a/+", "a/#", false},
	{"a/#", "a", true},
	{"a/#", "a/+", true},
	{"a/#", "a/+/#", true},
	{"a/+/#", "a/#", false},
	{"a/+/#", "a/+", true},
	{"a/+/#", "a", false},
	{"a", "a/#", false},
	{"/#", "/", true},
	{"/+/#", "/#", true},  // "/#" would match its parent "", but "" is no topic name
	{"+/+/#", "/#", true}, // likewise
	{"/+/+/#", "/#", false},
	{"+/+/#", "+/#", false},
	{"a/+/#", "a/#", false}, // the parent "a" is a name

	// '$' rules: wildcard-first filters match no '$' topics.
	{"#", "$SYS/#", false},
	{"#", "$SYS", false},
	{"+/#", "$SYS/#", false},
	{"+/a", "$x/a", false},
	{"+", "$x", false},
	{"$SYS/#", "$SYS/#", true},
	{"$SYS/#", "$SYS/+/x", true},
	{"$SYS/#", "#", false},
	{"$SYS/#", "+/#", false},
	{"$x/a", "+/a", false},
	{"+/a", "+/a", true},
	{"#", "a/$x", true},
	{"a/+", "a/$x", true},

	// Empty levels are levels.
	{"a//b", "a/+/b", false},
	{"a/+/b", "a//b", true},
	{"+", "/", false},
	{"+/+", "/", true},

	// Literal reading of shared subscriptions.
	{"#", "$share/g/a", false},
	{"a/#", "$share/g/a", false},
	{"$share/g/#", "$share/g/a", true},
}

func TestContains(t *testing.T) {
	for _, tt := range containsTests {
		if got := Contains(tt.outer, tt.inner); got != tt.want {
			t.Errorf("Contains(%q, %q) = %v; want %v", tt.outer, tt.inner, got, tt.want)
		}
		if got, witness := refContains(tt.outer, tt.inner); got != tt.want {
			t.Errorf("reference contains(%q, %q) = %v (witness %q); want %v", tt.outer, tt.inner, got, witness, tt.want)
		}
	}
}

func TestContainsReflexive(t *testing.T) {
	for _, tt := range filterTests {
		if tt.valid && tt.filter != long && !Contains(tt.filter, tt.filter) {
			t.Errorf("Contains(%q, itself) = false", tt.filter)
		}
	}
}

func TestFromRoutingKey(t *testing.T) {
	for _, tt := range []struct{ rk, want string }{
		{"devices.dev-123.telemetry.temp", "devices/dev-123/telemetry/temp"},
		{"devices.*.cmd.#", "devices/+/cmd/#"},
		{"#", "#"},
		{"*", "+"},
		{".", "/"},
		{"a..b", "a//b"},
		{"a/b.c", "a/b/c"},                           // a '/' only an AMQP publisher can send stays
		{"a*b", "a+b"},                               // a literal '*' from MQTT: now an invalid name
		{"spBv1___0.g.NBIRTH", "spBv1___0/g/NBIRTH"}, // Sparkplug mode not undone
		{"ü.日本", "ü/日本"},
		{"", ""},
	} {
		if got := FromRoutingKey(tt.rk); got != tt.want {
			t.Errorf("FromRoutingKey(%q) = %q; want %q", tt.rk, got, tt.want)
		}
	}
	if ValidateName(FromRoutingKey("a*b")) == nil {
		t.Error("a literal '*' from MQTT must fail closed as a name")
	}
}

// TestNoAllocs pins the hot path: Match and Contains never allocate, nor do
// successful validations.
func TestNoAllocs(t *testing.T) {
	for name, f := range map[string]func(){
		"Match":          func() { Match("devices/+/telemetry/#", "devices/dev-123/telemetry/temp") },
		"MatchMiss":      func() { Match("devices/+/cmd/#", "devices/dev-123/telemetry/temp") },
		"Contains":       func() { Contains("devices/+/cmd/#", "devices/dev-123/cmd/+") },
		"ValidateName":   func() { _ = ValidateName("devices/dev-123/telemetry/temp") },
		"ValidateFilter": func() { _ = ValidateFilter("$share/g/devices/+/cmd/#") },
		"SplitShared":    func() { SplitShared("$share/g/devices/+/cmd/#") },
		"FromRoutingKey": func() { FromRoutingKey("no-dots-here") },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per run; want 0", name, n)
		}
	}
}
