package hooks

import (
	"net/http"
	"strings"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// VerneMQ webhooks, dispatched on the vernemq-hook header. VerneMQ must be
// told the certificate identity: the TLS listener needs
// use_identity_as_username = on, so username is the certificate's CN.
// "next" is never answered: it hands the decision to the next plugin, which
// may allow.

type vmqTopic struct {
	Topic string  `json:"topic"`
	QoS   flexInt `json:"qos"`
}

type vmqRequest struct {
	Username   string     `json:"username"`
	ClientID   string     `json:"client_id"`
	Mountpoint string     `json:"mountpoint"`
	Topic      string     `json:"topic"`
	QoS        flexInt    `json:"qos"`
	Retain     flexBool   `json:"retain"`
	Topics     []vmqTopic `json:"topics"`
}

type vmqError struct {
	Error string `json:"error"`
}

type vmqResult struct {
	Result any           `json:"result"`
	Topics []vmqTopicOut `json:"topics,omitempty"`
}

type vmqTopicOut struct {
	Topic string `json:"topic"`
	QoS   int    `json:"qos"`
}

var vmqDeny = vmqResult{Result: vmqError{Error: "not_allowed"}}

func (h *Handler) vernemq(w http.ResponseWriter, r *http.Request) {
	hook := r.Header.Get("vernemq-hook")
	m5 := strings.HasSuffix(hook, "_m5")
	var req vmqRequest
	err := func() error {
		if r.Method != http.MethodPost {
			return malformed("method " + r.Method)
		}
		b, err := h.body(w, r)
		if err != nil {
			return malformed("body: " + err.Error())
		}
		if err := decodeObject(b, &req); err != nil {
			return err
		}
		if req.Mountpoint != "" {
			// Mountpoints rename every topic; Gatehouse policies speak of
			// unprefixed topics, so a mounted listener is refused outright.
			return malformed("mountpoints are not supported")
		}
		return nil
	}()
	base := authz.Request{Identity: req.Username, ClientID: req.ClientID, Username: req.Username}
	switch strings.TrimSuffix(hook, "_m5") {
	case "auth_on_register":
		base.Action = authz.Connect
		writeJSON(w, http.StatusOK, h.vmqOne(r, base, err))
	case "auth_on_publish":
		base.Action, base.Topic, base.QoS, base.Retain = authz.Publish, req.Topic, req.QoS.v, bool(req.Retain)
		writeJSON(w, http.StatusOK, h.vmqOne(r, base, err))
	case "auth_on_subscribe":
		writeJSON(w, http.StatusOK, h.vmqSubscribe(r, base, req.Topics, m5, err))
	default:
		h.allowed(r, "vernemq", base, authz.Decision{}, malformed("unknown hook "+hook))
		writeJSON(w, http.StatusOK, vmqDeny)
	}
}

func (h *Handler) vmqOne(r *http.Request, req authz.Request, err error) vmqResult {
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, req)
	}
	if h.allowed(r, "vernemq", req, d, err) {
		return vmqResult{Result: "ok"}
	}
	return vmqDeny
}

// vmqSubscribe decides each filter. Refused filters come back with the
// rejection QoS (128, or 135 "not authorized" for MQTT 5) so the client
// keeps the subscriptions it may have; a request that cannot be understood
// is refused whole.
func (h *Handler) vmqSubscribe(r *http.Request, base authz.Request, topics []vmqTopic, m5 bool, err error) vmqResult {
	if err == nil && len(topics) == 0 {
		err = malformed("no topics")
	}
	if err != nil {
		h.allowed(r, "vernemq", base, authz.Decision{}, err)
		return vmqDeny
	}
	reject := 128
	if m5 {
		reject = 135
	}
	out := make([]vmqTopicOut, len(topics))
	allAllowed := true
	for i, t := range topics {
		req := base
		req.Action, req.Topic, req.QoS = authz.Subscribe, t.Topic, t.QoS.v
		d, err := h.decide(r, req)
		if errorsIsUnauthenticated(err) {
			h.allowed(r, "vernemq", req, d, err)
			return vmqDeny
		}
		out[i] = vmqTopicOut{Topic: t.Topic, QoS: t.QoS.v}
		if !h.allowed(r, "vernemq", req, d, err) {
			out[i].QoS = reject
			allAllowed = false
		}
	}
	if allAllowed {
		return vmqResult{Result: "ok"}
	}
	return vmqResult{Result: "ok", Topics: out}
}

func errorsIsUnauthenticated(err error) bool { return err == errUnauthenticated }
