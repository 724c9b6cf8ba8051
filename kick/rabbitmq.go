package kick

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// RabbitMQConfig reaches the RabbitMQ management API.
type RabbitMQConfig struct {
	// Name identifies the broker in kick status (default "rabbitmq").
	Name string
	// URL is the management API base, e.g. http://rabbit:15672.
	URL string
	// User and Password log in to the management API; the user needs the
	// administrator tag (closing other users' connections).
	User, Password string
	// Client overrides the HTTP client (tests).
	Client *http.Client
}

// RabbitMQ closes a device's connections through the management API.
//
// It closes every connection authenticated as the device, with DELETE
// /api/connections/username/{device}: with ssl_cert_login the username is
// the certificate's CN, which is the device id, and Gatehouse's connect hook
// binds the MQTT client id to it. This endpoint reads RabbitMQ's connection
// tracking table, which knows a connection as soon as it is open, while GET
// /api/connections (where MQTT connections show client_properties.client_id)
// is built from statistics that lag by up to collect_statistics_interval (5
// s by default) and would miss a session opened just before the revocation.
// The endpoint answers 204 whether or not the user had connections, so a
// 404 means the URL does not reach a management API that has it: an error.
type RabbitMQ struct {
	cfg    RabbitMQConfig
	base   *url.URL
	client *http.Client
}

// NewRabbitMQ checks the settings and returns the client.
func NewRabbitMQ(cfg RabbitMQConfig) (*RabbitMQ, error) {
	if cfg.Name == "" {
		cfg.Name = "rabbitmq"
	}
	u, err := baseURL("RabbitMQ management", cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.User == "" || cfg.Password == "" {
		return nil, fault.New(fault.InvalidArgument, "RabbitMQ management API needs a user and a password")
	}
	return &RabbitMQ{cfg: cfg, base: u, client: newHTTPClient(cfg.Client)}, nil
}

// Name implements Broker.
func (r *RabbitMQ) Name() string { return r.cfg.Name }

// Disconnect implements Broker.
func (r *RabbitMQ) Disconnect(ctx context.Context, k Request) error {
	u := *r.base
	u.Path += "/api/connections/username/" + k.Device
	u.RawPath = r.base.Path + "/api/connections/username/" + url.PathEscape(k.Device)
	req, err := http.NewRequest(http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.cfg.User, r.cfg.Password)
	// Shown to AMQP clients as the close reason and in the broker's log.
	req.Header.Set("X-Reason", "gatehouse: "+k.Reason)
	return call(ctx, r.client, req, statuses(http.StatusNoContent, http.StatusOK))
}
