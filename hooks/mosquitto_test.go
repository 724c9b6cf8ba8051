package hooks_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-iot/gatehouse/authz"
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

// goAuthACL sends dev1's ACL check for acc on topic as go-auth's JSON body.
func goAuthACL(h http.Handler, acc, topic string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/hooks/mosquitto/acl",
		strings.NewReader(`{"acc":`+acc+`,"clientid":"dev1","topic":"`+topic+`","username":"dev1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("gatehouse", secret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// onlyActions is a core that allows exactly the listed actions and records
// every action it was asked about.
type onlyActions struct {
	allow map[authz.Action]bool
	mu    sync.Mutex
	asked []authz.Action
}

func (o *onlyActions) Authorize(_ context.Context, req authz.Request) (authz.Decision, error) {
	o.mu.Lock()
	o.asked = append(o.asked, req.Action)
	o.mu.Unlock()
	return authz.Decision{Allow: o.allow[req.Action], Reason: "test"}, nil
}

// TestMosquittoAccValues: each go-auth access code (its MOSQ_ACL_*
// constants, passed through unchanged by its HTTP backend) is decided as the
// actions it names — read 1 as read (delivery), write 2 as publish,
// readwrite 3 as read and publish (both must allow), subscribe 4 as
// subscribe — and every other code is denied without asking the core.
// Before, 1 was decided as subscribe and 3 was refused.
func TestMosquittoAccValues(t *testing.T) {
	r, p, s := authz.Read, authz.Publish, authz.Subscribe
	for _, tc := range []struct {
		acc     string
		allowed []authz.Action // what the core allows
		allow   bool
		asked   []authz.Action
	}{
		{"1", []authz.Action{r}, true, []authz.Action{r}},
		{"1", []authz.Action{s, p}, false, []authz.Action{r}},
		{"2", []authz.Action{p}, true, []authz.Action{p}},
		{"2", []authz.Action{r, s}, false, []authz.Action{p}},
		{"3", []authz.Action{r, p}, true, []authz.Action{r, p}},
		{"3", []authz.Action{r}, false, []authz.Action{r, p}},
		{"3", []authz.Action{p}, false, []authz.Action{r}},
		{"3", []authz.Action{s}, false, []authz.Action{r}},
		{"4", []authz.Action{s}, true, []authz.Action{s}},
		{"4", []authz.Action{r}, false, []authz.Action{s}},
		{"0", []authz.Action{r, p, s}, false, nil},
		{"5", []authz.Action{r, p, s}, false, nil},
		{"8", []authz.Action{r, p, s}, false, nil},
		{"17", []authz.Action{r, p, s}, false, nil},
		{"-1", []authz.Action{r, p, s}, false, nil},
	} {
		t.Run(tc.acc+"/"+fmt.Sprint(tc.allowed), func(t *testing.T) {
			core := &onlyActions{allow: map[authz.Action]bool{}}
			for _, a := range tc.allowed {
				core.allow[a] = true
			}
			h, err := hooks.New(hooks.Config{Authorizer: core, Secret: secret})
			if err != nil {
				t.Fatal(err)
			}
			rec := goAuthACL(h, tc.acc, "t")
			if got := rec.Code == http.StatusOK; got != tc.allow || rec.Code >= 500 {
				t.Errorf("acc %s: %d %s, want allow=%v", tc.acc, rec.Code, rec.Body, tc.allow)
			}
			if !slices.Equal(core.asked, tc.asked) {
				t.Errorf("acc %s: core asked %v, want %v", tc.acc, core.asked, tc.asked)
			}
		})
	}
}

// TestMosquittoReadIsDelivery runs the access codes through the default
// policy: dev1 may receive its own command topic (read) but may not publish
// it, may publish its telemetry but not receive it, so readwrite is denied
// on both; another device's command topic is neither read nor written.
func TestMosquittoReadIsDelivery(t *testing.T) {
	h := newHandler(t, hooks.MosquittoStatus)
	own, tele, other := "fleets/plant/devices/dev1/cmd/reboot", "fleets/plant/devices/dev1/telemetry/t", "fleets/plant/devices/dev2/cmd/reboot"
	for _, tc := range []struct {
		acc, topic string
		allow      bool
	}{
		{"1", own, true}, {"2", own, false}, {"3", own, false},
		{"1", tele, false}, {"2", tele, true}, {"3", tele, false},
		{"1", other, false}, {"2", other, false}, {"3", other, false}, {"4", other, false},
	} {
		rec := goAuthACL(h, tc.acc, tc.topic)
		if got := rec.Code == http.StatusOK; got != tc.allow {
			t.Errorf("acc %s on %s: %d, want allow=%v", tc.acc, tc.topic, rec.Code, tc.allow)
		}
	}
}
