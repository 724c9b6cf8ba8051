package hooks

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// mosquitto-go-auth HTTP backend. Mosquitto must run its TLS listener with
// require_certificate and use_identity_as_username, so username is the
// certificate's CN. go-auth treats 5xx as an error, so a deny is always 403
// (status mode) or a 200 with a negative body (json, text).

// go-auth access codes.
const (
	mosqRead      = 1
	mosqWrite     = 2
	mosqReadWrite = 3
	mosqSubscribe = 4
)

type mosqRequest struct {
	Username string  `json:"username"`
	Password string  `json:"password"`
	ClientID string  `json:"clientid"`
	Topic    string  `json:"topic"`
	Acc      flexInt `json:"acc"`
}

func (h *Handler) mosqDecode(w http.ResponseWriter, r *http.Request) (mosqRequest, error) {
	var req mosqRequest
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return req, malformed("method " + r.Method)
	}
	b, err := h.body(w, r)
	if err != nil {
		return req, malformed("body: " + err.Error())
	}
	if r.Method == http.MethodGet || isForm(r) {
		raw := string(b)
		if r.Method == http.MethodGet {
			raw = r.URL.RawQuery
		}
		v, err := url.ParseQuery(raw)
		if err != nil {
			return req, malformed("form: " + err.Error())
		}
		req = mosqRequest{Username: v.Get("username"), Password: v.Get("password"), ClientID: v.Get("clientid"),
			Topic: v.Get("topic")}
		if s := v.Get("acc"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return req, malformed("acc is not a number")
			}
			req.Acc = flexInt{v: n, set: true}
		}
		return req, nil
	}
	return req, decodeObject(b, &req)
}

func (h *Handler) mosqAnswer(w http.ResponseWriter, allow bool) {
	switch h.cfg.MosquittoMode {
	case MosquittoJSON:
		body := map[string]any{"Ok": allow, "Error": ""}
		if !allow {
			body["Error"] = "not authorized"
		}
		writeJSON(w, http.StatusOK, body)
	case MosquittoText:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if allow {
			_, _ = w.Write([]byte("ok"))
		} else {
			_, _ = w.Write([]byte("denied"))
		}
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if allow {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("allow"))
		} else {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("deny"))
		}
	}
}

func (h *Handler) mosquittoUser(w http.ResponseWriter, r *http.Request) {
	req, err := h.mosqDecode(w, r)
	areq := authz.Request{Action: authz.Connect, Identity: req.Username, ClientID: req.ClientID, Username: req.Username}
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, areq)
	}
	h.mosqAnswer(w, h.allowed(r, "mosquitto", areq, d, err))
}

// mosquittoSuperuser always denies: no device bypasses the ACL.
func (h *Handler) mosquittoSuperuser(w http.ResponseWriter, r *http.Request) {
	_, _ = h.mosqDecode(w, r)
	h.mosqAnswer(w, false)
}

func (h *Handler) mosquittoACL(w http.ResponseWriter, r *http.Request) {
	req, err := h.mosqDecode(w, r)
	base := authz.Request{Identity: req.Username, ClientID: req.ClientID, Username: req.Username, Topic: req.Topic}
	var actions []authz.Action
	switch req.Acc.v {
	case mosqRead, mosqSubscribe:
		// Read is checked per delivered message against its topic name, which
		// a subscribe grant must contain like any filter.
		actions = []authz.Action{authz.Subscribe}
	case mosqWrite:
		actions = []authz.Action{authz.Publish}
	case mosqReadWrite:
		actions = []authz.Action{authz.Subscribe, authz.Publish}
	default:
		if err == nil {
			err = malformed("unknown acc " + strconv.Itoa(req.Acc.v))
		}
	}
	allow := err == nil
	for _, a := range actions {
		if !allow {
			break
		}
		areq := base
		areq.Action = a
		d, derr := h.decide(r, areq)
		allow = h.allowed(r, "mosquitto", areq, d, derr)
	}
	if err != nil {
		h.allowed(r, "mosquitto", base, authz.Decision{}, err)
	}
	h.mosqAnswer(w, allow)
}
