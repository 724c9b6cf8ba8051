package store

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLabelNeedle checks the property the label filter relies on: the
// stored JSON of a label map contains labelNeedle(k, v) after "{" or ","
// exactly when the map holds k with value v, whatever keys and values hold.
func FuzzLabelNeedle(f *testing.F) {
	f.Add("room", "lab", "note", `say "room":"lab"`, "room", "lab")
	f.Add("room", "lab-2", "xroom", "lab", "room", "lab")
	f.Add("a\\", `"`, `"b`, "", "a", "")
	f.Add("<k>", "&v", "ü", "\u2028", "<k>", "&v")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k, v string) {
		for _, s := range []string{k1, v1, k2, v2, k, v} {
			// json.Marshal replaces invalid UTF-8 with U+FFFD, so two
			// different strings could encode alike; labels arrive as JSON,
			// hence valid UTF-8.
			if !utf8.ValidString(s) {
				return
			}
		}
		labels := map[string]string{k1: v1, k2: v2}
		b, err := json.Marshal(labels)
		if err != nil {
			t.Fatal(err)
		}
		lv, ok := labels[k]
		want := ok && lv == v
		n := labelNeedle(k, v)
		if got := strings.Contains(string(b), "{"+n) || strings.Contains(string(b), ","+n); got != want {
			t.Fatalf("labels %s, filter %q=%q: match %v, want %v", b, k, v, got, want)
		}
	})
}
