package hooks_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/hooks"
)

// hookRecorder is a hooks.Observer and an authz.Authorizer in one: what the
// edge reported, and what reached the core.
type hookRecorder struct {
	mu       sync.Mutex
	served   []string
	refused  []string
	dialects []string
	fail     error
}

func (r *hookRecorder) HookServed(dialect string, dur time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if dur <= 0 {
		dialect += " (no duration)"
	}
	r.served = append(r.served, dialect)
}

func (r *hookRecorder) Refused(dialect string, action authz.Action, result, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, strings.Join([]string{dialect, string(action), result, reason}, " "))
}

func (r *hookRecorder) Authorize(_ context.Context, req authz.Request) (authz.Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dialects = append(r.dialects, req.Dialect)
	return authz.Decision{Allow: true}, r.fail
}

const emqxPublish = `{"clientid":"dev1","cert_common_name":"dev1","action":"publish","topic":"t","qos":1}`

// TestObserverPerDialect: each dialect's routes report their own dialect,
// both to the Observer (one HookServed per request) and to the core
// (Request.Dialect); the event stream is not a hook request.
func TestObserverPerDialect(t *testing.T) {
	cases := []struct {
		path, contentType, body, dialect string
	}{
		{"/hooks/emqx/authn", "application/json", `{"clientid":"dev1","cert_common_name":"dev1"}`, "emqx"},
		{"/hooks/emqx/authz", "application/json", emqxPublish, "emqx"},
		{"/hooks/vernemq", "application/json", `{"username":"dev1","client_id":"dev1","topic":"t","qos":0}`, "vernemq"},
		{"/hooks/mosquitto/acl", "application/json", `{"username":"dev1","clientid":"dev1","topic":"t","acc":2}`, "mosquitto"},
		{"/hooks/rabbitmq/topic", "application/x-www-form-urlencoded", "username=dev1&vhost=/&resource=topic&name=amq.topic&permission=write&routing_key=t&variable_map.client_id=dev1", "rabbitmq"},
		{"/hooks/v1/authorize", "application/json", `{"action":"connect","client_id":"dev1","identity":"dev1"}`, "native"},
	}
	for _, c := range cases {
		t.Run(c.dialect+c.path, func(t *testing.T) {
			rec := &hookRecorder{}
			h, err := hooks.New(hooks.Config{Authorizer: rec, Secret: secret, Observer: rec, RabbitCertLogin: true})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.contentType)
			req.Header.Set("X-Gatehouse-Hook-Secret", secret)
			if c.dialect == "vernemq" {
				req.Header.Set("vernemq-hook", "auth_on_publish")
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if !slices.Equal(rec.served, []string{c.dialect}) {
				t.Errorf("served %q, want [%s]", rec.served, c.dialect)
			}
			if !slices.Equal(rec.dialects, []string{c.dialect}) {
				t.Errorf("the core saw dialects %q, want [%s]", rec.dialects, c.dialect)
			}
			if len(rec.refused) != 0 {
				t.Errorf("refused %q, want none", rec.refused)
			}
		})
	}
}

// TestObserverRefusals: what the edge refuses before the core is counted by
// the edge, once, with its class; what the core answered, even with an
// error, is left to the core's own observer.
func TestObserverRefusals(t *testing.T) {
	cases := []struct {
		name, path, secret, body string
		coreErr                  error
		want                     []string
	}{
		{"no secret", "/hooks/emqx/authz", "", emqxPublish, nil, []string{"emqx publish deny unauthenticated"}},
		{"wrong secret", "/hooks/v1/authorize", "not-the-secret-at-all", `{"action":"connect","client_id":"d","identity":"d"}`, nil,
			[]string{"native  deny unauthenticated"}},
		{"malformed", "/hooks/emqx/authz", secret, `{"clientid":`, nil, []string{"emqx  error bad_request"}},
		{"unknown action", "/hooks/emqx/authz", secret, `{"clientid":"dev1","cert_common_name":"dev1","action":"fly"}`, nil,
			[]string{"emqx  error bad_request"}},
		{"NUL in topic", "/hooks/emqx/authz", secret, `{"clientid":"dev1","cert_common_name":"dev1","action":"publish","topic":"a\u0000b"}`, nil,
			[]string{"emqx publish error bad_request"}},
		{"mosquitto password listener", "/hooks/mosquitto/user", secret, `{"username":"dev1","password":"x"}`, nil,
			[]string{"mosquitto connect deny no_identity"}},
		{"malformed without the secret", "/hooks/emqx/authz", "", `{"clientid":`, nil, []string{"emqx  deny unauthenticated"}},
		{"certificate the CA does not vouch for", "/hooks/v1/authorize", secret, nativeWithCert, nil,
			[]string{"native connect deny cert_invalid"}},
		{"core error", "/hooks/emqx/authz", secret, emqxPublish, errors.New("policy engine down"), nil},
		{"allowed", "/hooks/emqx/authz", secret, emqxPublish, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &hookRecorder{fail: c.coreErr}
			h, err := hooks.New(hooks.Config{Authorizer: rec, Secret: secret, Observer: rec, Certs: refuseCerts{}})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			if c.secret != "" {
				req.Header.Set("X-Gatehouse-Hook-Secret", c.secret)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if !slices.Equal(rec.refused, c.want) {
				t.Errorf("refused %q, want %q", rec.refused, c.want)
			}
			if len(rec.served) != 1 {
				t.Errorf("served %q, want one request", rec.served)
			}
		})
	}
}

// refuseCerts refuses every client certificate as the CA does one it did
// not issue.
type refuseCerts struct{}

func (refuseCerts) VerifyClientDER([]byte) (string, string, error) {
	return "", "", fault.New(fault.CertInvalid, "certificate is not from this CA")
}

// nativeWithCert is a native CONNECT carrying a self-signed certificate.
var nativeWithCert = func() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(map[string]string{"action": "connect", "client_id": "dev1", "identity": "dev1",
		"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// TestObserverOptional: without an Observer, hooks answer as before and the
// core still learns the dialect.
func TestObserverOptional(t *testing.T) {
	rec := &hookRecorder{}
	h, err := hooks.New(hooks.Config{Authorizer: rec, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/hooks/emqx/authz", strings.NewReader(emqxPublish))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gatehouse-Hook-Secret", secret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if !allowedBy("emqx", w.Code, w.Body.String()) || !slices.Equal(rec.dialects, []string{"emqx"}) {
		t.Fatalf("answer %d %s, dialects %q", w.Code, w.Body, rec.dialects)
	}
}
