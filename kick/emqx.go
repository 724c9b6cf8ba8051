package kick

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// EMQXConfig reaches the EMQX 5 REST API.
type EMQXConfig struct {
	// Name identifies the broker in kick status (default "emqx").
	Name string
	// URL is the REST API base, e.g. http://emqx:18083 (a trailing /api/v5
	// is accepted).
	URL string
	// APIKey and APISecret are an EMQX API key (basic auth).
	APIKey, APISecret string
	// Client overrides the HTTP client (tests).
	Client *http.Client
}

// EMQX kicks a device's client with DELETE /api/v5/clients/{clientid}; the
// client id is the device id (Gatehouse's connect hook enforces it). EMQX
// answers 204, or 404 with code CLIENTID_NOT_FOUND when the client is not
// connected, which is what a kick wants; any other 404 (a wrong URL) is an
// error.
type EMQX struct {
	cfg EMQXConfig
	api restAPI
}

// EMQX is a Broker that can be health-checked; a signature drift breaks the build here.
var (
	_ Broker  = (*EMQX)(nil)
	_ Checker = (*EMQX)(nil)
)

// NewEMQX checks the settings and returns the client.
func NewEMQX(cfg EMQXConfig) (*EMQX, error) {
	if cfg.Name == "" {
		cfg.Name = "emqx"
	}
	api, err := newRESTAPI("EMQX API", cfg.URL, cfg.APIKey, cfg.APISecret, "EMQX API needs an API key and secret", cfg.Client)
	if err != nil {
		return nil, err
	}
	api.base.Path = strings.TrimSuffix(api.base.Path, "/api/v5")
	return &EMQX{cfg: cfg, api: api}, nil
}

// Name implements Broker.
func (e *EMQX) Name() string { return e.cfg.Name }

// Disconnect implements Broker.
func (e *EMQX) Disconnect(ctx context.Context, k Request) error {
	return e.api.deleteDevice(ctx, "/api/v5/clients/", k.Device, nil, emqxKicked)
}

// emqxKicked accepts 204 (kicked) and EMQX's own 404 for a client that is
// not connected.
func emqxKicked(status int, body []byte) bool {
	switch status {
	case http.StatusNoContent, http.StatusOK:
		return true
	case http.StatusNotFound:
		var e struct {
			Code string `json:"code"`
		}
		return json.Unmarshal(body, &e) == nil && e.Code == "CLIENTID_NOT_FOUND"
	}
	return false
}

// Check implements Checker with the cheapest authenticated read, one page
// of one client.
func (e *EMQX) Check(ctx context.Context) error {
	_, err := e.api.get(ctx, "/api/v5/clients", "limit=1")
	if err != nil && strings.Contains(err.Error(), ": 401 ") {
		return fmt.Errorf("%w (wrong API key or secret)", err)
	}
	return err
}
