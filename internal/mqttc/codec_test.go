package mqttc

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The golden bytes were written out by hand from the MQTT 3.1.1
// specification's field layouts, not produced by this code.
func TestEncodeGolden(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, 200)
	tests := []struct {
		name string
		enc  func() ([]byte, error)
		want string
	}{
		{"connect clean, keepalive 60", func() ([]byte, error) {
			return AppendConnect(nil, ConnectOptions{ClientID: "d1", CleanSession: true, KeepAlive: 60})
		}, "10 0e 0004 4d515454 04 02 003c 0002 6431"},
		{"connect with username and password", func() ([]byte, error) {
			return AppendConnect(nil, ConnectOptions{ClientID: "c", Username: "u", Password: []byte("pw"), KeepAlive: 0x0102})
		}, "10 14 0004 4d515454 04 c0 0102 0001 63 0001 75 0002 7077"},
		{"connect empty client id", func() ([]byte, error) {
			return AppendConnect(nil, ConnectOptions{CleanSession: true})
		}, "10 0c 0004 4d515454 04 02 0000 0000"},
		{"publish qos0", func() ([]byte, error) { return AppendPublish(nil, "a/b", []byte("hi"), 0, false, 0) },
			"30 07 0003 612f62 6869"},
		{"publish qos1 retain", func() ([]byte, error) { return AppendPublish(nil, "a", []byte{1}, 1, true, 0x1234) },
			"33 06 0001 61 1234 01"},
		{"publish two-byte remaining length", func() ([]byte, error) { return AppendPublish(nil, "t", big, 0, false, 0) },
			"30 cb01 0001 74" + hex.EncodeToString(big)},
		{"puback", func() ([]byte, error) { return AppendPuback(nil, 7), nil }, "40 02 0007"},
		{"subscribe two filters", func() ([]byte, error) {
			return AppendSubscribe(nil, 10, Subscription{"a/#", 1}, Subscription{"b/+", 0})
		}, "82 0e 000a 0003 612f23 01 0003 622f2b 00"},
		{"pingreq", func() ([]byte, error) { return AppendPingreq(nil), nil }, "c0 00"},
		{"disconnect", func() ([]byte, error) { return AppendDisconnect(nil), nil }, "e0 00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.enc()
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Fatalf("got  % x\nwant % x", got, want)
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	tests := []struct {
		name string
		enc  func() ([]byte, error)
	}{
		{"password without username", func() ([]byte, error) {
			return AppendConnect(nil, ConnectOptions{ClientID: "c", Password: []byte("p")})
		}},
		{"client id not UTF-8", func() ([]byte, error) { return AppendConnect(nil, ConnectOptions{ClientID: "\xff"}) }},
		{"publish wildcard topic", func() ([]byte, error) { return AppendPublish(nil, "a/+", nil, 0, false, 0) }},
		{"publish empty topic", func() ([]byte, error) { return AppendPublish(nil, "", nil, 0, false, 0) }},
		{"publish qos1 id 0", func() ([]byte, error) { return AppendPublish(nil, "a", nil, 1, false, 0) }},
		{"publish qos3", func() ([]byte, error) { return AppendPublish(nil, "a", nil, 3, false, 1) }},
		{"subscribe id 0", func() ([]byte, error) { return AppendSubscribe(nil, 0, Subscription{"a", 0}) }},
		{"subscribe no filter", func() ([]byte, error) { return AppendSubscribe(nil, 1) }},
		{"subscribe qos 3", func() ([]byte, error) { return AppendSubscribe(nil, 1, Subscription{"a", 3}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := tc.enc(); err == nil {
				t.Fatalf("encoded % x, want an error", b)
			}
		})
	}
}

func TestReadPacket(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Packet
		bad  bool // wraps ErrMalformed
	}{
		{"connack accepted", "20 02 00 00", Packet{Type: CONNACK}, false},
		{"connack session present", "20 02 01 00", Packet{Type: CONNACK, SessionPresent: true}, false},
		{"connack not authorized", "20 02 00 05", Packet{Type: CONNACK, ReturnCode: RefusedNotAuthorized}, false},
		{"puback", "40 02 01 02", Packet{Type: PUBACK, PacketID: 0x0102}, false},
		{"unsuback", "b0 02 00 09", Packet{Type: UNSUBACK, PacketID: 9}, false},
		{"suback granted and refused", "90 05 00 0a 01 80 00", Packet{Type: SUBACK, PacketID: 10, ReturnCodes: []byte{1, 0x80, 0}}, false},
		{"pingresp", "d0 00", Packet{Type: PINGRESP}, false},
		{"publish qos0", "30 07 0003 612f62 6869", Packet{Type: PUBLISH, Topic: "a/b", Payload: []byte("hi")}, false},
		{"publish qos1 dup retain", "3b 06 0001 61 1234 01", Packet{Type: PUBLISH, Topic: "a", QoS: 1, Dup: true, Retain: true, PacketID: 0x1234, Payload: []byte{1}}, false},
		{"publish qos1 empty payload", "32 05 0001 61 0001", Packet{Type: PUBLISH, Topic: "a", QoS: 1, PacketID: 1, Payload: []byte{}}, false},
		{"pubrel needs flags 0010", "62 02 00 01", Packet{Type: PUBREL, PacketID: 1}, false},
		{"non-minimal length accepted", "d0 80 00", Packet{Type: PINGRESP}, false},

		{"connack long", "20 03 00 00 00", Packet{}, true},
		{"connack reserved flag", "20 02 02 00", Packet{}, true},
		{"connack code 6", "20 02 00 06", Packet{}, true},
		{"connack refused with session", "20 02 01 05", Packet{}, true},
		{"connack header flags", "21 02 00 00", Packet{}, true},
		{"puback id 0", "40 02 00 00", Packet{}, true},
		{"puback short", "40 01 00", Packet{}, true},
		{"suback no codes", "90 02 00 01", Packet{}, true},
		{"suback code 3", "90 03 00 01 03", Packet{}, true},
		{"pingresp with body", "d0 01 00", Packet{}, true},
		{"pubrel flags 0000", "60 02 00 01", Packet{}, true},
		{"publish qos3", "36 05 0001 61 0001", Packet{}, true},
		{"publish qos0 dup", "38 03 0001 61", Packet{}, true},
		{"publish topic overruns", "30 03 0005 61", Packet{}, true},
		{"publish wildcard topic", "30 03 0001 23", Packet{}, true},
		{"publish empty topic", "30 02 0000", Packet{}, true},
		{"publish topic not utf-8", "30 03 0001 ff", Packet{}, true},
		{"publish topic with nul", "30 03 0001 00", Packet{}, true},
		{"publish qos1 no id", "32 03 0001 61", Packet{}, true},
		{"publish qos1 id 0", "32 05 0001 61 0000", Packet{}, true},
		{"server sends connect", "10 00", Packet{}, true},
		{"server sends subscribe", "82 03 00 01 00", Packet{}, true},
		{"reserved type 0", "00 00", Packet{}, true},
		{"reserved type 15", "f0 00", Packet{}, true},
		{"five-byte length", "30 ff ff ff ff 01", Packet{}, true},
		{"over the size limit", "30 ff ff 03", Packet{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ReadPacket(bufio.NewReader(bytes.NewReader(unhex(t, tc.in))), 1024)
			if tc.bad {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %+v, %v; want ErrMalformed", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", p, tc.want)
			}
		})
	}
}

