package hooks

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"unicode/utf8"
)

// maxVMQPayload bounds the skipped payload string: base64 of MQTT's largest
// packet (268,435,455 bytes), rounded up. VerneMQ's max_message_size is
// unlimited by default, so its publish hooks may carry any payload MQTT
// allows; what is read of it is discarded as it streams in.
const maxVMQPayload = 358 << 20

// bodyWithoutPayload reads a VerneMQ hook body, dropping the value of the
// top-level "payload" member (vmq_webhooks_plugin.erl encode_payload: the
// message, base64 encoded unless base64_payload = off) without keeping it.
// The rest is capped at MaxBody and must be valid UTF-8; the payload, which
// with base64_payload = off may hold any bytes, is only bounded in length.
// The member is replaced by null, so what remains is still one JSON object.
//
// Only the broker gets the payload allowance: a caller without the secret
// could otherwise make Gatehouse stream hundreds of MiB per request before
// being denied, so its whole body, payload included, stays under MaxBody.
func (h *Handler) bodyWithoutPayload(r *http.Request) ([]byte, error) {
	limit := h.cfg.MaxBody + 1
	// Real credentials, even with AllowUnauthenticated: anyone who can
	// reach an open listener must not get the large allowance.
	if h.credentialed(r) {
		limit += maxVMQPayload
	}
	b, err := stripPayload(bufio.NewReader(io.LimitReader(r.Body, limit)), h.cfg.MaxBody)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, malformed("body is not valid UTF-8")
	}
	return b, nil
}

var errBodyTooLarge = malformed("body: too large")

// stripPayload copies a JSON text from rd, except the string value of a
// "payload" member of the outermost object, which becomes null. It tracks
// only nesting, strings and whether a string at depth 1 is a key; the copy
// is validated by the JSON decoder afterwards, so malformed input is merely
// passed on (or cut short, which the decoder then rejects).
func stripPayload(rd *bufio.Reader, max int64) ([]byte, error) {
	var out []byte
	put := func(c ...byte) error {
		if int64(len(out)+len(c)) > max {
			return errBodyTooLarge
		}
		out = append(out, c...)
		return nil
	}
	depth := 0
	expectKey := false // the next string at depth 1 is a member name
	skipValue := false // the member just named is "payload"
	for {
		c, err := rd.ReadByte()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, malformed("body: " + err.Error())
		}
		switch c {
		case '{', '[':
			depth++
			expectKey, skipValue = c == '{' && depth == 1, false
		case '}', ']':
			depth--
			skipValue = false
		case ',':
			expectKey, skipValue = depth == 1, false
		case '"':
			if skipValue && depth == 1 {
				skipValue = false
				if err := skipString(rd); err != nil {
					return nil, err
				}
				if err := put('n', 'u', 'l', 'l'); err != nil {
					return nil, err
				}
				continue
			}
			key := expectKey && depth == 1
			expectKey = false
			s, err := copyString(rd, put)
			if err != nil {
				return nil, err
			}
			skipValue = key && s
			continue
		case ' ', '\t', '\r', '\n', ':':
		default:
			skipValue = false
		}
		if err := put(c); err != nil {
			return nil, err
		}
	}
}

// copyString copies a string whose opening quote was just read, quotes
// included, and reports whether it was exactly "payload".
func copyString(rd *bufio.Reader, put func(...byte) error) (isPayload bool, err error) {
	if err := put('"'); err != nil {
		return false, err
	}
	const name = "payload"
	n, match := 0, true
	for {
		c, err := rd.ReadByte()
		if err != nil {
			return false, nil // cut short: the decoder rejects the copy
		}
		if err := put(c); err != nil {
			return false, err
		}
		switch {
		case c == '\\':
			match = false
			e, err := rd.ReadByte()
			if err != nil {
				return false, nil
			}
			if err := put(e); err != nil {
				return false, err
			}
		case c == '"':
			return match && n == len(name), nil
		default:
			if n >= len(name) || name[n] != c {
				match = false
			}
			n++
		}
	}
}

// skipString discards a string whose opening quote was just read.
func skipString(rd *bufio.Reader) error {
	for n := int64(0); ; n++ {
		if n > maxVMQPayload {
			return errBodyTooLarge
		}
		c, err := rd.ReadByte()
		if err != nil {
			return malformed("body: payload cut short")
		}
		switch c {
		case '\\':
			if _, err := rd.ReadByte(); err != nil {
				return malformed("body: payload cut short")
			}
			n++
		case '"':
			return nil
		}
	}
}
