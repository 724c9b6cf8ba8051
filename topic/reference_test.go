package topic

import (
	"math/bits"
	"slices"
	"strings"
	"testing"
)

// This file holds slow, obviously-correct references for Match and Contains
// and checks the fast versions against them exhaustively on a small alphabet.
// The references share no code with the package: they split with
// strings.Split and recurse level by level, and containment is decided by
// enumerating topic names rather than by reasoning about filters.

// refMatch is the MQTT definition of a filter matching a name, level by level.
func refMatch(filter, name string) bool {
	return refMatchLevels(strings.Split(filter, "/"), strings.Split(name, "/"))
}

// refMatchLevels is refMatch on split levels. name must have at least one
// level, as every split string does.
func refMatchLevels(f, name []string) bool {
	// A filter whose first level is a wildcard matches no name starting with '$'.
	if strings.HasPrefix(name[0], "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	return refRest(f, name)
}

func refRest(f, n []string) bool {
	switch {
	case len(f) == 0:
		return len(n) == 0
	case f[0] == "#":
		// In a valid filter '#' is last; it matches the parent level (n is
		// empty) and any number of levels below it.
		return len(f) == 1
	case len(n) == 0:
		return false
	case f[0] == "+" || f[0] == n[0]:
		return refRest(f[1:], n[1:])
	}
	return false
}

// refContains decides whether outer contains inner by trying every topic name
// in a finite set that is large enough to hold a counterexample if there is
// any. It returns a counterexample when there is one.
//
// Why the set suffices. Take any topic name n that inner matches and outer
// does not, and change it in two steps that preserve matching by both filters:
//
//  1. A filter looks at the level of a name at depth j only by comparing it
//     with the filter's own literal level at j (if any) and, at j = 0, by
//     asking whether it starts with '$'. So replace each level of n that
//     equals neither filter's literal at that depth by a fresh level that
//     equals neither and, at depth 0, starts with '$' exactly when the
//     original did. Both filters' verdicts are unchanged.
//  2. If n has more than D+1 levels, where D is the larger number of levels of
//     the two filters, cut it to D+1. A filter with at most D levels matches a
//     name longer than itself only through a final '#' at depth k < D, and
//     then only needs the k levels before it to match and the name to go
//     deeper than k: true of the long name iff true of the cut one.
//
// The result has at most D+1 levels, each drawn from alphabet(j) below, and is
// still a topic name: step 1 never empties a level that was not empty, and
// step 2 leaves at least two levels. The empty string is no topic name, so
// it is skipped, which matters: "/#" would otherwise match "" as its parent.
func refContains(outer, inner string) (contained bool, witness string) {
	o, in := strings.Split(outer, "/"), strings.Split(inner, "/")
	depth := max(len(o), len(in)) + 1
	alphabet := make([][]string, depth)
	for j := range alphabet {
		var lits []string
		for _, f := range [][]string{o, in} {
			if j < len(f) && f[j] != "+" && f[j] != "#" && !slices.Contains(lits, f[j]) {
				lits = append(lits, f[j])
			}
		}
		alphabet[j] = append(lits, fresh(lits, "z"))
		if j == 0 {
			alphabet[j] = append(alphabet[j], fresh(lits, "$z"))
		}
	}
	name := make([]string, 0, depth)
	var walk func() bool
	walk = func() bool { // reports whether a counterexample extends name
		j := len(name)
		if j > 0 && !(j == 1 && name[0] == "") &&
			refMatchLevels(in, name) && !refMatchLevels(o, name) {
			return true
		}
		if j == depth {
			return false
		}
		for _, l := range alphabet[j] {
			name = append(name, l)
			if walk() {
				return true
			}
			name = name[:j]
		}
		return false
	}
	if walk() {
		return false, strings.Join(name, "/")
	}
	return true, ""
}

// fresh returns a level that starts with prefix and is not in lits.
func fresh(lits []string, prefix string) string {
	l := prefix
	for slices.Contains(lits, l) {
		l += "z"
	}
	return l
}

// testAlphabet is the literal levels of the exhaustive test. It has the
// corner cases: two distinct plain levels, a '$' level and the empty level.
var testAlphabet = []string{"a", "b", "$x", ""}

// filtersUpTo returns every valid filter with 1..depth levels drawn from
// testAlphabet, '+' and a final '#'. The empty string, one empty level, is
// left out: it is not a valid filter.
func filtersUpTo(depth int) []string {
	inner := append(slices.Clone(testAlphabet), "+")
	var out []string
	var build func(prefix string, n int)
	build = func(prefix string, n int) {
		for _, l := range append(slices.Clone(inner), "#") {
			f := prefix + l
			if f != "" {
				out = append(out, f)
			}
		}
		if n+1 < depth {
			for _, l := range inner {
				build(prefix+l+"/", n+1)
			}
		}
	}
	build("", 0)
	return out
}

// namesUpTo returns every topic name with 1..depth levels drawn from
// testAlphabet plus the fresh level "z", and at the first level also the fresh
// '$' level "$z". By refContains's argument (with testAlphabet holding every
// literal of every filter from filtersUpTo(depth-1)) these names hold a
// counterexample to any containment between such filters that fails.
func namesUpTo(depth int) []string {
	first := append(slices.Clone(testAlphabet), "z", "$z")
	rest := append(slices.Clone(testAlphabet), "z")
	var out []string
	var build func(prefix string, levels []string, n int)
	build = func(prefix string, levels []string, n int) {
		for _, l := range levels {
			name := prefix + l
			if name != "" {
				out = append(out, name)
			}
			if n+1 < depth {
				build(name+"/", rest, n+1)
			}
		}
	}
	build("", first, 0)
	return out
}

// TestExhaustive checks Match and Contains against the references for every
// filter with up to 4 levels over testAlphabet (3 with -short): Match on every
// (filter, name) pair, Contains on every (outer, inner) pair of filters, the
// truth computed as inclusion of the sets of names each filter matches.
func TestExhaustive(t *testing.T) {
	depth := 4
	if testing.Short() {
		depth = 3
	}
	filters, names := filtersUpTo(depth), namesUpTo(depth+1)
	for _, f := range filters {
		if err := ValidateFilter(f); err != nil {
			t.Fatalf("generated filter %q: %v", f, err)
		}
	}
	for _, n := range names {
		if err := ValidateName(n); err != nil {
			t.Fatalf("generated name %q: %v", n, err)
		}
	}
	t.Logf("%d filters, %d names", len(filters), len(names))

	// sets[i] is the set of names filters[i] matches, as a bitset over names.
	words := (len(names) + 63) / 64
	sets := make([][]uint64, len(filters))
	for i, f := range filters {
		sets[i] = make([]uint64, words)
		for k, n := range names {
			want := refMatch(f, n)
			if want {
				sets[i][k/64] |= 1 << (k % 64)
			}
			if got := Match(f, n); got != want {
				t.Errorf("Match(%q, %q) = %v; reference says %v", f, n, got, want)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	var pairs, contained int
	for i, outer := range filters {
		for j, inner := range filters {
			want := true
			for w := range words {
				if sets[j][w]&^sets[i][w] != 0 {
					want = false
					k := w*64 + bits.TrailingZeros64(sets[j][w]&^sets[i][w])
					if Contains(outer, inner) {
						t.Errorf("Contains(%q, %q) = true; %q is matched by inner only", outer, inner, names[k])
					}
					break
				}
			}
			if want {
				contained++
				if !Contains(outer, inner) {
					t.Errorf("Contains(%q, %q) = false; reference says true", outer, inner)
				}
			}
			pairs++
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	t.Logf("%d pairs, %d contained", pairs, contained)
}

// TestRefContains checks the per-pair reference the fuzzers use against the
// whole-alphabet reference of TestExhaustive, so that the two references, built
// on different candidate sets, vouch for each other.
func TestRefContains(t *testing.T) {
	filters, names := filtersUpTo(3), namesUpTo(4)
	matched := func(f string) map[string]bool {
		m := make(map[string]bool)
		for _, n := range names {
			if refMatch(f, n) {
				m[n] = true
			}
		}
		return m
	}
	sets := make(map[string]map[string]bool, len(filters))
	for _, f := range filters {
		sets[f] = matched(f)
	}
	for _, outer := range filters {
		for _, inner := range filters {
			want := true
			for n := range sets[inner] {
				if !sets[outer][n] {
					want = false
					break
				}
			}
			got, witness := refContains(outer, inner)
			if got != want {
				t.Fatalf("refContains(%q, %q) = %v; whole-alphabet reference says %v", outer, inner, got, want)
			}
			if !got && (!refMatch(inner, witness) || refMatch(outer, witness) || ValidateName(witness) != nil) {
				t.Fatalf("refContains(%q, %q): bad witness %q", outer, inner, witness)
			}
		}
	}
}