// A connection that ends inside a packet is an unexpected EOF, not a
// malformed packet: the broker went away.
func TestReadPacketTruncated(t *testing.T) {
	for _, in := range []string{"20", "20 02 00", "30 80"} {
		_, err := ReadPacket(bufio.NewReader(bytes.NewReader(unhex(t, in))), 1024)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
	if _, err := ReadPacket(bufio.NewReader(bytes.NewReader(nil)), 1024); err != io.EOF {
		t.Errorf("empty input: %v, want io.EOF", err)
	}
}

// Every PUBLISH this package encodes decodes to the same fields.
func TestPublishRoundTrip(t *testing.T) {
	for _, qos := range []byte{0, 1, 2} {
		for _, n := range []int{0, 1, 127, 128, 16383, 16384, 70000} {
			payload := bytes.Repeat([]byte{byte(n)}, n)
			b, err := AppendPublish(nil, "fleets/f/devices/d/telemetry/x", payload, qos, qos == 1, uint16(n%65535)+1)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ReadPacket(bufio.NewReader(bytes.NewReader(b)), 1<<20)
			if err != nil {
				t.Fatalf("qos %d, %d bytes: %v", qos, n, err)
			}
			var wantID uint16
			if qos > 0 {
				wantID = uint16(n%65535) + 1
			}
			if p.Topic != "fleets/f/devices/d/telemetry/x" || !bytes.Equal(p.Payload, payload) || p.QoS != qos ||
				p.Retain != (qos == 1) || p.PacketID != wantID {
				t.Fatalf("qos %d, %d bytes: decoded %+v", qos, n, p)
			}
		}
	}
}

// FuzzReadPacket feeds arbitrary bytes to the decoder: it must never panic,
// never return a packet of a type a broker does not send, and whatever it
// accepts as a PUBLISH must re-encode to the very same bytes.
func FuzzReadPacket(f *testing.F) {
	for _, s := range []string{"20020000", "20020105", "40020102", "9005000a018000", "d000",
		"300700036 12f626869", "3b0600016112340 1", "6202 0001", "30ffffff7f"} {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		p, err := ReadPacket(r, 4096)
		if err != nil {
			return
		}
		switch p.Type {
		case CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP:
		default:
			t.Fatalf("accepted packet type %d", p.Type)
		}
		if p.Type == PUBLISH {
			re, err := AppendPublish(nil, p.Topic, p.Payload, p.QoS, p.Retain, p.PacketID)
			if err != nil {
				t.Fatalf("accepted PUBLISH %+v does not re-encode: %v", p, err)
			}
			if p.Dup {
				re[0] |= 0x08
			}
			back, err := ReadPacket(bufio.NewReader(bytes.NewReader(re)), 1<<20)
			if err != nil || !reflect.DeepEqual(back, p) {
				t.Fatalf("re-encoded PUBLISH decodes to %+v, %v; want %+v", back, err, p)
			}
		}
	})
}
