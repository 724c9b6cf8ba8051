package hooks

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// mosquitto-go-auth HTTP backend. Mosquitto must run its TLS listener with
// require_certificate and use_identity_as_username, so username is the
// certificate's CN. go-auth treats 5xx as an error, so a deny is always 403
// (status mode) or a 200 with a negative body (json, text).
//
// go-auth sends only Content-Type and User-Agent (backends/http.go,
// httpRequest); the hook secret reaches Gatehouse as the basic-auth password
// Go's HTTP client derives from userinfo put in auth_opt_http_host.

// go-auth access codes (go-auth's MOSQ_ACL_* constants, which its HTTP
// backend sends unchanged as acc): read is the delivery of a message to a
// subscriber, write a publish, subscribe a subscription; readwrite (3) asks
// for read and write at once and is allowed only when both are.
const (
	mosqRead      = 1
	mosqWrite     = 2
	mosqReadWrite = mosqRead | mosqWrite
	mosqSubscribe = 4
)

// mosqActions maps a go-auth access code to the actions that must all be
// allowed; an unknown code maps to none and is denied.
func mosqActions(acc int) []authz.Action {
	switch acc {
	case mosqRead:
		return []authz.Action{authz.Read}
	case mosqWrite:
		return []authz.Action{authz.Publish}
	case mosqReadWrite:
		return []authz.Action{authz.Read, authz.Publish}
	case mosqSubscribe:
		return []authz.Action{authz.Subscribe}
	}
	return nil
}

// errPasswordListener is the answer to every go-auth user check. Mosquitto
// skips the plugin's basic auth on a listener with use_identity_as_username
// (handle_connect.c: "Authentication assumed to be cleared"), so a call here
// comes from a listener where the username is whatever the client typed,
// and Gatehouse, which ignores passwords, cannot tell a device from anyone
// claiming its name. Denying it keeps such a listener closed.
var errPasswordListener = errors.New("mosquitto user check: go-auth calls it only for listeners " +
	"without use_identity_as_username, where the username is not a certificate identity; denied")

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

// mosquittoUser always denies (errPasswordListener). Connect-time checks —
// suspended or unknown device, client id not the device id — therefore do
// not run on Mosquitto through go-auth; publish and subscribe of such a
// device are still denied by the ACL check.
func (h *Handler) mosquittoUser(w http.ResponseWriter, r *http.Request) {
	req, err := h.mosqDecode(w, r)
	areq := authz.Request{Action: authz.Connect, Identity: req.Username, ClientID: req.ClientID, Username: req.Username}
	if err == nil {
		err = errPasswordListener
		if !h.authenticated(r) {
			err = errUnauthenticated
		}
	}
	h.mosqAnswer(w, h.allowed(r, "mosquitto", areq, authz.Decision{}, err))
}

// mosquittoSuperuser always denies: no device bypasses the ACL.
func (h *Handler) mosquittoSuperuser(w http.ResponseWriter, r *http.Request) {
	_, _ = h.mosqDecode(w, r)
	h.mosqAnswer(w, false)
}

func (h *Handler) mosquittoACL(w http.ResponseWriter, r *http.Request) {
	req, err := h.mosqDecode(w, r)
	base := authz.Request{Identity: req.Username, ClientID: req.ClientID, Username: req.Username, Topic: req.Topic}
	actions := mosqActions(req.Acc.v)
	if err == nil && len(actions) == 0 {
		err = malformed("unknown acc " + strconv.Itoa(req.Acc.v))
	}
	if err != nil {
		h.mosqAnswer(w, h.allowed(r, "mosquitto", base, authz.Decision{}, err))
		return
	}
	// Actions are decided in order; the first deny ends the check.
	allow := true
	for _, a := range actions {
		areq := base
		areq.Action = a
		d, derr := h.decide(r, "mosquitto", areq)
		if !h.allowed(r, "mosquitto", areq, d, derr) {
			allow = false
			break
		}
	}
	h.mosqAnswer(w, allow)
}
