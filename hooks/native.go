package hooks

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// NativeRequest is the body of POST /hooks/v1/authorize. With a certificate
// (Certificate as PEM, or CertificateDER as base64 DER: no PEM armour to
// write or strip), the certificate itself names the device and must be its
// current one (not revoked or superseded); Identity, if given, must be the
// device it names. Without one, Identity is the device id the caller's TLS
// layer verified.
type NativeRequest struct {
	Action         string `json:"action"`
	ClientID       string `json:"client_id"`
	Username       string `json:"username,omitempty"`
	Identity       string `json:"identity,omitempty"`
	Certificate    string `json:"certificate,omitempty"`
	CertificateDER string `json:"certificate_der,omitempty"`
	Topic          string `json:"topic,omitempty"`
	QoS            int    `json:"qos,omitempty"`
	Retain         bool   `json:"retain,omitempty"`
}

// NativeResponse is the answer: allow or not. Reasons stay in Gatehouse's
// decision log.
type NativeResponse struct {
	Allow bool `json:"allow"`
}

func (h *Handler) native(w http.ResponseWriter, r *http.Request) {
	var req NativeRequest
	areq, err := func() (authz.Request, error) {
		if r.Method != http.MethodPost {
			return authz.Request{}, malformed("method " + r.Method)
		}
		// Checked before the certificate is parsed and verified, so an
		// anonymous caller cannot make the server do that work.
		if !h.authenticated(r) {
			return authz.Request{}, errUnauthenticated
		}
		b, err := h.body(w, r)
		if err != nil {
			return authz.Request{}, malformed("body: " + err.Error())
		}
		if req, err = decodeNative(b); err != nil {
			return authz.Request{}, err
		}
		areq := authz.Request{Action: authz.Action(req.Action), ClientID: req.ClientID, Username: req.Username,
			Identity: req.Identity, Topic: req.Topic, QoS: req.QoS, Retain: req.Retain}
		if req.Certificate != "" || req.CertificateDER != "" {
			areq.Identity, areq.CertSerial, err = h.certIdentity(req)
		}
		return areq, err
	}()
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "native", areq)
	}
	writeJSON(w, http.StatusOK, NativeResponse{Allow: h.allowed(r, "native", areq, d, err)})
}

// decodeNative reads the request body. The flat decoder takes the common
// body (known keys, each of its JSON type) without reflection; anything else
// — an unknown or differently cased key, another type, trailing data — goes
// to encoding/json, which decides as before and explains.
func decodeNative(b []byte) (NativeRequest, error) {
	if req, ok := nativeFlat(b); ok {
		return req, nil
	}
	var req NativeRequest
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return NativeRequest{}, malformed("body is not a valid request object")
	}
	return req, nil
}

// nativeStrings are the native request's string members by JSON key.
var nativeStrings = map[string]func(*NativeRequest) *string{
	"action": func(r *NativeRequest) *string { return &r.Action }, "client_id": func(r *NativeRequest) *string { return &r.ClientID },
	"username": func(r *NativeRequest) *string { return &r.Username }, "identity": func(r *NativeRequest) *string { return &r.Identity },
	"certificate": func(r *NativeRequest) *string { return &r.Certificate }, "topic": func(r *NativeRequest) *string { return &r.Topic },
	"certificate_der": func(r *NativeRequest) *string { return &r.CertificateDER },
}

// nativeFlat decodes b when flatObject can and every member is a known key
// with a value encoding/json would store as is.
func nativeFlat(b []byte) (NativeRequest, bool) {
	var req NativeRequest
	good := true
	ok := flatObject(b, func(k, v string, quoted bool) {
		switch field := nativeStrings[k]; {
		case field != nil:
			good = good && quoted
			*field(&req) = v
		case k == "qos":
			n, err := strconv.Atoi(v)
			good = good && !quoted && err == nil
			req.QoS = n
		case k == "retain":
			good = good && !quoted && (v == "true" || v == "false")
			req.Retain = v == "true"
		default:
			good = false
		}
	})
	return req, ok && good
}

// certIdentity returns the device and serial of the request's certificate.
// The device's current certificate, byte for byte, is known from its
// fingerprint without a parse or a chain check (the common CONNECT); any
// other certificate is verified (VerifyClientDER, cached by its bytes), and
// then the decision core still refuses it unless its serial is current.
func (h *Handler) certIdentity(req NativeRequest) (id, serial string, err error) {
	der, err := nativeDER(req)
	if err != nil {
		return "", "", err
	}
	if req.Identity != "" && h.cfg.Devices != nil {
		if d, ok := h.cfg.Devices.Device(req.Identity); ok && d.CertFingerprint != ([32]byte{}) &&
			d.CertFingerprint == sha256.Sum256(der) {
			return req.Identity, d.CertSerial, nil
		}
	}
	if h.cfg.Certs == nil {
		return "", "", malformed("certificate verification is not configured")
	}
	id, serial, err = h.cfg.Certs.VerifyClientDER(der)
	if err != nil {
		return "", "", err
	}
	if req.Identity != "" && req.Identity != id {
		return "", "", malformed("identity does not match the certificate")
	}
	return id, serial, nil
}

// nativeDER returns the DER bytes of the one certificate the request holds.
func nativeDER(req NativeRequest) ([]byte, error) {
	if req.Certificate != "" && req.CertificateDER != "" {
		return nil, malformed("certificate and certificate_der are exclusive")
	}
	if req.CertificateDER != "" {
		der, err := base64.StdEncoding.DecodeString(req.CertificateDER)
		if err != nil || len(der) == 0 {
			return nil, malformed("certificate_der is not base64")
		}
		return der, nil
	}
	block, _ := pem.Decode([]byte(req.Certificate))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, malformed("certificate is not PEM")
	}
	return block.Bytes, nil
}
