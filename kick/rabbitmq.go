package kick

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-iot/gatehouse/deviceid"
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

// RabbitMQ is a Broker that can be health-checked; a signature drift breaks the build here.
var (
	_ Broker  = (*RabbitMQ)(nil)
	_ Checker = (*RabbitMQ)(nil)
)

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

// Check implements Checker: the credentials log in to the management API
// (GET /api/whoami) as a user with the administrator tag, and no user of
// the broker's internal database has a name a device could have (GET
// /api/users). A 401 is most often the internal backend missing before the
// http backend in auth_backends: the login then goes to Gatehouse's hook,
// which refuses password logins.
func (r *RabbitMQ) Check(ctx context.Context) error {
	raw, err := r.api.get(ctx, "/api/whoami", "")
	if err != nil {
		if strings.Contains(err.Error(), ": 401 ") {
			return fmt.Errorf("%w (wrong user or password, or auth_backends does not list internal before http)", err)
		}
		return err
	}
	var who struct {
		Name string          `json:"name"`
		Tags json.RawMessage `json:"tags"`
	}
	if err := json.Unmarshal(raw, &who); err != nil {
		return fmt.Errorf("GET /api/whoami: not a RabbitMQ management API answer: %v", err)
	}
	// 3.10+ lists tags as an array, older versions as a comma-separated string.
	var tags []string
	if json.Unmarshal(who.Tags, &tags) != nil {
		var s string
		_ = json.Unmarshal(who.Tags, &s)
		tags = strings.Split(s, ",")
	}
	if !slices.Contains(tags, "administrator") {
		return fmt.Errorf("management user %q lacks the administrator tag, needed to close other users' connections", who.Name)
	}
	raw, err = r.api.get(ctx, "/api/users", "columns=name")
	if err != nil {
		return err
	}
	var users []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &users); err != nil {
		return fmt.Errorf("GET /api/users: not a RabbitMQ management API answer: %v", err)
	}
	var clash []string
	for _, u := range users {
		if deviceid.ValidRef(u.Name) {
			clash = append(clash, u.Name)
		}
	}
	if len(clash) > 0 {
		return &CollisionError{Broker: r.cfg.Name, Users: clash}
	}
	return nil
}
