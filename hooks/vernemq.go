package hooks

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// VerneMQ webhooks, dispatched on the vernemq-hook header. The wire format
// follows vernemq/vernemq apps/vmq_webhooks/src/vmq_webhooks_plugin.erl
// (encode_payload for requests, handle_response / normalize_modifiers for
// answers) and its test endpoint apps/vmq_webhooks/test/webhooks_handler.erl.
// VerneMQ sends only Content-Type and vernemq-hook (call_endpoint); the hook
// secret therefore arrives as basic auth from the endpoint URL's userinfo.
//
// VerneMQ must be told the certificate identity: the TLS listener needs
// use_identity_as_username = on, so username is the certificate's CN. On
// any other listener username is whatever the client typed, and Gatehouse
// ignores passwords: a request naming such a listener is denied.
// "next" is never answered: it hands the decision to the next plugin, which
// may allow.

type vmqTopic struct {
	Topic string  `json:"topic"`
	QoS   flexInt `json:"qos"`
	// MQTT 5 subscription options, sent for auth_on_subscribe_m5 only.
	NoLocal        *bool   `json:"no_local"`
	Rap            *bool   `json:"rap"`
	RetainHandling *string `json:"retain_handling"`
}

type vmqRequest struct {
	Username   string     `json:"username"`
	ClientID   string     `json:"client_id"`
	Mountpoint string     `json:"mountpoint"`
	Topic      string     `json:"topic"`
	QoS        flexInt    `json:"qos"`
	Retain     flexBool   `json:"retain"`
	Topics     []vmqTopic `json:"topics"`
	// ListenerType is the ranch listener type the client connected through
	// (mqtt, mqtts, mqttws, mqttwss: vmq_ranch_config.erl); VerneMQ sends it
	// with auth_on_register_m5 since the listener options were added to that
	// hook, null or absent before.
	ListenerType *string `json:"listener_type"`
}

type vmqError struct {
	Error string `json:"error"`
}

type vmqResult struct {
	Result    any           `json:"result"`
	Topics    []vmqTopicOut `json:"topics,omitempty"`
	Modifiers *vmqModifiers `json:"modifiers,omitempty"`
}

// vmqModifiers carries the rewritten filters of auth_on_subscribe_m5:
// VerneMQ reads them from modifiers.topics only (normalize_modifiers); a
// top-level topics list is ignored there and reads as "ok, unchanged".
type vmqModifiers struct {
	Topics []vmqTopicOut `json:"topics"`
}

type vmqTopicOut struct {
	Topic string `json:"topic"`
	QoS   int    `json:"qos"`
	// Options of a granted MQTT 5 filter. VerneMQ rebuilds every granted
	// filter from the answer and resets an omitted option to its default
	// (normalize_sub_topics), so they are always echoed back.
	NoLocal        *bool   `json:"no_local,omitempty"`
	Rap            *bool   `json:"rap,omitempty"`
	RetainHandling *string `json:"retain_handling,omitempty"`
}

var vmqDeny = vmqResult{Result: vmqError{Error: "not_allowed"}}

// errNoCertIdentity: the request came through a listener on which VerneMQ's
// username is not a certificate identity.
var errNoCertIdentity = errors.New("listener without certificate identity")

// vmqTLSListener reports whether a listener type is one VerneMQ serves over
// TLS, where use_identity_as_username can make username the certificate CN.
func vmqTLSListener(t string) bool { return t == "mqtts" || t == "mqttwss" }

