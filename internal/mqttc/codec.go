// Package mqttc is a minimal MQTT 3.1.1 client for load tools: it encodes
// the packets a client sends (CONNECT, PUBLISH, PUBACK, SUBSCRIBE, PINGREQ,
// DISCONNECT) and strictly decodes the packets a broker sends (CONNACK,
// PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP).
//
// It exists instead of a full client library because a benchmark must see
// every packet: the CONNACK code of each connection, the exact moment the
// CONNACK arrived, and a malformed broker packet as an error rather than
// something a library quietly retries or reconnects around.
package mqttc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Packet types (MQTT 3.1.1 section 2.2.1).
const (
	CONNECT     byte = 1
	CONNACK     byte = 2
	PUBLISH     byte = 3
	PUBACK      byte = 4
	PUBREC      byte = 5
	PUBREL      byte = 6
	PUBCOMP     byte = 7
	SUBSCRIBE   byte = 8
	SUBACK      byte = 9
	UNSUBSCRIBE byte = 10
	UNSUBACK    byte = 11
	PINGREQ     byte = 12
	PINGRESP    byte = 13
	DISCONNECT  byte = 14
)

// CONNACK return codes (section 3.2.2.3).
const (
	Accepted             byte = 0
	RefusedProtocol      byte = 1
	RefusedIdentifier    byte = 2
	RefusedUnavailable   byte = 3
	RefusedBadUserPass   byte = 4
	RefusedNotAuthorized byte = 5
)

// SubackFailure is the SUBACK return code of a refused filter.
const SubackFailure byte = 0x80

// MaxRemainingLength is the largest remaining length the 4-byte variable
// length encoding can carry.
const MaxRemainingLength = 268435455

// ErrMalformed is wrapped by every decoding error caused by the bytes
// themselves (as opposed to the connection failing).
var ErrMalformed = errors.New("malformed MQTT packet")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Packet is a decoded broker-to-client packet. Only the fields of its Type
// are set.
type Packet struct {
	Type byte
	// CONNACK
	SessionPresent bool
	ReturnCode     byte
	// PUBLISH, PUBACK, SUBACK, UNSUBACK
	PacketID uint16
	// PUBLISH
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Dup     bool
	// SUBACK: one code per filter, 0–2 granted QoS or SubackFailure.
	ReturnCodes []byte
}

// ConnectOptions are the fields of a CONNECT this client sends.
type ConnectOptions struct {
	ClientID     string
	Username     string // empty: no username flag
	Password     []byte // nil: no password flag (needs Username)
	CleanSession bool
	KeepAlive    uint16 // seconds; 0 disables
}

// AppendConnect appends a CONNECT packet (protocol level 4).
func AppendConnect(b []byte, o ConnectOptions) ([]byte, error) {
	if o.Password != nil && o.Username == "" {
		return b, errors.New("mqttc: a password needs a username in MQTT 3.1.1")
	}
	for _, s := range []string{o.ClientID, o.Username} {
		if err := checkString(s); err != nil {
			return b, err
		}
	}
	flags := byte(0)
	if o.CleanSession {
		flags |= 0x02
	}
	n := 10 + 2 + len(o.ClientID)
	if o.Username != "" {
		flags |= 0x80
		n += 2 + len(o.Username)
	}
	if o.Password != nil {
		flags |= 0x40
		n += 2 + len(o.Password)
	}
	b = appendHeader(b, CONNECT<<4, n)
	b = appendString(b, "MQTT")
	b = append(b, 4, flags)
	b = binary.BigEndian.AppendUint16(b, o.KeepAlive)
	b = appendString(b, o.ClientID)
	if o.Username != "" {
		b = appendString(b, o.Username)
	}
	if o.Password != nil {
		b = binary.BigEndian.AppendUint16(b, uint16(len(o.Password)))
		b = append(b, o.Password...)
	}
	return b, nil
}

