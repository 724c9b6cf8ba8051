package mqttc

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// DefaultMaxPacket bounds the packets a Conn reads from the broker.
const DefaultMaxPacket = 1 << 20

// Conn is one MQTT connection. Reads (ReadPacket) and writes (the other
// methods) may run on two different goroutines, but neither kind is safe
// for concurrent use with itself.
type Conn struct {
	nc        net.Conn
	r         *bufio.Reader
	w         *bufio.Writer
	buf       []byte
	nextID    uint16
	MaxPacket int
}

// Dial opens a TCP connection to addr and, when cfg is not nil, completes
// the TLS handshake before returning, so the caller can time both.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		nc = tc
	}
	return NewConn(nc), nil
}

// NewConn wraps an established connection (plain or TLS).
func NewConn(nc net.Conn) *Conn {
	return &Conn{nc: nc, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 4096), MaxPacket: DefaultMaxPacket}
}

// NetConn is the underlying connection (for deadlines and Close).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection without a DISCONNECT.
func (c *Conn) Close() error { return c.nc.Close() }

// ReadPacket reads and strictly decodes the next packet from the broker.
func (c *Conn) ReadPacket() (Packet, error) { return ReadPacket(c.r, c.MaxPacket) }

// Connect sends CONNECT and waits for the CONNACK, which it returns. Any
// other packet first is a protocol error. A refused CONNACK is not an
// error: the caller wants its code.
func (c *Conn) Connect(o ConnectOptions, timeout time.Duration) (Packet, error) {
	var err error
	if c.buf, err = AppendConnect(c.buf[:0], o); err != nil {
		return Packet{}, err
	}
	if err := c.send(timeout); err != nil {
		return Packet{}, err
	}
	if timeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
		defer c.nc.SetReadDeadline(time.Time{})
	}
	p, err := c.ReadPacket()
	if err != nil {
		return p, err
	}
	if p.Type != CONNACK {
		return p, malformed("packet type %d before CONNACK", p.Type)
	}
	return p, nil
}

// NextID returns the next non-zero packet id, wrapping at 65535.
func (c *Conn) NextID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// Publish buffers a PUBLISH (call Flush to send it) and returns its packet
// id (0 for QoS 0).
func (c *Conn) Publish(topic string, payload []byte, qos byte, retain bool) (uint16, error) {
	var id uint16
	if qos > 0 {
		id = c.NextID()
	}
	var err error
	if c.buf, err = AppendPublish(c.buf[:0], topic, payload, qos, retain, id); err != nil {
		return 0, err
	}
	_, err = c.w.Write(c.buf)
	return id, err
}

// Puback buffers the PUBACK of a received QoS 1 PUBLISH.
func (c *Conn) Puback(id uint16) error {
	c.buf = AppendPuback(c.buf[:0], id)
	_, err := c.w.Write(c.buf)
	return err
}

// Subscribe sends a SUBSCRIBE and returns its packet id; the SUBACK comes
// through ReadPacket.
func (c *Conn) Subscribe(timeout time.Duration, subs ...Subscription) (uint16, error) {
	id := c.NextID()
	var err error
	if c.buf, err = AppendSubscribe(c.buf[:0], id, subs...); err != nil {
		return 0, err
	}
	return id, c.send(timeout)
}

// Ping sends a PINGREQ; the PINGRESP comes through ReadPacket.
func (c *Conn) Ping(timeout time.Duration) error {
	c.buf = AppendPingreq(c.buf[:0])
	return c.send(timeout)
}

// Disconnect sends DISCONNECT and closes the connection.
func (c *Conn) Disconnect(timeout time.Duration) error {
	c.buf = AppendDisconnect(c.buf[:0])
	err := c.send(timeout)
	if cerr := c.nc.Close(); err == nil {
		err = cerr
	}
	return err
}

// Buffered is the number of received bytes not yet read: a reader that
// acknowledges packets flushes its acknowledgements only when it is 0.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// Flush writes buffered packets.
func (c *Conn) Flush() error { return c.w.Flush() }

func (c *Conn) send(timeout time.Duration) error {
	if timeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		defer c.nc.SetWriteDeadline(time.Time{})
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return err
	}
	return c.w.Flush()
}
