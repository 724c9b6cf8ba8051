// Package hooks is the broker edge of authorization: one HTTP handler per
// broker dialect (EMQX, VerneMQ, mosquitto-go-auth, RabbitMQ) plus a native
// JSON endpoint, all in front of one decision core.
//
// Each dialect decodes its broker's request into an authz.Request and
// encodes the decision in the broker's own contract. Every failure — bad
// body, unknown action, missing credentials, an error from the core — is
// encoded as that broker's explicit deny, never as a status or body the
// broker would read as "ignore" or "next" (which falls through to allow on
// brokers configured that way). The broker learns allow or deny, nothing more.
//
// Hooks are closed by default: a request must carry the shared secret or
// arrive over mutual TLS, unless the operator explicitly opened them.
package hooks

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// Authorizer is the decision core.
type Authorizer interface {
	Authorize(ctx context.Context, req authz.Request) (authz.Decision, error)
}

// CertVerifier checks a client certificate (DER) presented to the native
// endpoint and returns the device id it names and its serial.
type CertVerifier interface {
	VerifyClientDER(der []byte) (deviceID, serial string, err error)
}

// Devices knows each device's current certificate (the decision core): the
// native endpoint recognises it by fingerprint, without parsing it.
type Devices interface {
	Device(id string) (authz.Device, bool)
}

// MosquittoMode is how mosquitto-go-auth reads answers.
type MosquittoMode string

// mosquitto-go-auth response modes.
const (
	MosquittoStatus MosquittoMode = "status"
	MosquittoJSON   MosquittoMode = "json"
	MosquittoText   MosquittoMode = "text"
)

// Config wires the hook handlers.
type Config struct {
	Authorizer Authorizer
	// Certs verifies certificates sent to the native endpoint; Devices,
	// when set, spares that for the device's current certificate.
	Certs   CertVerifier
	Devices Devices
	// Secret, when set, must arrive in the X-Gatehouse-Hook-Secret header (or
	// as the password of HTTP basic auth); a request without it is denied.
	// At least MinSecretLen bytes.
	Secret string
	// ClientCerts declares that the listener requires and verifies broker
	// certificates (mutual TLS): a request that arrived with a verified
	// chain is authenticated without the secret.
	ClientCerts bool
	// AllowUnauthenticated serves requests that carry neither the secret
	// nor a verified client certificate. Without it, New refuses a Config
	// with no Secret and no ClientCerts: hooks are closed by default.
	AllowUnauthenticated bool
	// UnauthLogEvery is the least time between two log lines about
	// unauthenticated requests (each line counts them): a flood of bad
	// requests must not become a flood of log lines. Default 1s.
	UnauthLogEvery time.Duration
	// MosquittoMode selects the go-auth response mode; default status.
	MosquittoMode MosquittoMode
	// RabbitCertLogin declares the RabbitMQ broker certificate-authenticated
	// (ssl_cert_login, no plaintext MQTT listener): a user request carrying
	// only a username is then the certificate's CN. Off, such requests are
	// denied, since devices have no passwords.
	RabbitCertLogin bool
	// VerneMQPerFilterSuback declares VerneMQ 2.2.0 or newer: an MQTT 5
	// SUBSCRIBE with some refused filters is then answered filter by filter
	// (135 for each refused one). Older VerneMQ may subscribe a filter
	// answered 135, so without it such a SUBSCRIBE is refused whole.
	VerneMQPerFilterSuback bool
	// Events, when set, serves the broker event stream (GET
	// /hooks/v1/events); Fresh gates its heartbeats on the core's
	// staleness, and EventHeartbeat is their period (default 1s, at most
	// a third of the staleness bound).
	Events         EventSource
	Fresh          Freshness
	EventHeartbeat time.Duration
	// KickAcks receives kick acknowledgements (POST /hooks/v1/kicks/ack);
	// without it every acknowledgement is unknown (404).
	KickAcks KickAcks
	// MaxBody caps request bodies; default 64 KiB. The payload of VerneMQ
	// publish hooks is skipped and does not count.
	MaxBody int64
	Log     *slog.Logger
	// Observer, when set, is told of every dialect request and of what the
	// edge refused itself (observe.go).
	Observer Observer
}

// MinSecretLen is the shortest accepted shared secret, in bytes.
const MinSecretLen = 16

// Handler serves every dialect under /hooks/.
type Handler struct {
	cfg    Config
	mux    *http.ServeMux
	unauth *throttledLog
}

// New returns the hooks handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Authorizer == nil {
		return nil, errors.New("hooks: Authorizer is required")
	}
	if cfg.MosquittoMode == "" {
		cfg.MosquittoMode = MosquittoStatus
	}
	switch cfg.MosquittoMode {
	case MosquittoStatus, MosquittoJSON, MosquittoText:
	default:
		return nil, errors.New("hooks: mosquitto mode must be status, json or text")
	}
	if cfg.Secret != "" && len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("hooks: the shared secret must be at least %d bytes", MinSecretLen)
	}
	if cfg.Secret == "" && !cfg.ClientCerts && !cfg.AllowUnauthenticated {
		return nil, errors.New("hooks: no shared secret and no client certificates; " +
			"serving hooks without authentication needs AllowUnauthenticated")
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.EventHeartbeat <= 0 {
		cfg.EventHeartbeat = DefaultHeartbeat
	}
	if cfg.UnauthLogEvery == 0 {
		cfg.UnauthLogEvery = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), unauth: newThrottledLog(cfg.Log, cfg.UnauthLogEvery)}
	h.routes()
	return h, nil
}

