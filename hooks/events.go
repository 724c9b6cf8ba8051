package hooks

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// EventSource opens event subscriptions (the events hub).
type EventSource interface {
	Subscribe(broker string) (*events.Subscription, error)
}

// Freshness is the decision core's staleness: heartbeats go out only while
// it is fresh, so a plugin caching decisions fails closed when the core
// does.
type Freshness interface {
	Stale() (bool, time.Time)
	MaxStaleness() time.Duration
}

// KickAcks receives a broker plugin's answers to kick events. An id not
// waiting is a fault.NotFound.
type KickAcks interface {
	AckKick(broker, id string, ok bool, errText string, sessions int) error
}

// DefaultBroker is the broker name of a stream opened without one.
const DefaultBroker = "mosquitto"

// DefaultHeartbeat is Config.EventHeartbeat's default.
const DefaultHeartbeat = time.Second

// unboundedStaleness is the liveness window announced when the core has no
// staleness bound: the plugin still needs one to notice a dead stream.
const unboundedStaleness = 30 * time.Second

// streamWriteTimeout bounds one write to a stream: a reader that stops
// reading (a full TCP window) ends its stream instead of holding the
// handler forever. It also replaces the server's WriteTimeout, which would
// otherwise cut every stream after a fixed time.
const streamWriteTimeout = 10 * time.Second

// streamTiming is what a stream announces in its hello: the heartbeat
// period and the liveness window, three periods. The window is not the
// core's max_staleness: heartbeats stop only once the core is already
// max_staleness behind, so a plugin that waited that long again would use
// cached answers up to twice the bound. With three periods a cached answer
// is at most max_staleness plus three heartbeats old.
func (h *Handler) streamTiming() (window, heartbeat time.Duration) {
	maxStale := unboundedStaleness
	if h.cfg.Fresh != nil && h.cfg.Fresh.MaxStaleness() > 0 {
		maxStale = h.cfg.Fresh.MaxStaleness()
	}
	heartbeat = h.cfg.EventHeartbeat
	// Several heartbeats per window, or one late heartbeat would make the
	// plugin fail closed while the core is fresh.
	if heartbeat > maxStale/3 {
		heartbeat = max(maxStale/3, 10*time.Millisecond)
	}
	return 3 * heartbeat, heartbeat
}

// fresh reports whether the core decides on fresh state.
func (h *Handler) fresh() bool {
	if h.cfg.Fresh == nil {
		return true
	}
	stale, _ := h.cfg.Fresh.Stale()
	return !stale
}

// events serves GET /hooks/v1/events: the server-sent event stream the
// gatehouse-mosquitto plugin invalidates its decision cache and receives
// kicks by (protocol v1).
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	// Before anything else: an anonymous caller learns nothing, not even
	// whether streams are configured.
	if !h.admitPlugin(w, r, http.MethodGet, "events") {
		return
	}
	broker := r.URL.Query().Get("broker")
	if broker == "" {
		broker = DefaultBroker
	}
	if !deviceid.Valid(broker) {
		http.Error(w, "broker must match "+deviceid.Grammar, http.StatusBadRequest)
		return
	}
	if h.cfg.Events == nil {
		http.Error(w, "event streams are not configured", http.StatusNotFound)
		return
	}
	sub, err := h.cfg.Events.Subscribe(broker)
	if err != nil {
		http.Error(w, "server stopping", http.StatusServiceUnavailable)
		return
	}
	defer sub.Close()
	window, heartbeat := h.streamTiming()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no") // a proxy in front must not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	write := func(ev events.Event) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(ev.Frame()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	log := h.cfg.Log.With("broker", broker, "remote", r.RemoteAddr)
	if !write(events.New(events.NameHello, struct {
		V              int    `json:"v"`
		Broker         string `json:"broker"`
		MaxStalenessMS int64  `json:"max_staleness_ms"`
		HeartbeatMS    int64  `json:"heartbeat_ms"`
	}{1, broker, window.Milliseconds(), heartbeat.Milliseconds()})) {
		return
	}
	log.Info("broker event stream opened")
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	wasFresh := h.fresh()
	if wasFresh && !write(heartbeatEvent(time.Now())) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			log.Info("broker event stream closed by the broker")
			return
		case <-sub.Done():
			if errors.Is(sub.Err(), events.ErrSlow) {
				log.Warn("broker event stream ended: the broker read too slowly")
			}
			return
		case ev := <-sub.Events():
			if !write(ev) {
				log.Warn("broker event stream write failed")
				return
			}
		case now := <-tick.C:
			fresh := h.fresh()
			if !fresh {
				// No heartbeat: past its window the plugin denies what it
				// cannot ask, as this core does.
				wasFresh = false
				continue
			}
			// Back from stale: whatever the broker cached before is void.
			if !wasFresh && !write(events.Reset()) {
				return
			}
			wasFresh = true
			if !write(heartbeatEvent(now)) {
				return
			}
		}
	}
}

