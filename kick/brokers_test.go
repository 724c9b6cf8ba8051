package kick_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/kick"
)

const (
	rabbitPass = "rabbit-S3CRET-pass"
	emqxSecret = "emqx-S3CRET-secret"
	hookSecret = "hook-S3CRET-0123456789"
)

// seen is what a fake broker API received.
type seen struct {
	method, path, rawPath string
	user, pass            string
	authOK                bool
	header                http.Header
	body                  []byte
}

// fakeAPI answers every request with status and body, recording it.
func fakeAPI(t *testing.T, status int, body string) (*httptest.Server, *[]seen) {
	t.Helper()
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u, p, ok := r.BasicAuth()
		got = append(got, seen{method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), user: u, pass: p, authOK: ok, header: r.Header.Clone(), body: b})
		if status == http.StatusFound {
			http.Redirect(w, r, "/elsewhere", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

var req = kick.Request{Device: "sensor-1", Reason: "device.revoke", At: time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)}

func TestRabbitMQ(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		device  string
		prefix  string
		wantErr string
		rawPath string
	}{
		{name: "closed", status: 204, rawPath: "/api/connections/username/sensor-1"},
		{name: "ok 200", status: 200, rawPath: "/api/connections/username/sensor-1"},
		{name: "escaped id", status: 204, device: "fleet/a b", rawPath: "/api/connections/username/fleet%2Fa%20b"},
		{name: "path prefix", status: 204, prefix: "/rabbit/", rawPath: "/rabbit/api/connections/username/sensor-1"},
		// The username endpoint answers 204 even without connections: a
		// 404 means a wrong URL or an old management plugin.
		{name: "not found is an error", status: 404, body: `{"error":"Object Not Found","reason":"Not Found"}`, wantErr: "404 Not Found: {\"error\":\"Object Not Found\""},
		{name: "unauthorized", status: 401, body: `{"error":"not_authorised","reason":"Login failed"}`, wantErr: "401 Unauthorized"},
		{name: "server error", status: 500, wantErr: "500 Internal Server Error"},
		{name: "redirect not followed", status: 302, wantErr: "302 Found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, got := fakeAPI(t, c.status, c.body)
			b, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: srv.URL + c.prefix, User: "gh-kick", Password: rabbitPass})
			if err != nil {
				t.Fatal(err)
			}
			r := req
			if c.device != "" {
				r.Device = c.device
			}
			err = b.Disconnect(context.Background(), r)
			checkErr(t, err, c.wantErr, rabbitPass)
			if len(*got) != 1 {
				t.Fatalf("%d requests, want 1", len(*got))
			}
			s := (*got)[0]
			if s.method != "DELETE" || !s.authOK || s.user != "gh-kick" || s.pass != rabbitPass {
				t.Errorf("request %s auth=%v %q/%q", s.method, s.authOK, s.user, s.pass)
			}
			if c.rawPath != "" && s.rawPath != c.rawPath {
				t.Errorf("path %s, want %s", s.rawPath, c.rawPath)
			}
			if s.header.Get("X-Reason") != "gatehouse: device.revoke" {
				t.Errorf("X-Reason = %q", s.header.Get("X-Reason"))
			}
		})
	}
	if b, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: "http://x", User: "u", Password: "p"}); b.Name() != "rabbitmq" {
		t.Errorf("default name %q", b.Name())
	}
}

func TestEMQX(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		base    string
		wantErr string
	}{
		{name: "kicked", status: 204},
		{name: "not connected", status: 404, body: `{"code":"CLIENTID_NOT_FOUND","message":"Client ID not found"}`},
		{name: "base with /api/v5", status: 204, base: "/api/v5"},
		{name: "other 404 is an error", status: 404, body: `{"code":"NOT_FOUND","message":"no such path"}`, wantErr: "404 Not Found"},
		{name: "404 without json", status: 404, body: `not found`, wantErr: "404 Not Found: not found"},
		{name: "bad key", status: 401, body: `{"code":"BAD_API_KEY_OR_SECRET"}`, wantErr: "401 Unauthorized: {\"code\":\"BAD_API_KEY_OR_SECRET\"}"},
		{name: "unavailable", status: 503, wantErr: "503 Service Unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, got := fakeAPI(t, c.status, c.body)
			b, err := kick.NewEMQX(kick.EMQXConfig{URL: srv.URL + c.base, APIKey: "key-1", APISecret: emqxSecret})
			if err != nil {
				t.Fatal(err)
			}
			checkErr(t, b.Disconnect(context.Background(), req), c.wantErr, emqxSecret)
			if len(*got) != 1 {
				t.Fatalf("%d requests, want 1", len(*got))
			}
			s := (*got)[0]
			if s.method != "DELETE" || s.rawPath != "/api/v5/clients/sensor-1" || s.user != "key-1" || s.pass != emqxSecret {
				t.Errorf("request %s %s auth %q/%q", s.method, s.rawPath, s.user, s.pass)
			}
		})
	}
}

