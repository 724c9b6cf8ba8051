package hooks

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/ca"
)

// NativeRequest is the body of POST /hooks/v1/authorize. With Certificate,
// the client certificate itself is verified (chain to the Gatehouse CA,
// clientAuth, current — not revoked or superseded) and names the device;
// otherwise Identity is the device id the caller's TLS layer verified.
type NativeRequest struct {
	Action      string `json:"action"`
	ClientID    string `json:"client_id"`
	Username    string `json:"username,omitempty"`
	Identity    string `json:"identity,omitempty"`
	Certificate string `json:"certificate,omitempty"`
	Topic       string `json:"topic,omitempty"`
	QoS         int    `json:"qos,omitempty"`
	Retain      bool   `json:"retain,omitempty"`
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
		dec := json.NewDecoder(bytesReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return authz.Request{}, malformed("body is not a valid request object")
		}
		areq := authz.Request{Action: authz.Action(req.Action), ClientID: req.ClientID, Username: req.Username,
			Identity: req.Identity, Topic: req.Topic, QoS: req.QoS, Retain: req.Retain}
		if req.Certificate != "" {
			block, _ := pem.Decode([]byte(req.Certificate))
			if block == nil || block.Type != "CERTIFICATE" {
				return areq, malformed("certificate is not PEM")
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return areq, malformed("certificate does not parse")
			}
			if h.cfg.Certs == nil {
				return areq, malformed("certificate verification is not configured")
			}
			id, err := h.cfg.Certs.VerifyClientCert(cert)
			if err != nil {
				return areq, err
			}
			if req.Identity != "" && req.Identity != id {
				return areq, malformed("identity does not match the certificate")
			}
			areq.Identity, areq.CertSerial = id, ca.SerialHex(cert.SerialNumber)
		}
		return areq, nil
	}()
	var d authz.Decision
	if err == nil {
		d, err = h.decide(r, "native", areq)
	}
	writeJSON(w, http.StatusOK, NativeResponse{Allow: h.allowed(r, "native", areq, d, err)})
}
