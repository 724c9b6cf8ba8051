package hooks

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/topic"
)

// RabbitMQ rabbitmq_auth_backend_http (GET query or POST form; the answer
// is the body "allow" or "deny"). With the MQTT plugin, MQTT topics arrive
// as AMQP routing keys on the amq.topic exchange.

func (h *Handler) rabbitParams(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	switch r.Method {
	case http.MethodGet:
		return r.URL.Query(), nil
	case http.MethodPost:
		b, err := h.body(w, r)
		if err != nil {
			return nil, malformed("body: " + err.Error())
		}
		v, err := url.ParseQuery(string(b))
		if err != nil {
			return nil, malformed("form: " + err.Error())
		}
		return v, nil
	}
	return nil, malformed("method " + r.Method)
}

func rabbitAnswer(w http.ResponseWriter, allow bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if allow {
		_, _ = w.Write([]byte("allow"))
	} else {
		_, _ = w.Write([]byte("deny"))
	}
}

// rabbitClientID is the MQTT client id, sent as client_id or, on topic
// checks, as variable_map.client_id.
func rabbitClientID(v url.Values) string {
	return firstNonEmpty(v.Get("client_id"), v.Get("variable_map.client_id"))
}

// rabbitUser authenticates the connection. Devices have no passwords: only
// a certificate login (username = CN, no password) is accepted, and only
// when the operator declared the broker certificate-authenticated.
func (h *Handler) rabbitUser(w http.ResponseWriter, r *http.Request) {
	v, err := h.rabbitParams(w, r)
	areq := authz.Request{Action: authz.Connect, Identity: v.Get("username"), Username: v.Get("username")}
	switch {
	case err != nil:
	case !h.cfg.RabbitCertLogin:
		err = malformed("certificate login is not enabled (hooks.rabbitmq.cert_login)")
	case v.Has("password"): // an empty password is a password login too, not a certificate login
		err = malformed("password logins are refused: devices authenticate with certificates")
	}
	// The user check carries no client id; it is bound to the certificate on
	// every following vhost, resource and topic check.
	areq.ClientID = areq.Identity
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "rabbitmq", areq)
	}
	rabbitAnswer(w, h.allowed(r, "rabbitmq", areq, d, err))
}

// rabbitVhost allows the default vhost to an active device whose client id
// matches its certificate.
func (h *Handler) rabbitVhost(w http.ResponseWriter, r *http.Request) {
	v, err := h.rabbitParams(w, r)
	areq := authz.Request{Action: authz.Connect, Identity: v.Get("username"), Username: v.Get("username"),
		ClientID: rabbitClientID(v)}
	if err == nil && v.Get("vhost") != "/" {
		err = malformed("only the default vhost is served")
	}
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "rabbitmq", areq)
	}
	rabbitAnswer(w, h.allowed(r, "rabbitmq", areq, d, err))
}

// rabbitResource allows the MQTT plugin's own plumbing and nothing else:
// the device's subscription queues and the amq.topic exchange. Topic-level
// rights are decided by rabbitTopic.
func (h *Handler) rabbitResource(w http.ResponseWriter, r *http.Request) {
	v, err := h.rabbitParams(w, r)
	id := v.Get("username")
	areq := authz.Request{Action: authz.Connect, Identity: id, Username: id, ClientID: rabbitClientID(v)}
	if err == nil {
		name, kind, perm := v.Get("name"), v.Get("resource"), v.Get("permission")
		switch {
		case v.Get("vhost") != "/":
			err = malformed("only the default vhost is served")
		case kind == "queue" && strings.HasPrefix(name, "mqtt-subscription-"+id+"qos") && id != "":
		case kind == "exchange" && name == "amq.topic" && (perm == "read" || perm == "write"):
		default:
			err = malformed("resource " + kind + " " + name + " " + perm + " is not MQTT plumbing")
		}
	}
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "rabbitmq", areq)
	}
	rabbitAnswer(w, h.allowed(r, "rabbitmq", areq, d, err))
}

// rabbitTopic decides PUBLISH (write) and SUBSCRIBE (read) on a routing key.
func (h *Handler) rabbitTopic(w http.ResponseWriter, r *http.Request) {
	v, err := h.rabbitParams(w, r)
	id := v.Get("username")
	areq := authz.Request{Identity: id, Username: id, ClientID: rabbitClientID(v),
		Topic: topic.FromRoutingKey(v.Get("routing_key"))}
	if err == nil {
		switch {
		case v.Get("vhost") != "/" || v.Get("resource") != "topic" || v.Get("name") != "amq.topic":
			err = malformed("only amq.topic on the default vhost is served")
		case v.Get("permission") == "write":
			areq.Action = authz.Publish
		case v.Get("permission") == "read":
			areq.Action = authz.Subscribe
		default:
			err = malformed("unknown permission " + v.Get("permission"))
		}
	}
	if err == nil && areq.ClientID == "" {
		// Without a client id the request cannot be bound to the
		// certificate; refuse rather than guess.
		err = malformed("no client id")
	}
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "rabbitmq", areq)
	}
	rabbitAnswer(w, h.allowed(r, "rabbitmq", areq, d, err))
}