func TestWebhook(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		wantErr string
	}{
		{name: "200", status: 200},
		{name: "202", status: 202},
		{name: "204", status: 204},
		{name: "refused", status: 403, wantErr: "403 Forbidden"},
		{name: "broken", status: 500, wantErr: "500 Internal Server Error"},
		{name: "redirect", status: 302, wantErr: "302 Found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, got := fakeAPI(t, c.status, "")
			b, err := kick.NewWebhook(kick.WebhookConfig{URL: srv.URL + "/kick", Secret: hookSecret})
			if err != nil {
				t.Fatal(err)
			}
			checkErr(t, b.Disconnect(context.Background(), req), c.wantErr, hookSecret)
			if len(*got) != 1 {
				t.Fatalf("%d requests, want 1", len(*got))
			}
			s := (*got)[0]
			if s.method != "POST" || s.path != "/kick" || s.header.Get("Content-Type") != "application/json" {
				t.Errorf("request %s %s %q", s.method, s.path, s.header.Get("Content-Type"))
			}
			if s.authOK {
				t.Error("the webhook sent basic auth")
			}
			if sig := s.header.Get(kick.SignatureHeader); sig != kick.Sign(hookSecret, s.body) || !strings.HasPrefix(sig, "sha256=") {
				t.Errorf("signature %q does not match the body", sig)
			}
			if kick.Sign("another-secret-0123", s.body) == s.header.Get(kick.SignatureHeader) {
				t.Error("signature does not depend on the secret")
			}
			var body kick.WebhookBody
			if err := json.Unmarshal(s.body, &body); err != nil || body.Device != "sensor-1" || body.Reason != "device.revoke" || !body.At.Equal(req.At) {
				t.Errorf("body %s (%v)", s.body, err)
			}
			if strings.Contains(string(s.body), hookSecret) {
				t.Error("the secret is in the body")
			}
		})
	}
}

// A broker that is down is an error naming the broker's address, without
// credentials.
func TestBrokerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	rb, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: addr, User: "u", Password: rabbitPass})
	em, _ := kick.NewEMQX(kick.EMQXConfig{URL: addr, APIKey: "k", APISecret: emqxSecret})
	wh, _ := kick.NewWebhook(kick.WebhookConfig{URL: addr, Secret: hookSecret})
	for _, b := range []kick.Broker{rb, em, wh} {
		err := b.Disconnect(context.Background(), req)
		checkErr(t, err, "connection refused", rabbitPass, emqxSecret, hookSecret)
		if err != nil && !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Errorf("%s: error does not name the address: %v", b.Name(), err)
		}
	}
}

func TestBrokerConfig(t *testing.T) {
	cases := []struct {
		name string
		new  func() error
		want string // substring of the message; "" = valid
	}{
		{"rabbitmq ok", func() error {
			_, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: "https://rabbit:15672/", User: "u", Password: "p"})
			return err
		}, ""},
		{"rabbitmq credentials in URL", func() error {
			_, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: "http://u:" + rabbitPass + "@rabbit:15672", User: "u", Password: "p"})
			return err
		}, "must not carry credentials"},
		{"rabbitmq no password", func() error {
			_, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: "http://rabbit:15672", User: "u"})
			return err
		}, "needs a user and a password"},
		{"rabbitmq scheme", func() error {
			_, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: "amqp://rabbit", User: "u", Password: "p"})
			return err
		}, "http:// or https://"},
		{"rabbitmq no host", func() error {
			_, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: "http:///api", User: "u", Password: "p"})
			return err
		}, "has no host"},
		{"emqx no secret", func() error {
			_, err := kick.NewEMQX(kick.EMQXConfig{URL: "http://emqx:18083", APIKey: "k"})
			return err
		}, "API key and secret"},
		{"emqx query", func() error {
			_, err := kick.NewEMQX(kick.EMQXConfig{URL: "http://emqx:18083?x=1", APIKey: "k", APISecret: "s"})
			return err
		}, "query or fragment"},
		{"webhook short secret", func() error {
			_, err := kick.NewWebhook(kick.WebhookConfig{URL: "https://hook.example/kick", Secret: "short"})
			return err
		}, "at least 16 bytes"},
		{"webhook not a URL", func() error {
			_, err := kick.NewWebhook(kick.WebhookConfig{URL: "://nope", Secret: hookSecret})
			return err
		}, "not a URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.new()
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want invalid_argument with %q", err, c.want)
			}
			if strings.Contains(err.Error(), rabbitPass) {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// checkErr checks err against want ("" = nil, else a substring) and that no
// secret appears in it.
func checkErr(t *testing.T, err error, want string, secrets ...string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want it to contain %q", err, want)
	}
	for _, s := range secrets {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

// FuzzBrokerURL: any configured URL is accepted or refused with
// invalid_argument, never panics, and an accepted one carries no
// credentials into requests.
func FuzzBrokerURL(f *testing.F) {
	for _, s := range []string{"http://rabbit:15672", "https://u:p@h/", "http://h/a%2Fb/", "ftp://h", "http://[::1]:80/x?y", "", "%zz", "http://h#f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		b, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: raw, User: "u", Password: rabbitPass})
		if err != nil {
			if !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("error without invalid_argument: %v", err)
			}
			if strings.Contains(err.Error(), rabbitPass) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no network: only the request construction runs
		if err := b.Disconnect(ctx, req); err == nil || strings.Contains(err.Error(), rabbitPass) {
			t.Fatalf("Disconnect with a cancelled context: %v", err)
		}
	})
}
