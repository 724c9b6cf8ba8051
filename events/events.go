// Package events fans the decision core's changes out to brokers that cache
// decisions (the gatehouse-mosquitto plugin): which device changed, when
// every cached decision is void, and which device's sessions to kick.
//
// A Hub never blocks its publishers and never grows without bound: each
// subscriber has a fixed buffer, and a subscriber that lets it fill is
// dropped (its Done channel closes). That is safe because a subscriber that
// reconnects drops its whole cache: it may have missed events, whatever the
// reason. The core that publishes here is the replica's own in-memory view,
// fed by its database sync, so a change made through any replica reaches
// the streams of every replica after that replica's next sync.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/loop"
)

// Event names of protocol v1.
const (
	NameHello     = "hello"
	NameHeartbeat = "heartbeat"
	NameDevice    = "device"
	NameReset     = "reset"
	NameKick      = "kick"
)

// Event is one server-sent event, rendered once however many subscribers
// receive it.
type Event struct {
	name  string
	frame []byte
	// device is a device event's device, for its echo.
	device string
}

// New renders an event: "event: <name>\ndata: <data as one-line JSON>\n\n".
// encoding/json never writes a raw newline, so the data stays one line.
func New(name string, data any) Event {
	b, err := json.Marshal(data)
	if err != nil {
		// Only the package's own plain structs are passed here.
		panic("events: " + err.Error())
	}
	f := make([]byte, 0, len(name)+len(b)+16)
	f = append(f, "event: "...)
	f = append(f, name...)
	f = append(f, "\ndata: "...)
	f = append(f, b...)
	f = append(f, "\n\n"...)
	return Event{name: name, frame: f}
}

// Name is the event's name.
func (e Event) Name() string { return e.name }

// Frame is the event as written on the stream. Callers must not modify it.
func (e Event) Frame() []byte { return e.frame }

// Device announces that anything about a device changed (status,
// certificate, roles, labels): every cached decision about it is void.
func Device(id string) Event {
	ev := New(NameDevice, struct {
		Device string `json:"device"`
	}{id})
	ev.device = id
	return ev
}

// Reset announces a change that may alter many decisions (a policy
// activation): every cached decision is void.
func Reset() Event { return New(NameReset, struct{}{}) }

// Kick asks the broker to disconnect a device's sessions and to acknowledge
// the kick under id.
func Kick(id, device, reason string) Event {
	return New(NameKick, struct {
		ID     string `json:"id"`
		Device string `json:"device"`
		Reason string `json:"reason"`
	}{id, device, reason})
}

// DefaultBuffer is Config.Buffer's default: room for a burst of device
// changes (an enrollment wave, a bulk revocation) between two reads of a
// healthy subscriber.
const DefaultBuffer = 4096

// Config configures a Hub.
type Config struct {
	// Buffer is how many events wait for one subscriber before it is
	// dropped as too slow; default DefaultBuffer.
	Buffer int
	// Echo lists the delays after which every device and reset event is
	// announced again (echo.go); none by default. cmd sets 2s and the
	// decision core's max_staleness plus a margin.
	Echo []time.Duration
	// Now is the clock of the echoes; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Errors a subscription ends with.
var (
	// ErrSlow: the subscriber let its buffer fill and was dropped.
	ErrSlow = errors.New("events: subscriber too slow, dropped")
	// ErrClosed: the hub closed (the server is stopping).
	ErrClosed = errors.New("events: hub closed")
)

// Hub distributes events to subscriptions. It is safe for concurrent use.
type Hub struct {
	cfg     Config
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	closed  bool
	dropped atomic.Uint64
	echoes  []echoQueue // one per Config.Echo delay; guarded by mu
}

// NewHub returns a Hub.
func NewHub(cfg Config) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Hub{cfg: cfg, subs: map[*Subscription]struct{}{}}
	for _, d := range cfg.Echo {
		if d > 0 {
			h.echoes = append(h.echoes, echoQueue{delay: d})
		}
	}
	return h
}

