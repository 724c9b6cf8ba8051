package topic

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Seeds shared by the fuzzers; more live in testdata/fuzz/<FuzzName>/.
var fuzzSeeds = [][2]string{
	{"#", "a"},
	{"#", "$SYS/x"},
	{"+/#", "#"},
	{"/+/#", "/#"},
	{"a/+", "a/#"},
	{"a/#", "a"},
	{"+/a", "$x/a"},
	{"$SYS/#", "$SYS/+"},
	{"devices/+/cmd/#", "devices/d1/cmd/+"},
	{"devices/d1/#", "devices/+/cmd/#"},
	{"a//+/#", "a//b"},
	{"$share/g/a/#", "$share/g/a/+"},
	{"+/+/+", "/a/"},
}

// maxRefLevels bounds the filters given to refContains, whose running time
// grows as 3 to the number of levels.
const maxRefLevels = 6

// FuzzMatch checks Match against the reference for every valid filter and
// name, and that a name, read as a filter, is contained exactly when matched.
// Invalid input must merely not panic.
func FuzzMatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1])
		f.Add(s[0], strings.NewReplacer("+", "x", "#", "y").Replace(s[1]))
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name)
		if ValidateFilter(filter) != nil || ValidateName(name) != nil {
			return
		}
		if want := refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v; reference says %v", filter, name, got, want)
		}
		if c := Contains(filter, name); c != got {
			t.Fatalf("Contains(%q, %q) = %v but Match = %v", filter, name, c, got)
		}
		if !Match(name, name) {
			t.Fatalf("Match(%q, itself) = false", name)
		}
	})
}

// FuzzContains checks Contains against the reference for valid filters.
//
// Raw strings seldom form deep filters that share literals, so each input is
// also decoded into a pair of filters over a small alphabet of levels (one
// byte per level) and checked too: that reaches six levels, past the four of
// TestExhaustive.
func FuzzContains(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1])
	}
	f.Add("\x00\x01\x02\x03\x04\x05", "\x05\x04\x03\x02\x01\x00")
	f.Fuzz(func(t *testing.T, outer, inner string) {
		got := Contains(outer, inner)
		if ValidateFilter(outer) == nil && ValidateFilter(inner) == nil &&
			Levels(outer) <= maxRefLevels && Levels(inner) <= maxRefLevels {
			checkContains(t, outer, inner, got)
		}
		o, i := decodeFilter(outer), decodeFilter(inner)
		checkContains(t, o, i, Contains(o, i))
	})
}

func checkContains(t *testing.T, outer, inner string, got bool) {
	t.Helper()
	want, witness := refContains(outer, inner)
	if got != want {
		t.Fatalf("Contains(%q, %q) = %v; reference says %v (inner only: %q)", outer, inner, got, want, witness)
	}
	if got && Contains(inner, outer) != (outer == inner || equivalent(outer, inner)) {
		t.Fatalf("Contains(%q, %q) and back disagree with equality", outer, inner)
	}
}

// equivalent reports whether a and b are one of the two pairs of distinct
// filters that match the same topic names: "#" and "+/#" (everything not
// starting with '$'), and "/#" and "/+/#" (everything starting with '/': the
// parent "" of "/#" is no topic name). Mutual containment is otherwise
// equality.
func equivalent(a, b string) bool {
	for _, p := range [][2]string{{"#", "+/#"}, {"/#", "/+/#"}} {
		if a == p[0] && b == p[1] || a == p[1] && b == p[0] {
			return true
		}
	}
	return false
}

// decodeFilter turns s into a valid filter of up to maxRefLevels levels, one
// byte per level, drawn from the literals of the exhaustive test plus '+', with
// '#' appended when the byte picks it (and ending the filter).
func decodeFilter(s string) string {
	levels := []string{"a", "b", "$x", "", "+", "c", "#"}
	var parts []string
	for i := 0; i < len(s) && len(parts) < maxRefLevels; i++ {
		l := levels[int(s[i])%len(levels)]
		parts = append(parts, l)
		if l == "#" {
			break
		}
	}
	f := strings.Join(parts, "/")
	if f == "" {
		return "#"
	}
	return f
}

// refValidFilter is an independent statement of filter validity on split
// levels, for plain (not shared) filters of valid UTF-8 without NUL.
func refValidFilter(s string) bool {
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if l == "+" || l == "#" && i == len(levels)-1 {
			continue
		}
		if strings.ContainsAny(l, "+#") {
			return false
		}
	}
	return s != ""
}

// FuzzValidate checks that validation never panics, reports only
// *fault.Error with code InvalidArgument, and agrees with simple restatements
// of the rules.
func FuzzValidate(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0])
		f.Add(s[1])
	}
	for _, tt := range filterTests {
		if len(tt.filter) < 100 {
			f.Add(tt.filter)
		}
	}
	f.Add("a/\xff")
	f.Add("\x00")
	f.Fuzz(func(t *testing.T, s string) {
		nameErr, filterErr := ValidateName(s), ValidateFilter(s)
		for _, err := range []error{nameErr, filterErr} {
			var fe *fault.Error
			if err != nil && (!errors.As(err, &fe) || fe.Code != fault.InvalidArgument || fe.Message == "") {
				t.Fatalf("%q: error %#v is not an InvalidArgument *fault.Error", s, err)
			}
		}
		group, inner, shared := SplitShared(s)
		_ = FromRoutingKey(s)
		_ = Match(s, s)
		_ = Contains(s, s)
		_ = Levels(s)

		basic := s != "" && len(s) <= MaxLen && strings.IndexByte(s, 0) < 0 && validUTF8(s)
		if want := basic && !strings.ContainsAny(s, "+#"); (nameErr == nil) != want {
			t.Fatalf("ValidateName(%q) = %v; want valid=%v", s, nameErr, want)
		}
		var want bool
		switch {
		case !basic:
		case strings.Split(s, "/")[0] == "$share":
			want = shared && group != "" && !strings.ContainsAny(group, "/+#") && refValidFilter(inner)
		default:
			want = refValidFilter(s)
		}
		if (filterErr == nil) != want {
			t.Fatalf("ValidateFilter(%q) = %v; want valid=%v", s, filterErr, want)
		}
		if filterErr == nil && !Contains(s, s) {
			t.Fatalf("Contains(%q, itself) = false", s)
		}
		if shared && group+"/"+inner != strings.TrimPrefix(s, "$share/") {
			t.Fatalf("SplitShared(%q) = %q, %q", s, group, inner)
		}
	})
}

// validUTF8 restates utf8.ValidString by decoding rune by rune: a range over
// a string yields U+FFFD of width 1 exactly at invalid bytes.
func validUTF8(s string) bool {
	for i, r := range s {
		if r == '\uFFFD' && !strings.HasPrefix(s[i:], "\uFFFD") {
			return false
		}
	}
	return true
}
