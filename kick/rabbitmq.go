package kick

import (
	"context"
	"net/http"
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
	cfg RabbitMQConfig
	api restAPI
}

// NewRabbitMQ checks the settings and returns the client.
func NewRabbitMQ(cfg RabbitMQConfig) (*RabbitMQ, error) {
	if cfg.Name == "" {
		cfg.Name = "rabbitmq"
	}
	api, err := newRESTAPI("RabbitMQ management", cfg.URL, cfg.User, cfg.Password,
		"RabbitMQ management API needs a user and a password", cfg.Client)
	if err != nil {
		return nil, err
	}
	return &RabbitMQ{cfg: cfg, api: api}, nil
}

// Name implements Broker.
func (r *RabbitMQ) Name() string { return r.cfg.Name }

// Disconnect implements Broker.
func (r *RabbitMQ) Disconnect(ctx context.Context, k Request) error {
	// X-Reason is shown to AMQP clients as the close reason and in the
	// broker's log.
	return r.api.deleteDevice(ctx, "/api/connections/username/", k.Device,
		http.Header{"X-Reason": {"gatehouse: " + k.Reason}}, statuses(http.StatusNoContent, http.StatusOK))
}