// Subscription is one subscriber's feed. Read Events until Done closes;
// then Err says why. Close it when the reader goes away.
type Subscription struct {
	hub    *Hub
	broker string
	ch     chan Event
	done   chan struct{}
	once   sync.Once
	err    error // set before done closes
}

// Subscribe adds a subscriber for the named broker: it gets every device
// and reset event, and the kicks sent to that broker name.
func (h *Hub) Subscribe(broker string) (*Subscription, error) {
	s := &Subscription{hub: h, broker: broker, ch: make(chan Event, h.cfg.Buffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	h.subs[s] = struct{}{}
	return s, nil
}

// Events delivers the subscription's events in order.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Done closes when the subscription ends: Close, a full buffer, or the hub
// closing.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended (nil after Close or before Done).
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Broker is the broker name the subscription was opened for.
func (s *Subscription) Broker() string { return s.broker }

// Close ends the subscription; safe to call more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.end(nil)
}

// end closes done once; the event channel is never closed, so a publisher
// racing with the end never sends on a closed channel.
func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

// offer queues ev without blocking; h.mu is held. A full buffer drops the
// subscriber.
func (h *Hub) offer(s *Subscription, ev Event) bool {
	select {
	case s.ch <- ev:
		return true
	default:
		delete(h.subs, s)
		s.end(ErrSlow)
		h.dropped.Add(1)
		h.cfg.Log.Warn("event stream subscriber too slow: dropped (it reconnects and drops its decision cache)",
			"broker", s.broker, "buffer", cap(s.ch), "event", ev.name)
		return false
	}
}

// Broadcast sends ev to every subscriber and returns how many queued it.
// Device and reset events are echoed (Config.Echo) when anyone received them.
func (h *Hub) Broadcast(ev Event) int { return h.broadcast(ev, true) }

func (h *Hub) broadcast(ev Event, echo bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer func() {
		if echo && len(h.subs) > 0 && len(h.echoes) > 0 {
			switch ev.name {
			case NameDevice:
				h.scheduleEcho(ev.device, h.cfg.Now())
			case NameReset:
				h.scheduleEcho("", h.cfg.Now())
			}
		}
	}()
	n := 0
	for s := range h.subs {
		if h.offer(s, ev) {
			n++
		}
	}
	return n
}

// Send sends ev to the subscribers of one broker name and returns how many
// queued it.
func (h *Hub) Send(broker string, ev Event) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := range h.subs {
		if s.broker == broker && h.offer(s, ev) {
			n++
		}
	}
	return n
}

// DeviceChanged broadcasts a device event (authz.Changes). With no
// subscriber (a replica's start-up load), nothing is rendered.
func (h *Hub) DeviceChanged(id string) {
	if h.Subscribers("") > 0 {
		h.Broadcast(Device(id))
	}
}

// Reset broadcasts a reset event (authz.Changes).
func (h *Hub) Reset() { h.Broadcast(Reset()) }

// Subscribers counts the open subscriptions of a broker name ("" counts all).
func (h *Hub) Subscribers(broker string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if broker == "" {
		return len(h.subs)
	}
	n := 0
	for s := range h.subs {
		if s.broker == broker {
			n++
		}
	}
	return n
}

// Dropped counts the subscribers dropped as too slow.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Close ends every subscription and refuses new ones: long-lived streams
// must end for the server's graceful shutdown to finish.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		s.end(ErrClosed)
	}
}

// echoTick is how often due echoes are sent: an echo is late by at most
// this much.
const echoTick = 250 * time.Millisecond

// Run sends the echoes as they fall due, and closes the hub when ctx ends,
// so the server's streams end with it.
func (h *Hub) Run(ctx context.Context) error {
	if len(h.echoes) > 0 {
		loop.Run(ctx, echoTick, nil, func(context.Context) { h.flushEchoes(h.cfg.Now()) })
	} else {
		<-ctx.Done()
	}
	h.Close()
	return nil
}
