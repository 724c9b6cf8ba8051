package kick

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// SignatureHeader carries the webhook body's HMAC.
const SignatureHeader = "X-Gatehouse-Signature"

// WebhookConfig is a generic HTTP kick hook.
type WebhookConfig struct {
	// Name identifies the hook in kick status (default "webhook").
	Name string
	// URL receives the POST.
	URL string
	// Secret keys the body's HMAC-SHA256 (at least 16 bytes).
	Secret string
	// Client overrides the HTTP client (tests).
	Client *http.Client
}

// Webhook POSTs {"device", "reason", "at"} as JSON to a URL, for brokers
// (or bridges) Gatehouse has no client for. The body is signed:
//
//	X-Gatehouse-Signature: sha256=<hex HMAC-SHA256(secret, body)>
//
// and "at" (RFC 3339, the time of the request, not of this attempt) lets the
// receiver refuse replays. The same request may arrive more than once (a
// retry after a lost answer); disconnecting twice is harmless. Any 2xx is
// success.
type Webhook struct {
	cfg    WebhookConfig
	url    *url.URL
	client *http.Client
}

// Webhook is a Broker; a signature drift breaks the build here.
var (
	_ Broker = (*Webhook)(nil)
)

// WebhookBody is the JSON a kick hook receives.
type WebhookBody struct {
	Device string    `json:"device"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// NewWebhook checks the settings and returns the hook.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.Name == "" {
		cfg.Name = "webhook"
	}
	u, err := baseURL("kick webhook", cfg.URL)
	if err != nil {
		return nil, err
	}
	if len(cfg.Secret) < 16 {
		return nil, fault.New(fault.InvalidArgument, "kick webhook secret must be at least 16 bytes")
	}
	return &Webhook{cfg: cfg, url: u, client: newHTTPClient(cfg.Client)}, nil
}

// Name implements Broker.
func (w *Webhook) Name() string { return w.cfg.Name }

// Sign returns the signature header value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Disconnect implements Broker.
func (w *Webhook) Disconnect(ctx context.Context, k Request) error {
	body, err := json.Marshal(WebhookBody{Device: k.Device, Reason: k.Reason, At: k.At.UTC()})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, w.url.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.cfg.Secret, body))
	return call(ctx, w.client, req, func(c int, _ []byte) bool { return c/100 == 2 })
}
