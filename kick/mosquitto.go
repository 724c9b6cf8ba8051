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
	// Subscribers counts the open streams of the broker name.
	Subscribers(broker string) int
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
// The kick goes to the streams open on this replica. A replica without one
// (the plugin streams to another replica) leaves the kick to the replica
// that has it (Local); past Config.Elsewhere it tries anyway, the attempt
// fails and the worker retries it, as it does a management API that does
// not answer, so a plugin down everywhere still ends in a failed kick.
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
	oks      int
	result   chan error // buffered 1: the outcome, once every stream answered
	decided  bool
}

// Mosquitto is a Broker reachable from some replicas only; a signature
// drift breaks the build here.
var (
	_ Broker = (*Mosquitto)(nil)
	_ Local  = (*Mosquitto)(nil)
)

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

// Here implements Local: a plugin of the broker name streams to this replica.
func (m *Mosquitto) Here() bool { return m.cfg.Streams.Subscribers(m.cfg.Name) > 0 }

// Disconnect implements Broker: it sends a kick event to every open stream
// of the broker name and waits until every one of them acknowledged ok.
// Several brokers may share a name (a cluster behind one balancer): one
// that holds no session for the device answers ok at once, so its answer
// alone says nothing about the broker that does. Any stream answering not
// ok, no stream, or not every answer within AckTimeout is an error (the
// worker retries).
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
			return fmt.Errorf("%d of %d event streams acknowledged within %s (%d failed: %s)", p.oks+p.failures, n, m.cfg.AckTimeout, p.failures, p.lastErr)
		}
		return fmt.Errorf("%d of %d event streams of broker %q acknowledged within %s", p.oks, n, m.cfg.Name, m.cfg.AckTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settle decides a kick once every stream reached has answered: done when
// all said ok, failed when any did not; m.mu is held.
func (m *Mosquitto) settle(p *pendingKick) {
	if p.decided || p.sent == 0 || p.oks+p.failures < p.sent {
		return
	}
	p.decided = true
	if p.failures > 0 {
		p.result <- fmt.Errorf("broker %q could not kick the device (%d of %d event streams failed): %s", p.broker, p.failures, p.sent, p.lastErr)
		return
	}
	p.result <- nil
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
		p.oks++
		m.cfg.Log.Debug("mosquitto kick acknowledged", "broker", broker, "sessions", sessions)
		m.settle(p)
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
