package mqttc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// fakeBroker reads exactly len(want) bytes from the client, checks them and
// answers with reply.
func fakeBroker(t *testing.T, srv net.Conn, want, reply []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(srv, got); err != nil {
			done <- err
			return
		}
		if !bytes.Equal(got, want) {
			done <- errors.New("client sent unexpected bytes: " + string(got))
			return
		}
		_, err := srv.Write(reply)
		done <- err
	}()
	return done
}

func TestConnConnect(t *testing.T) {
	opts := ConnectOptions{ClientID: "d1", CleanSession: true, KeepAlive: 60}
	connect, _ := AppendConnect(nil, opts)
	tests := []struct {
		name     string
		reply    string
		wantCode byte
		wantErr  bool
	}{
		{"accepted", "20 02 00 00", Accepted, false},
		{"not authorized", "20 02 00 05", RefusedNotAuthorized, false},
		{"publish before connack", "30 03 0001 61", 0, true},
		{"malformed connack", "20 02 00 09", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cli, srv := net.Pipe()
			defer cli.Close()
			defer srv.Close()
			done := fakeBroker(t, srv, connect, unhex(t, tc.reply))
			p, err := NewConn(cli).Connect(opts, 2*time.Second)
			if berr := <-done; berr != nil {
				t.Fatal(berr)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", p)
				}
				return
			}
			if err != nil || p.Type != CONNACK || p.ReturnCode != tc.wantCode {
				t.Fatalf("got %+v, %v; want CONNACK code %d", p, err, tc.wantCode)
			}
		})
	}
}

// A broker that never answers makes Connect fail at its timeout rather than
// hang the load tool.
func TestConnConnectTimeout(t *testing.T) {
	cli, srv := net.Pipe()
	defer cli.Close()
	defer srv.Close()
	go func() { _, _ = io.Copy(io.Discard, srv) }()
	start := time.Now()
	_, err := NewConn(cli).Connect(ConnectOptions{ClientID: "x"}, 100*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v, want a timeout", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

// Publish, Puback, Subscribe, Ping and Disconnect put the golden bytes on
// the wire, with packet ids counting up from 1 and skipping 0 on wrap.
func TestConnWrites(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	c := NewConn(cli)
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(srv); got <- b }()
	if id, err := c.Publish("a", []byte{1}, 1, false); err != nil || id != 1 {
		t.Fatalf("publish: id %d, %v", id, err)
	}
	if id, err := c.Publish("a", nil, 0, false); err != nil || id != 0 {
		t.Fatalf("qos0 publish: id %d, %v", id, err)
	}
	if err := c.Puback(5); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.nextID = 65535
	if id, err := c.Subscribe(time.Second, Subscription{"a/#", 1}); err != nil || id != 1 {
		t.Fatalf("subscribe after wrap: id %d, %v", id, err)
	}
	if err := c.Ping(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(time.Second); err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "32 06 0001 61 0001 01  30 03 0001 61  40 02 0005  82 08 0001 0003 612f23 01  c0 00  e0 00")
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("wire:\n got % x\nwant % x", b, want)
	}
}

// The reader side sees what a broker delivers, packet by packet.
func TestConnReadPacket(t *testing.T) {
	c := &Conn{r: bufio.NewReader(bytes.NewReader(unhex(t, "90 03 0001 01  32 05 0001 61 0007  d0 00"))), MaxPacket: 64}
	var types []byte
	for {
		p, err := c.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Type)
	}
	if !bytes.Equal(types, []byte{SUBACK, PUBLISH, PINGRESP}) {
		t.Fatalf("types %v", types)
	}
}
