package hooks_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testlog"

	"github.com/gatehouse-iot/gatehouse/hooks"
)

// TestMosquittoUserAlwaysDenied: Mosquitto skips the plugin's basic auth on
// a listener with use_identity_as_username (handle_connect.c, "Authentication
// assumed to be cleared"), so go-auth's user check only ever comes from a
// listener whose usernames clients type. Gatehouse denies it in every
// response mode, however the broker authenticated — also for an enrolled,
// active device whose client id matches — and says why in the log. Before,
// it ran the connect check on the typed username and allowed dev1.
func TestMosquittoUserAlwaysDenied(t *testing.T) {
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	auths := []struct {
		name string
		cfg  hooks.Config
		prep func(*http.Request)
	}{
		{"secret as basic-auth password", hooks.Config{Secret: secret}, func(r *http.Request) { r.SetBasicAuth("gatehouse", secret) }},
		{"secret in header", hooks.Config{Secret: secret}, func(r *http.Request) { r.Header.Set("X-Gatehouse-Hook-Secret", secret) }},
		{"verified client certificate", hooks.Config{ClientCerts: true}, func(r *http.Request) { r.TLS = verified }},
		{"opened explicitly", hooks.Config{AllowUnauthenticated: true}, func(*http.Request) {}},
	}
	bodies := []struct{ ctype, body string }{
		{"application/json", `{"clientid":"dev1","password":"","username":"dev1"}`},
		{"application/x-www-form-urlencoded", "clientid=dev1&password=&username=dev1"},
	}
	for _, a := range auths {
		for _, mode := range []hooks.MosquittoMode{hooks.MosquittoStatus, hooks.MosquittoJSON, hooks.MosquittoText} {
			t.Run(a.name+"/"+string(mode), func(t *testing.T) {
				var logs testlog.Buffer
				cfg := a.cfg
				cfg.Authorizer, cfg.MosquittoMode, cfg.Log = newAuthorizer(t), mode, slog.New(slog.NewTextHandler(&logs, nil))
				h, err := hooks.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range bodies {
					req := httptest.NewRequest("POST", "/hooks/mosquitto/user", strings.NewReader(b.body))
					req.Header.Set("Content-Type", b.ctype)
					a.prep(req)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if allowedBy("mosquitto-"+string(mode), rec.Code, rec.Body.String()) || rec.Code >= 500 {
						t.Errorf("%s: user check answered %d %s, want the explicit deny", b.ctype, rec.Code, rec.Body)
					}
				}
				if a.name != "opened explicitly" && !strings.Contains(logs.String(), "use_identity_as_username") {
					t.Errorf("the deny's reason is not logged:\n%s", logs.String())
				}
			})
		}
	}
}

// TestGoAuthUserinfoSecret sends requests the way go-auth's HTTP backend
// does (backends/http.go: the URL is "http://" + auth_opt_http_host + ":" +
// auth_opt_http_port + the uri, the body JSON or a form, headers only
// Content-Type and User-Agent), through Go's own HTTP client and a real
// listener. With the secret as userinfo in the host option the client sends
// it as basic auth and the ACL check is served; without it — no header, no
// userinfo — every check is the explicit deny.
func TestGoAuthUserinfoSecret(t *testing.T) {
	h := newHandler(t, hooks.MosquittoStatus)
	srv := httptest.NewServer(h)
	defer srv.Close()
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	host, port, _ := strings.Cut(hostPort, ":")
	const uri = "/hooks/mosquitto/acl"
	client := &http.Client{}
	send := func(authHost string, form bool) int {
		full := "http://" + authHost + ":" + port + uri
		var resp *http.Response
		var err error
		if form {
			resp, err = client.PostForm(full, url.Values{"username": {"dev1"}, "clientid": {"dev1"},
				"topic": {"fleets/plant/devices/dev1/telemetry/t"}, "acc": {"2"}})
		} else {
			req, rerr := http.NewRequest("POST", full, strings.NewReader(
				`{"acc":2,"clientid":"dev1","topic":"fleets/plant/devices/dev1/telemetry/t","username":"dev1"}`))
			if rerr != nil {
				t.Fatal(rerr)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "mosquitto-2.0.22")
			resp, err = client.Do(req)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, form := range []bool{false, true} {
		if got := send("gatehouse:"+secret+"@"+host, form); got != http.StatusOK {
			t.Errorf("form=%v, secret as userinfo in auth_opt_http_host: status %d, want 200", form, got)
		}
		if got := send(host, form); got != http.StatusForbidden {
			t.Errorf("form=%v, no secret: status %d, want 403", form, got)
		}
		if got := send("gatehouse:"+secret+"x@"+host, form); got != http.StatusForbidden {
			t.Errorf("form=%v, wrong secret: status %d, want 403", form, got)
		}
	}
}

// TestMosquittoAccValues: with a core that allows everything, the ACL check
// allows exactly the access values Mosquitto passes to go-auth — read 1,
// write 2, subscribe 4 — and denies every other, including 3 (read|write),
// which Mosquitto never sends and which used to be served as subscribe and
// publish together, and 8 (unsubscribe), which Mosquitto answers itself for
// go-auth's plugin interface.
func TestMosquittoAccValues(t *testing.T) {
	h, err := hooks.New(hooks.Config{Authorizer: allowAll{}, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		acc   string
		allow bool
	}{{"1", true}, {"2", true}, {"4", true}, {"0", false}, {"3", false}, {"5", false}, {"8", false}, {"-1", false}} {
		req := httptest.NewRequest("POST", "/hooks/mosquitto/acl",
			strings.NewReader(`{"acc":`+tc.acc+`,"clientid":"dev1","topic":"t","username":"dev1"}`))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("gatehouse", secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := rec.Code == http.StatusOK; got != tc.allow || rec.Code >= 500 {
			t.Errorf("acc %s: %d %s, want allow=%v", tc.acc, rec.Code, rec.Body, tc.allow)
		}
	}
}