// routes lists every hook endpoint.
func (h *Handler) routes() {
	h.mux.HandleFunc("/hooks/emqx/authn", h.timed("emqx", h.emqxAuthn))
	h.mux.HandleFunc("/hooks/emqx/authz", h.timed("emqx", h.emqxAuthz))
	h.mux.HandleFunc("/hooks/vernemq", h.timed("vernemq", h.vernemq))
	h.mux.HandleFunc("/hooks/mosquitto/user", h.timed("mosquitto", h.mosquittoUser))
	h.mux.HandleFunc("/hooks/mosquitto/superuser", h.timed("mosquitto", h.mosquittoSuperuser))
	h.mux.HandleFunc("/hooks/mosquitto/acl", h.timed("mosquitto", h.mosquittoACL))
	h.mux.HandleFunc("/hooks/rabbitmq/user", h.timed("rabbitmq", h.rabbitUser))
	h.mux.HandleFunc("/hooks/rabbitmq/vhost", h.timed("rabbitmq", h.rabbitVhost))
	h.mux.HandleFunc("/hooks/rabbitmq/resource", h.timed("rabbitmq", h.rabbitResource))
	h.mux.HandleFunc("/hooks/rabbitmq/topic", h.timed("rabbitmq", h.rabbitTopic))
	h.mux.HandleFunc("/hooks/v1/authorize", h.timed("native", h.native))
	h.mux.HandleFunc("/hooks/v1/events", h.events)
	h.mux.HandleFunc("/hooks/v1/kicks/ack", h.kickAck)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["Cache-Control"] = noStore
	h.mux.ServeHTTP(w, r)
}

var noStore = []string{"no-store"}

// errUnauthenticated marks a request without the shared secret.
var errUnauthenticated = errors.New("hook request without the shared secret or a client certificate")

// authenticated reports whether the request may be served: it carries
// credentials, or the operator opened the hooks.
func (h *Handler) authenticated(r *http.Request) bool {
	return h.cfg.AllowUnauthenticated || h.credentialed(r)
}

// credentialed reports whether the request carries the shared secret
// (compared in constant time) or came over mutual TLS.
func (h *Handler) credentialed(r *http.Request) bool {
	if h.cfg.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if h.cfg.Secret == "" {
		return false
	}
	got := r.Header.Get("X-Gatehouse-Hook-Secret")
	if got == "" {
		if _, pass, ok := r.BasicAuth(); ok {
			got = pass
		}
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.Secret)) == 1
}

// body reads a capped request body. Invalid UTF-8 is refused here, raw:
// encoding/json would quietly turn it into U+FFFD, and the decision would be
// about another topic than the one the broker holds.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	b, err := io.ReadAll(r.Body)
	if err == nil && !utf8.Valid(b) {
		return nil, malformed("body is not valid UTF-8")
	}
	return b, err
}

// badText names the first string of req that is not text MQTT allows (UTF-8
// without U+0000, MQTT 5 §1.5.4), or "". A broker never sends one for a
// well-formed client; whatever the dialect decoded, such a request is
// denied before the core sees it.
func badText(req authz.Request) string {
	for _, f := range [...]struct{ name, v string }{{"identity", req.Identity}, {"client id", req.ClientID},
		{"username", req.Username}, {"topic", req.Topic}, {"certificate serial", req.CertSerial}} {
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return f.name
		}
	}
	return ""
}

// decide authenticates the hook call and asks the core on behalf of
// dialect. Any failure is returned as an error, which every dialect encodes
// as its explicit deny.
func (h *Handler) decide(r *http.Request, dialect string, req authz.Request) (authz.Decision, error) {
	if !h.authenticated(r) {
		return authz.Decision{}, errUnauthenticated
	}
	if f := badText(req); f != "" {
		return authz.Decision{}, malformed(f + " holds a NUL character or invalid UTF-8")
	}
	req.Dialect = dialect
	d, err := h.cfg.Authorizer.Authorize(r.Context(), req)
	if err != nil {
		return authz.Decision{}, coreError{err}
	}
	return d, nil
}

// allowed folds a decision and an error into the one bit brokers get.
// Failures of callers with credentials (the broker) are logged each; those
// of callers without, malformed or not, are only counted and logged at most
// once per UnauthLogEvery, since anyone who reaches the listener can send
// them — also when the operator opened the hooks to such callers.
func (h *Handler) allowed(r *http.Request, dialect string, req authz.Request, d authz.Decision, err error) bool {
	if err != nil {
		h.observeRefusal(r, dialect, req.Action, err)
		if errors.Is(err, errUnauthenticated) || !h.credentialed(r) {
			h.unauth.note(dialect, r.RemoteAddr)
			return false
		}
		h.cfg.Log.Warn("hook request denied on error", "dialect", dialect, "action", string(req.Action),
			"identity", req.Identity, "err", err)
		return false
	}
	return d.Allow
}

// decodeError is a request a dialect could not understand; it becomes a deny.
type decodeError struct{ msg string }

func (e decodeError) Error() string { return "malformed hook request: " + e.msg }

func malformed(msg string) error { return decodeError{msg: msg} }

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func isForm(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
}
