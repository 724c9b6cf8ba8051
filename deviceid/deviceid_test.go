package deviceid_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestGrammar(t *testing.T) {
	cases := []struct {
		id       string
		valid    bool // may name a new device
		validRef bool // may refer to an existing one (older grammar too)
	}{
		{"a", true, true},
		{"0", true, true},
		{"sensor-777", true, true},
		{"gw.2", true, true},
		{"GW_3", true, true},
		{"mac:00:11:22:aa:bb:cc", true, true},
		{"trailing.", true, true},
		{"a.b.c", true, true},
		{strings.Repeat("d", 64), true, true},
		{"a" + strings.Repeat(".b", 31) + "c", true, true},

		{"", false, false},
		{".", false, true},  // enrolled before the grammar: still reachable
		{"..", false, true}, // (browsers drop it from URLs; the CLI may not)
		{"...", false, true},
		{"a..b", false, true},
		{"ab..", false, true},
		{".hidden", false, true},
		{"-rf", false, true},
		{"_x", false, true},
		{":x", false, false},
		{strings.Repeat("d", 65), false, false},
		{"a/b", false, false},
		{"a\\b", false, false},
		{"a b", false, false},
		{"a+b", false, false},
		{"a#b", false, false},
		{"a%2e", false, false},
		{"a\x00b", false, false},
		{"a\nb", false, false},
		{"caf\u00e9", false, false},
		{"a\xff", false, false},
		{"a?b", false, false},
		{"a,b", false, false},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			if got := deviceid.Valid(c.id); got != c.valid {
				t.Errorf("Valid(%q) = %v, want %v", c.id, got, c.valid)
			}
			if got := deviceid.ValidRef(c.id); got != c.validRef {
				t.Errorf("ValidRef(%q) = %v, want %v", c.id, got, c.validRef)
			}
			err := deviceid.Check("device_id", c.id)
			if (err == nil) != c.valid {
				t.Fatalf("Check(%q) = %v, want valid %v", c.id, err, c.valid)
			}
			if err != nil {
				msg := fault.MessageOf(err)
				if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(msg, deviceid.Grammar) ||
					!strings.HasPrefix(msg, "device_id ") {
					t.Errorf("Check(%q) = %q (%s), want invalid_argument naming the field and the grammar", c.id, msg, fault.CodeOf(err))
				}
			}
			if err := deviceid.CheckRef("id", c.id); (err == nil) != c.validRef {
				t.Errorf("CheckRef(%q) = %v, want valid %v", c.id, err, c.validRef)
			}
		})
	}
}

// FuzzGrammar: whatever the input, a valid id is safe as a path segment,
// a file name and a CN, and every valid id is a valid reference.
func FuzzGrammar(f *testing.F) {
	for _, s := range []string{"a", "..", "a..b", "mac:00:11", "-x", strings.Repeat("z", 70), "a\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !deviceid.Valid(id) {
			if deviceid.Check("x", id) == nil {
				t.Fatalf("Check accepts invalid %q", id)
			}
			return
		}
		if !deviceid.ValidRef(id) || deviceid.Check("x", id) != nil {
			t.Fatalf("valid %q refused elsewhere", id)
		}
		if len(id) > deviceid.MaxLen || strings.Contains(id, "..") || strings.ContainsAny(id, "/\\ \x00+#%?") ||
			id[0] == '.' || id[0] == '-' {
			t.Fatalf("Valid accepts hostile %q", id)
		}
	})
}
