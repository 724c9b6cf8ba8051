package kick

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Streams reaches the event streams brokers hold open to this replica
// (the events hub).
type Streams interface {
	// Send queues ev on every open stream of the broker name and returns
	// how many it reached.
	Send(broker string, ev events.Event) int
}

// MosquittoConfig configures the Mosquitto kicker.
type MosquittoConfig struct {
	// Name identifies the broker in kick status and is the broker name its
	// plugin opens the event stream with (default "mosquitto").
	Name    string
	Streams Streams
	// AckTimeout bounds the wait for the plugin's acknowledgement
	// (default 5s); past it the attempt fails and is retried.
	AckTimeout time.Duration
	Log        *slog.Logger
}

// DefaultAckTimeout is MosquittoConfig.AckTimeout's default.
const DefaultAckTimeout = 5 * time.Second

// Mosquitto kicks through the gatehouse-mosquitto plugin: Mosquitto has no
// management API, so the plugin, which holds an event stream open to
// Gatehouse, receives a kick event, disconnects the device's sessions
// inside the broker and posts the result back (AckKick).
//
// The kick goes to the streams open on this replica. With none (the plugin
// is down, or connected to another replica), the attempt fails and the
// worker retries it, as it does a management API that does not answer.
type Mosquitto struct {
	cfg     MosquittoConfig
	mu      sync.Mutex
	pending map[string]*pendingKick
}

// pendingKick is one attempt waiting for acknowledgements.
type pendingKick struct {
	broker   string
	sent     int // streams reached; 0 until Send returned
	failures int
	lastErr  string
	result   chan error // buffered 1: the first decisive outcome
	decided  bool
}

// Mosquitto is a Broker; a signature drift breaks the build here.
var _ Broker = (*Mosquitto)(nil)

// NewMosquitto returns the Mosquitto kicker.
func NewMosquitto(cfg MosquittoConfig) (*Mosquitto, error) {
	if cfg.Name == "" {
		cfg.Name = "mosquitto"
	}
	if !deviceid.Valid(cfg.Name) {
		return nil, fault.New(fault.InvalidArgument, "kick: mosquitto broker name %q must match %s", cfg.Name, deviceid.Grammar)
	}
	if cfg.Streams == nil {
		return nil, fault.New(fault.InvalidArgument, "kick: the mosquitto kicker needs the event streams")
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Mosquitto{cfg: cfg, pending: map[string]*pendingKick{}}, nil
}

// Name implements Broker.
func (m *Mosquitto) Name() string { return m.cfg.Name }

// Disconnect implements Broker: it sends a kick event to every open stream
// of the broker name and waits for the first ok acknowledgement. Every
// stream answering not ok, no stream, or no answer within AckTimeout is an
// error (the worker retries).
func (m *Mosquitto) Disconnect(ctx context.Context, r Request) error {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	p := &pendingKick{broker: m.cfg.Name, result: make(chan error, 1)}
	// Registered before the event goes out: a fast plugin may answer
	// before Send returns.
	m.mu.Lock()
	m.pending[id] = p
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}()
	n := m.cfg.Streams.Send(m.cfg.Name, events.Kick(id, r.Device, r.Reason))
	if n == 0 {
		return fmt.Errorf("no event stream of broker %q is open on this replica: the gatehouse-mosquitto plugin is not connected", m.cfg.Name)
	}
	m.mu.Lock()
	p.sent = n
	m.settle(p)
	m.mu.Unlock()
	t := time.NewTimer(m.cfg.AckTimeout)
	defer t.Stop()
	select {
	case err := <-p.result:
		return err
	case <-t.C:
		m.mu.Lock()
		defer m.mu.Unlock()
		if p.failures > 0 {
			return fmt.Errorf("no ok acknowledgement within %s from %d event streams (%d failed: %s)", m.cfg.AckTimeout, n, p.failures, p.lastErr)
		}
		return fmt.Errorf("no acknowledgement within %s from %d event streams of broker %q", m.cfg.AckTimeout, n, m.cfg.Name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settle decides a kick every stream reached has failed; m.mu is held.
func (m *Mosquitto) settle(p *pendingKick) {
	if !p.decided && p.sent > 0 && p.failures >= p.sent {
		p.decided = true
		p.result <- fmt.Errorf("broker %q could not kick the device: %s", p.broker, p.lastErr)
	}
}

// AckKick records a plugin's acknowledgement of the kick id. An id that is
// not waiting (unknown, answered too late, or of another broker name) is a
// NotFound fault.
func (m *Mosquitto) AckKick(broker, id string, ok bool, errText string, sessions int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pending[id]
	if p == nil || p.broker != broker {
		return fault.New(fault.NotFound, "no kick %q is waiting for broker %q", id, broker)
	}
	if p.decided {
		return nil
	}
	if ok {
		p.decided = true
		p.result <- nil
		m.cfg.Log.Debug("mosquitto kick acknowledged", "broker", broker, "sessions", sessions)
		return nil
	}
	p.failures++
	p.lastErr = errText
	if p.lastErr == "" {
		p.lastErr = "no reason given"
	}
	m.settle(p)
	return nil
}