// AppendPublish appends a PUBLISH packet. id must be non-zero for QoS 1
// and 2 and is not sent for QoS 0.
func AppendPublish(b []byte, topic string, payload []byte, qos byte, retain bool, id uint16) ([]byte, error) {
	if qos > 2 {
		return b, fmt.Errorf("mqttc: QoS %d", qos)
	}
	if err := checkTopicName(topic); err != nil {
		return b, err
	}
	if qos > 0 && id == 0 {
		return b, errors.New("mqttc: QoS 1 and 2 PUBLISH need a non-zero packet id")
	}
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	if n > MaxRemainingLength {
		return b, errors.New("mqttc: PUBLISH too large")
	}
	h := PUBLISH<<4 | qos<<1
	if retain {
		h |= 1
	}
	b = appendHeader(b, h, n)
	b = appendString(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return append(b, payload...), nil
}

// AppendPuback appends the PUBACK of a received QoS 1 PUBLISH.
func AppendPuback(b []byte, id uint16) []byte {
	return binary.BigEndian.AppendUint16(append(b, PUBACK<<4, 2), id)
}

// Subscription is one topic filter of a SUBSCRIBE and its requested QoS.
type Subscription struct {
	Filter string
	QoS    byte
}

// AppendSubscribe appends a SUBSCRIBE packet (fixed header flags 0010).
func AppendSubscribe(b []byte, id uint16, subs ...Subscription) ([]byte, error) {
	if id == 0 || len(subs) == 0 {
		return b, errors.New("mqttc: SUBSCRIBE needs a non-zero packet id and at least one filter")
	}
	n := 2
	for _, s := range subs {
		if s.Filter == "" || s.QoS > 2 {
			return b, fmt.Errorf("mqttc: bad subscription %q QoS %d", s.Filter, s.QoS)
		}
		if err := checkString(s.Filter); err != nil {
			return b, err
		}
		n += 2 + len(s.Filter) + 1
	}
	b = appendHeader(b, SUBSCRIBE<<4|0x02, n)
	b = binary.BigEndian.AppendUint16(b, id)
	for _, s := range subs {
		b = append(appendString(b, s.Filter), s.QoS)
	}
	return b, nil
}

// AppendPingreq appends a PINGREQ packet.
func AppendPingreq(b []byte) []byte { return append(b, PINGREQ<<4, 0) }

// AppendDisconnect appends a DISCONNECT packet.
func AppendDisconnect(b []byte) []byte { return append(b, DISCONNECT<<4, 0) }

func appendHeader(b []byte, first byte, n int) []byte {
	b = append(b, first)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// checkString enforces the UTF-8 string rules of section 1.5.3 that apply
// to both directions: at most 65535 bytes, valid UTF-8, no U+0000.
func checkString(s string) error {
	if len(s) > 65535 {
		return malformed("string of %d bytes", len(s))
	}
	if !utf8.ValidString(s) {
		return malformed("string is not UTF-8")
	}
	if strings.ContainsRune(s, 0) {
		return malformed("string holds U+0000")
	}
	return nil
}

// checkTopicName is checkString plus the topic name rules (section 4.7):
// not empty, no wildcards.
func checkTopicName(s string) error {
	if s == "" {
		return malformed("empty topic name")
	}
	if strings.ContainsAny(s, "+#") {
		return malformed("topic name %q holds a wildcard", s)
	}
	return checkString(s)
}

// ReadPacket reads one packet from r and decodes it strictly. Packets
// larger than maxSize (remaining length) are refused before their body is
// read, so a broken broker cannot make the client allocate without bound.
func ReadPacket(r *bufio.Reader, maxSize int) (Packet, error) {
	first, err := r.ReadByte()
	if err != nil {
		return Packet{}, err
	}
	n, err := readRemainingLength(r)
	if err != nil {
		return Packet{}, err
	}
	if n > maxSize {
		return Packet{}, malformed("packet of %d bytes exceeds the limit of %d", n, maxSize)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Packet{}, err
	}
	return Decode(first, body)
}

// readRemainingLength decodes the variable length integer of section
// 2.2.3; a non-minimal encoding is accepted by the spec's algorithm, a
// fifth byte is not.
func readRemainingLength(r io.ByteReader) (int, error) {
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		d, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n += int(d&0x7f) * mul
		if d&0x80 == 0 {
			return n, nil
		}
		mul *= 128
	}
	return 0, malformed("remaining length longer than 4 bytes")
}

// Decode decodes one broker-to-client packet from its first header byte
// and its body (the remaining length bytes). Anything a conforming broker
// does not send is an error wrapping ErrMalformed: client-to-server
// packet types, reserved flag bits, wrong lengths, bad return codes,
// invalid strings.
func Decode(first byte, body []byte) (Packet, error) {
	typ, flags := first>>4, first&0x0f
	p := Packet{Type: typ}
	if typ != PUBLISH && flags != fixedFlags(typ) {
		return p, malformed("packet type %d with flags %04b", typ, flags)
	}
	switch typ {
	case CONNACK:
		if len(body) != 2 {
			return p, malformed("CONNACK of %d bytes", len(body))
		}
		if body[0]&^1 != 0 {
			return p, malformed("CONNACK acknowledge flags %08b", body[0])
		}
		if body[1] > RefusedNotAuthorized {
			return p, malformed("CONNACK return code %d", body[1])
		}
		p.SessionPresent, p.ReturnCode = body[0] == 1, body[1]
		// A refused connection never has a session (section 3.2.2.2).
		if p.SessionPresent && p.ReturnCode != Accepted {
			return p, malformed("CONNACK refuses with session present")
		}
	case PUBACK, PUBREC, PUBCOMP, PUBREL, UNSUBACK:
		if len(body) != 2 {
			return p, malformed("packet type %d of %d bytes", typ, len(body))
		}
		p.PacketID = binary.BigEndian.Uint16(body)
		if p.PacketID == 0 {
			return p, malformed("packet id 0")
		}
	case SUBACK:
		if len(body) < 3 {
			return p, malformed("SUBACK of %d bytes", len(body))
		}
		p.PacketID = binary.BigEndian.Uint16(body)
		if p.PacketID == 0 {
			return p, malformed("packet id 0")
		}
		for _, c := range body[2:] {
			if c > 2 && c != SubackFailure {
				return p, malformed("SUBACK return code %#x", c)
			}
		}
		p.ReturnCodes = append([]byte(nil), body[2:]...)
	case PINGRESP:
		if len(body) != 0 {
			return p, malformed("PINGRESP of %d bytes", len(body))
		}
	case PUBLISH:
		return decodePublish(flags, body)
	default:
		return p, malformed("packet type %d is not sent by a broker", typ)
	}
	return p, nil
}

// fixedFlags are the required fixed header flags of each non-PUBLISH type
// (section 2.2.2).
func fixedFlags(typ byte) byte {
	switch typ {
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		return 0x02
	}
	return 0
}

func decodePublish(flags byte, body []byte) (Packet, error) {
	p := Packet{Type: PUBLISH, Dup: flags&0x08 != 0, QoS: flags >> 1 & 3, Retain: flags&1 != 0}
	if p.QoS == 3 {
		return p, malformed("PUBLISH with QoS 3")
	}
	if p.Dup && p.QoS == 0 {
		return p, malformed("QoS 0 PUBLISH with DUP set")
	}
	if len(body) < 2 {
		return p, malformed("PUBLISH of %d bytes", len(body))
	}
	tl := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	if len(rest) < tl {
		return p, malformed("PUBLISH topic of %d bytes in %d", tl, len(rest))
	}
	p.Topic, rest = string(rest[:tl]), rest[tl:]
	if err := checkTopicName(p.Topic); err != nil {
		return p, err
	}
	if p.QoS > 0 {
		if len(rest) < 2 {
			return p, malformed("QoS %d PUBLISH without packet id", p.QoS)
		}
		p.PacketID, rest = binary.BigEndian.Uint16(rest), rest[2:]
		if p.PacketID == 0 {
			return p, malformed("packet id 0")
		}
	}
	p.Payload = rest
	return p, nil
}
