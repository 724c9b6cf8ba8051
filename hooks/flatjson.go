package hooks

import (
	"encoding/json"
	"unicode/utf8"
)

// flatObject reads a JSON object whose values are all strings, numbers,
// booleans or null — the shape of every broker webhook body Gatehouse
// reads — and calls set for each member with the value's text (strings
// unescaped, other literals as written; quoted says which it was). It is the hot path's decoder:
// encoding/json's reflection was most of an authorization request's cost.
// Anything else (nesting, arrays, malformed input) returns ok=false and the
// caller falls back to encoding/json, which also produces the error.
func flatObject(b []byte, set func(key, value string, quoted bool)) (ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		key, n, ok := jsonString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, n)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		var val string
		quoted := b[i] == '"'
		switch c := b[i]; {
		case c == '"':
			val, n, ok = jsonString(b, i)
			if !ok {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n':
			n = i
			for n < len(b) && b[n] != ',' && b[n] != '}' && b[n] != ' ' && b[n] != '\t' && b[n] != '\r' && b[n] != '\n' {
				n++
			}
			lit := b[i:n]
			if !json.Valid(lit) {
				return false
			}
			val = string(lit)
		default:
			return false
		}
		set(key, val, quoted)
		i = skipWS(b, n)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return skipWS(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return false
		}
		i = skipWS(b, i+1)
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// jsonString reads the string starting at b[i] == '"' and returns it
// unescaped and the index after its closing quote. Strings without escapes
// (nearly all) are sliced directly; others go through encoding/json.
func jsonString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			if !escaped {
				s := b[i+1 : j]
				if !utf8.Valid(s) {
					return "", 0, false
				}
				return string(s), j + 1, true
			}
			var out string
			if err := json.Unmarshal(b[i:j+1], &out); err != nil {
				return "", 0, false
			}
			return out, j + 1, true
		case c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}