func (h *Handler) vernemq(w http.ResponseWriter, r *http.Request) {
	hook := r.Header.Get("vernemq-hook")
	m5 := strings.HasSuffix(hook, "_m5")
	var req vmqRequest
	err := func() error {
		if r.Method != http.MethodPost {
			return malformed("method " + r.Method)
		}
		// The payload is never needed and, base64 encoded, may be far larger
		// than the body cap: it is skipped while reading.
		b, err := h.bodyWithoutPayload(r)
		if err != nil {
			return err
		}
		if err := decodeObject(b, &req); err != nil {
			return err
		}
		if req.Mountpoint != "" {
			// Mountpoints rename every topic; Gatehouse policies speak of
			// unprefixed topics, so a mounted listener is refused outright.
			return malformed("mountpoints are not supported")
		}
		if req.ListenerType != nil && !vmqTLSListener(*req.ListenerType) {
			return fmt.Errorf("vernemq listener type %q: %w", *req.ListenerType, errNoCertIdentity)
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
		d, err = h.decide(r, "vernemq", req)
	}
	if h.allowed(r, "vernemq", req, d, err) {
		return vmqResult{Result: "ok"}
	}
	return vmqDeny
}

var vmqRetainHandling = map[string]bool{"send_retain": true, "send_if_new_sub": true, "dont_send": true}

// vmqSubscribe decides each filter. Refused filters come back with the
// rejection QoS (128, or 135 "not authorized" for MQTT 5) so the client
// keeps the subscriptions it may have; a request that cannot be understood
// is refused whole.
//
// MQTT 5 differs twice. The rewritten list goes under modifiers.topics, with
// each granted filter's options. And VerneMQ before 2.2.0 may subscribe a
// filter answered {topic, 135} (its split_subscribe_topics was fixed in
// 2.2.0), so unless the operator declared VerneMQ ≥ 2.2.0
// (VerneMQPerFilterSuback) an MQTT 5 SUBSCRIBE with any refused filter is
// refused whole.
func (h *Handler) vmqSubscribe(r *http.Request, base authz.Request, topics []vmqTopic, m5 bool, err error) vmqResult {
	if err == nil && len(topics) == 0 {
		err = malformed("no topics")
	}
	for _, t := range topics {
		if err == nil && t.RetainHandling != nil && !vmqRetainHandling[*t.RetainHandling] {
			err = malformed("retain_handling " + *t.RetainHandling)
		}
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
	allAllowed, noneAllowed := true, true
	for i, t := range topics {
		req := base
		req.Action, req.Topic, req.QoS = authz.Subscribe, t.Topic, t.QoS.v
		d, err := h.decide(r, "vernemq", req)
		if errorsIsUnauthenticated(err) {
			h.allowed(r, "vernemq", req, d, err)
			return vmqDeny
		}
		out[i] = vmqTopicOut{Topic: t.Topic, QoS: t.QoS.v}
		if !h.allowed(r, "vernemq", req, d, err) {
			out[i].QoS = reject
			allAllowed = false
			continue
		}
		noneAllowed = false
		if m5 {
			out[i].NoLocal, out[i].Rap, out[i].RetainHandling = vmqOptions(t)
		}
	}
	switch {
	case allAllowed:
		return vmqResult{Result: "ok"}
	case noneAllowed:
		// Same SUBACK as every filter at 128/135, but explicit: VerneMQ's
		// reauthorize_subscriptions (vmq_server) re-adds whatever an "ok"
		// lists and removes a subscription only on an error.
		return vmqDeny
	case !m5:
		return vmqResult{Result: "ok", Topics: out}
	case !h.cfg.VerneMQPerFilterSuback:
		return vmqDeny
	}
	return vmqResult{Result: "ok", Modifiers: &vmqModifiers{Topics: out}}
}

// vmqOptions returns a filter's MQTT 5 options as received, VerneMQ's
// defaults for those it did not send.
func vmqOptions(t vmqTopic) (noLocal, rap *bool, retainHandling *string) {
	f, rh := false, "send_retain"
	noLocal, rap, retainHandling = t.NoLocal, t.Rap, t.RetainHandling
	if noLocal == nil {
		noLocal = &f
	}
	if rap == nil {
		rap = &f
	}
	if retainHandling == nil {
		retainHandling = &rh
	}
	return noLocal, rap, retainHandling
}

func errorsIsUnauthenticated(err error) bool { return err == errUnauthenticated }