func heartbeatEvent(now time.Time) events.Event {
	return events.New(events.NameHeartbeat, struct {
		AtMS int64 `json:"at_ms"`
	}{now.UnixMilli()})
}

// KickAck is the body of POST /hooks/v1/kicks/ack.
type KickAck struct {
	ID       string `json:"id"`
	Broker   string `json:"broker"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Sessions int    `json:"sessions,omitempty"`
}

// maxAckError caps the error text kept from an acknowledgement: it goes to
// the kick's status and the log.
const maxAckError = 512

// ParseKickAck decodes and checks an acknowledgement body. Unknown fields
// are ignored (a newer plugin may add some); id and ok are required.
func ParseKickAck(b []byte) (KickAck, error) {
	var raw struct {
		ID       *string `json:"id"`
		Broker   string  `json:"broker"`
		OK       *bool   `json:"ok"`
		Error    string  `json:"error"`
		Sessions *int    `json:"sessions"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return KickAck{}, malformed("body is not a kick acknowledgement object")
	}
	if raw.ID == nil || raw.OK == nil {
		return KickAck{}, malformed("id and ok are required")
	}
	id := *raw.ID
	if id == "" || len(id) > 128 || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return KickAck{}, malformed("id must be 1 to 128 printable ASCII characters")
	}
	ack := KickAck{ID: id, Broker: raw.Broker, OK: *raw.OK}
	if ack.Broker == "" {
		ack.Broker = DefaultBroker
	}
	if !deviceid.Valid(ack.Broker) {
		return KickAck{}, malformed("broker must match " + deviceid.Grammar)
	}
	if raw.Sessions != nil {
		if *raw.Sessions < 0 {
			return KickAck{}, malformed("sessions must not be negative")
		}
		ack.Sessions = *raw.Sessions
	}
	// One line, bounded: the text is the broker's and lands in logs.
	msg := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, strings.TrimSpace(raw.Error))
	if len(msg) > maxAckError {
		cut := maxAckError
		for cut > 0 && msg[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
			cut--
		}
		msg = msg[:cut] + "…"
	}
	ack.Error = msg
	return ack, nil
}

// admitPlugin answers a request to a plugin endpoint that is not the
// method's (405) or carries no real credentials (403), and reports whether
// it may go on. Real credentials even with AllowUnauthenticated: a stream
// tells which devices change, and a forged ok ack would mark done a kick no
// broker made.
func (h *Handler) admitPlugin(w http.ResponseWriter, r *http.Request, method, what string) bool {
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	if !h.credentialed(r) {
		h.unauth.note(what, r.RemoteAddr)
		http.Error(w, "forbidden", http.StatusForbidden)
		return false
	}
	return true
}

// kickAck serves POST /hooks/v1/kicks/ack: 204 when a kick was waiting for
// it, 404 when not (unknown, answered too late, another broker's).
func (h *Handler) kickAck(w http.ResponseWriter, r *http.Request) {
	if !h.admitPlugin(w, r, http.MethodPost, "kick-ack") {
		return
	}
	b, err := h.body(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ack, err := ParseKickAck(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.cfg.KickAcks == nil {
		http.Error(w, "no kick is waiting", http.StatusNotFound)
		return
	}
	if err := h.cfg.KickAcks.AckKick(ack.Broker, ack.ID, ack.OK, ack.Error, ack.Sessions); err != nil {
		if fault.Is(err, fault.NotFound) {
			http.Error(w, "no kick is waiting under this id", http.StatusNotFound)
			return
		}
		h.cfg.Log.Error("kick acknowledgement not recorded", "broker", ack.Broker, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if !ack.OK {
		h.cfg.Log.Warn("broker could not kick a device", "broker", ack.Broker, "err", ack.Error)
	}
	w.WriteHeader(http.StatusNoContent)
}
