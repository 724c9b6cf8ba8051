package hooks

import (
	"net/http"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// EMQX 5 HTTP authentication and authorization. The body is the operator's
// template over EMQX placeholders; the README gives the one to use. EMQX
// reads any non-200 status, and any 200 with an unexpected body, as
// "ignore" — an allow under the default no_match = allow — so every outcome
// here is a 200 with an explicit result.

type emqxRequest struct {
	ClientID       string   `json:"clientid"`
	Username       string   `json:"username"`
	Password       string   `json:"password"`
	PeerHost       string   `json:"peerhost"`
	CertCommonName string   `json:"cert_common_name"`
	CertSubject    string   `json:"cert_subject"`
	Action         string   `json:"action"`
	Topic          string   `json:"topic"`
	QoS            flexInt  `json:"qos"`
	Retain         flexBool `json:"retain"`
}

type emqxAuthnResponse struct {
	Result      string `json:"result"`
	IsSuperuser bool   `json:"is_superuser"`
}

type emqxAuthzResponse struct {
	Result string `json:"result"`
}

var (
	emqxAuthnAllow = mustJSON(emqxAuthnResponse{Result: "allow"})
	emqxAuthnDeny  = mustJSON(emqxAuthnResponse{Result: "deny"})
	emqxAuthzAllow = mustJSON(emqxAuthzResponse{Result: "allow"})
	emqxAuthzDeny  = mustJSON(emqxAuthzResponse{Result: "deny"})
)

func pick(allow bool, yes, no []byte) []byte {
	if allow {
		return yes
	}
	return no
}

func (h *Handler) emqxAuthn(w http.ResponseWriter, r *http.Request) {
	req, err := h.emqxDecode(w, r)
	areq := authz.Request{Action: authz.Connect, Identity: req.CertCommonName, ClientID: req.ClientID, Username: req.Username}
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "emqx", areq)
	}
	writeBody(w, http.StatusOK, pick(h.allowed(r, "emqx", areq, d, err), emqxAuthnAllow, emqxAuthnDeny))
}

func (h *Handler) emqxAuthz(w http.ResponseWriter, r *http.Request) {
	req, err := h.emqxDecode(w, r)
	areq := authz.Request{Identity: req.CertCommonName, ClientID: req.ClientID, Username: req.Username,
		Topic: req.Topic, QoS: req.QoS.v, Retain: bool(req.Retain)}
	switch req.Action {
	case "publish":
		areq.Action = authz.Publish
	case "subscribe":
		areq.Action = authz.Subscribe
	default:
		if err == nil {
			err = malformed("unknown action " + req.Action)
		}
	}
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "emqx", areq)
	}
	writeBody(w, http.StatusOK, pick(h.allowed(r, "emqx", areq, d, err), emqxAuthzAllow, emqxAuthzDeny))
}

func (h *Handler) emqxDecode(w http.ResponseWriter, r *http.Request) (emqxRequest, error) {
	var req emqxRequest
	if r.Method != http.MethodPost {
		return req, malformed("method " + r.Method)
	}
	b, err := h.body(w, r)
	if err != nil {
		return req, malformed("body: " + err.Error())
	}
	var ferr error
	if flatObject(b, func(k, v string, _ bool) {
		switch k {
		case "clientid":
			req.ClientID = v
		case "username":
			req.Username = v
		case "password":
			req.Password = v
		case "peerhost":
			req.PeerHost = v
		case "cert_common_name":
			req.CertCommonName = v
		case "cert_subject":
			req.CertSubject = v
		case "action":
			req.Action = v
		case "topic":
			req.Topic = v
		case "qos":
			if err := req.QoS.UnmarshalJSON([]byte(v)); err != nil && ferr == nil {
				ferr = err
			}
		case "retain":
			if err := req.Retain.UnmarshalJSON([]byte(v)); err != nil && ferr == nil {
				ferr = err
			}
		}
	}) {
		return req, ferr
	}
	// Not a flat object: the general decoder decides, and explains.
	req = emqxRequest{}
	return req, decodeObject(b, &req)
}
