//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
	"github.com/gatehouse-iot/gatehouse/kick"
)

// TestRabbitMQSessionKick: a device subscribed to a real RabbitMQ 3.10 is
// revoked (another suspended) through the API, and Gatehouse closes its
// live MQTT connection through the management API within 2 s of the call;
// its next connect is refused, and a bystander device stays connected and
// keeps receiving. One broker serves every phase.
//
// The broker's auth_backends/auth_http lines and the commands that create
// Gatehouse's management user are read from README.md ("### RabbitMQ
// 3.10"), so the documented configuration is the one that must work: with
// the http backend alone (the README before issue 10), the management login
// went to Gatehouse's user hook, every kick got 401, and the revoked device
// kept receiving. Before the real run, a Gatehouse with a wrong management
// password shows the target's failure at start (log, API, /readyz), and an
// internal user whose name could be a device id is found by the check.
func TestRabbitMQSessionKick(t *testing.T) {
	begin := time.Now()
	pub, sub := requireRabbitMQ(t)

	g := newGatehouse(t)
	secret, kickPass := randHex(t, 16), randHex(t, 16)
	doc := readmeRabbitMQ(t, secret, g.hooksAddr, kickPass)

	// The broker starts first: Gatehouse needs its management URL, and the
	// broker calls Gatehouse's hooks only when a client connects.
	serverCA, srvCert, srvKey := rmqServerPKI(t, g.dir)
	b := testbroker.RabbitMQ(t, testbroker.RabbitConfig{
		CAFile: g.caChain(t), CertFile: srvCert, KeyFile: srvKey,
		CertLogin: true, AuthConfig: doc.auth,
		FastStop: true,
	})
	conf, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range doc.mustHave {
		if !strings.Contains("\n"+string(conf)+"\n", "\n"+l+"\n") {
			t.Fatalf("the broker's config lacks the README's line %q:\n%s", l, conf)
		}
	}
	// Gatehouse gets the management user the README creates.
	for _, args := range doc.ctl {
		b.Ctl(t, args...)
	}

	// A wrong management password is visible at start, before any kick.
	bad := newGatehouse(t)
	bad.serve(t, "GATEHOUSE_KICK_RABBITMQ_URL="+b.MgmtURL(), "GATEHOUSE_KICK_RABBITMQ_USER="+doc.kickUser,
		"GATEHOUSE_KICK_RABBITMQ_PASSWORD=wrong-"+kickPass)
	bad.logs.waitLine(t, `msg="kick target check failed: kicks to it will fail"`, "broker=rabbitmq", "401 Unauthorized")
	if st := kickTargets(t, bad); len(st) != 1 || st[0].Status != "error" || !strings.Contains(st[0].Error, "401") {
		t.Errorf("kick targets with a wrong password: %+v", st)
	}
	if code, body := readyz(t, bad); code != 200 || !strings.Contains(body, "degraded: kick target rabbitmq: ") {
		t.Errorf("/readyz with a wrong kick password: %d %q", code, body)
	}
	if l := bad.logs.String(); strings.Contains(l, kickPass) {
		t.Error("the management password appeared in the serve log")
	}

	g.serve(t,
		"GATEHOUSE_HOOKS_RABBITMQ_CERT_LOGIN=true",
		"GATEHOUSE_HOOKS_SECRET="+secret,
		"GATEHOUSE_KICK_RABBITMQ_URL="+b.MgmtURL(),
		"GATEHOUSE_KICK_RABBITMQ_USER="+doc.kickUser,
		"GATEHOUSE_KICK_RABBITMQ_PASSWORD="+kickPass,
		// A hook target that is down: its kicks fail, are retried and
		// show as such, and do not hold up the RabbitMQ kick.
		"GATEHOUSE_KICK_WEBHOOK_URL=http://"+freeAddr(t)+"/kick",
		"GATEHOUSE_KICK_WEBHOOK_SECRET="+secret,
	)
	if st := kickTargets(t, g); len(st) != 2 || st[0].Broker != "rabbitmq" || st[0].Status != "ok" || st[1].Status != "unchecked" {
		t.Errorf("kick targets with the right password: %+v", st)
	}
	if code, body := readyz(t, g); code != 200 || body != "ok\n" {
		t.Errorf("/readyz with the right kick password: %d %q", code, body)
	}
	logs := g.logs

	g.api(t, "POST", "/api/v1/profiles", map[string]any{
		"name": "command", "key_types": []string{"P-256"}, "validity": "1h", "roles": []string{"command"}}, http.StatusCreated, nil)
	devs := map[string]testDevice{}
	for id, profile := range map[string]string{"victim": "default", "suspendee": "default", "bystander": "default", "ctl": "command"} {
		devs[id] = g.enroll(t, g.tokens(t, profile, 1)[0], id)
		waitHookAllows(t, g, secret, id)
	}
	t.Logf("rabbitmq (start %s) and gatehouse up, 4 devices enrolled after %s",
		b.StartTime.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

	c := mqttCLI{version: mqttV311, pub: pub, sub: sub, port: b.MQTTTLSPort, cafile: serverCA}
	mg := rmqMgmt{t: t, base: b.MgmtURL(), user: b.MgmtUser, pass: b.MgmtPass}
	// connections lists the device's connections from the broker's
	// connection tracking (immediate, unlike GET /api/connections).
	connections := func(id string) []string {
		var conns []struct {
			Name string `json:"name"`
		}
		raw := mg.call("GET", "/api/connections/username/"+id, nil)
		if err := json.Unmarshal(raw, &conns); err != nil {
			t.Fatalf("connections of %s: %v\n%s", id, err, raw)
		}
		var names []string
		for _, c := range conns {
			names = append(names, c.Name)
		}
		return names
	}
	waitConnected := func(id string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for len(connections(id)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s has no connection at the broker\n%s", id, b.LogTail(30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	subs := map[string]*rmqSub{}
	for _, id := range []string{"victim", "suspendee", "bystander"} {
		subs[id] = c.subscribe(t, devs[id], id, "fleets/default/devices/"+id+"/cmd/#")
	}
	for id := range subs {
		waitConnected(id)
	}
	// The bystander's subscription works before anything happens.
	c.publishUntilSeen(t, subs["bystander"], devs["ctl"], "fleets/default/devices/bystander/cmd/ping", "ping-1")

	// cut takes access away through the API and measures how long after
	// the call began the device's connection is gone at the broker.
	cut := func(id, path string, body map[string]any, reason string) {
		t.Helper()
		before := connections(id)
		if len(before) != 1 {
			t.Fatalf("%s has %d connections before the %s, want 1", id, len(before), reason)
		}
		start := time.Now()
		g.api(t, "POST", "/api/v1/devices/"+id+path, body, http.StatusOK, nil)
		returned := time.Since(start)
		for {
			names := connections(id)
			if len(names) == 0 || names[0] != before[0] {
				// Gone; a different name would be a reconnect, which
				// Gatehouse must refuse (checked below).
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s's connection %s still open 2s after the %s call\n%s", id, before[0], reason, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		closed := time.Since(start)
		t.Logf("%s: API call returned after %s, connection closed %s after the call began", reason, returned.Round(time.Millisecond), closed.Round(time.Millisecond))
		// mosquitto_sub reconnects, is refused (CONNACK 4) and exits.
		select {
		case err := <-subs[id].done:
			subs[id].done <- err // for the subscriber's cleanup, which waits on it
			t.Logf("%s: mosquitto_sub exited %s after the call (%v): %s", id, time.Since(start).Round(time.Millisecond), err,
				strings.TrimSpace(subs[id].out.String()))
		case <-time.After(15 * time.Second):
			t.Errorf("%s's mosquitto_sub still runs 15s after its connection was closed:\n%s", id, subs[id].out.String())
		}
		if names := connections(id); len(names) != 0 {
			t.Errorf("%s reconnected after the %s: %v", id, reason, names)
		}
		// A command sent now never reaches it.
		if out, err := c.publish(devs["ctl"], "ctl", "fleets/default/devices/"+id+"/cmd/after", "after-"+reason); err != nil {
			t.Fatalf("ctl publishing after the %s: %v\n%s", reason, err, out)
		}
		time.Sleep(300 * time.Millisecond)
		if strings.Contains(subs[id].out.String(), "after-"+reason) {
			t.Errorf("%s received a command after the %s:\n%s", id, reason, subs[id].out.String())
		}
		// Its next connect is refused.
		if out, err := c.publish(devs[id], id, "fleets/default/devices/"+id+"/telemetry/t", "after-"+reason); err == nil {
			t.Errorf("%s connected and published after the %s:\n%s", id, reason, out)
		}
		var st apitypes.DeviceSessions
		g.api(t, "GET", "/api/v1/devices/"+id+"/sessions", nil, http.StatusOK, &st)
		if len(st.Kicks) != 2 || st.Kicks[0].Broker != "rabbitmq" || st.Kicks[0].Status != "done" || st.Kicks[0].Reason != reason ||
			st.Kicks[1].Broker != "webhook" || st.Kicks[1].Status != "pending" || st.Kicks[1].Attempts < 1 ||
			!strings.Contains(st.Kicks[1].LastError, "connection refused") {
			t.Errorf("%s's kick status: %+v", id, st)
		}
		logs.waitLine(t, `msg="session kick delivered"`, "device="+id, "broker=rabbitmq", "reason="+reason)
	}

	cut("victim", "/revoke", map[string]any{"reason": "keyCompromise", "note": "e2e"}, "device.revoke")
	cut("suspendee", "/suspend", map[string]any{"note": "e2e"}, "device.suspend")

	// The bystander was never disconnected and still receives.
	if names := connections("bystander"); len(names) != 1 {
		t.Errorf("bystander connections after the kicks: %v", names)
	}
	select {
	case err := <-subs["bystander"].done:
		subs["bystander"].done <- err
		t.Fatalf("the bystander's subscriber exited (%v):\n%s", err, subs["bystander"].out.String())
	default:
	}
	c.publishUntilSeen(t, subs["bystander"], devs["ctl"], "fleets/default/devices/bystander/cmd/ping", "ping-2")
	// The unreachable hook's kicks are listed as still pending, retried.
	var pending apitypes.SessionKickList
	g.api(t, "GET", "/api/v1/session-kicks?status=pending", nil, http.StatusOK, &pending)
	if len(pending.Kicks) != 2 || pending.Kicks[0].Broker != "webhook" || pending.Kicks[1].Broker != "webhook" {
		t.Errorf("pending kicks: %+v", pending)
	}
	logs.waitLine(t, `msg="session kick failed; retrying"`, "device=victim", "broker=webhook")
	if l := logs.String(); strings.Contains(l, kickPass) || strings.Contains(l, secret) {
		t.Error("a broker credential appeared in the serve log")
	}

	// An internal user whose name could be a device id (a device "admin"
	// would log in as it) is what the check refuses.
	b.Ctl(t, "add_user", "admin", randHex(t, 8))
	rc, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: b.MgmtURL(), User: doc.kickUser, Password: kickPass})
	if err != nil {
		t.Fatal(err)
	}
	var ce *kick.CollisionError
	if err := rc.Check(context.Background()); !errors.As(err, &ce) || len(ce.Users) != 1 || ce.Users[0] != "admin" {
		t.Errorf("check with an internal user named admin: %v", err)
	}
	t.Logf("total %s", time.Since(begin).Round(time.Millisecond))
}

// rabbitDoc is what README.md's RabbitMQ section prescribes.
type rabbitDoc struct {
	auth     string     // the auth_backends and auth_http lines
	mustHave []string   // its certificate-login lines, which the harness writes too
	ctl      [][]string // rabbitmqctl commands for Gatehouse's management user
	kickUser string
}

// readmeRabbitMQ reads the ini and sh blocks of README.md's "### RabbitMQ
// 3.10" section, with the placeholders filled in. "delete_user guest" is
// skipped: the harness's node has no guest.
func readmeRabbitMQ(t *testing.T, secret, hooksAddr, kickPass string) rabbitDoc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "\n### RabbitMQ 3.10\n")
	if !ok {
		t.Fatal("README.md has no ### RabbitMQ 3.10 section")
	}
	sec, _, _ = strings.Cut(sec, "\n### ")
	block := func(lang string) []string {
		_, b, ok := strings.Cut(sec, "```"+lang+"\n")
		if !ok {
			t.Fatalf("README's RabbitMQ section has no %s block", lang)
		}
		b, _, _ = strings.Cut(b, "```")
		return strings.Split(strings.TrimSpace(b), "\n")
	}
	var d rabbitDoc
	var auth []string
	for _, l := range block("ini") {
		switch {
		case strings.HasPrefix(l, "auth_backends.") || strings.HasPrefix(l, "auth_http."):
			l = strings.ReplaceAll(strings.ReplaceAll(l, "SECRET", secret), "127.0.0.1:8081", hooksAddr)
			auth = append(auth, l)
		case strings.HasPrefix(l, "mqtt.ssl_cert_login") || strings.HasPrefix(l, "ssl_cert_login_from") ||
			strings.HasPrefix(l, "mqtt.allow_anonymous") || strings.HasPrefix(l, "ssl_options.verify") ||
			strings.HasPrefix(l, "ssl_options.fail_if_no_peer_cert"):
			d.mustHave = append(d.mustHave, l)
		}
	}
	d.auth = strings.Join(auth, "\n")
	for _, l := range block("sh") {
		f := strings.Fields(strings.ReplaceAll(l, "KICK_PASSWORD", kickPass))
		if len(f) < 2 || f[0] != "rabbitmqctl" {
			t.Fatalf("README's RabbitMQ sh block has a line that is not a rabbitmqctl command: %q", l)
		}
		if f[1] == "delete_user" && len(f) == 3 && f[2] == "guest" {
			continue
		}
		if f[1] == "add_user" && len(f) == 4 {
			d.kickUser = f[2]
		}
		d.ctl = append(d.ctl, f[1:])
	}
	if len(auth) == 0 || d.kickUser == "" || len(d.mustHave) != 5 {
		t.Fatalf("README's RabbitMQ section: auth lines %q, management user %q, certificate lines %q", auth, d.kickUser, d.mustHave)
	}
	return d
}

// kickTargets returns GET /session-kicks' targets.
func kickTargets(t *testing.T, g *gatehouse) []apitypes.KickTarget {
	t.Helper()
	var r apitypes.SessionKickList
	g.api(t, "GET", "/api/v1/session-kicks", nil, http.StatusOK, &r)
	return r.Targets
}

// readyz returns the diagnostics listener's /readyz answer.
func readyz(t *testing.T, g *gatehouse) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + g.diagAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeRefusesDeviceShapedOperator: serve does not start while the
// RabbitMQ kick target has an internal user whose name could be a device
// id (a device enrolled under it would log in as that user), and says
// which; one named with '@' is accepted. A fake management API stands in
// for RabbitMQ (TestRabbitMQSessionKick checks the real one finds such a
// user).
func TestServeRefusesDeviceShapedOperator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	var users atomic.Value
	users.Store(`[{"name":"gatehouse-kick@ops"},{"name":"admin"}]`)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/whoami":
			_, _ = io.WriteString(w, `{"name":"gatehouse-kick@ops","tags":["administrator"]}`)
		case "/api/users":
			_, _ = io.WriteString(w, users.Load().(string))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer fake.Close()
	g := newGatehouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, "serve", "--data-dir", g.data, "--hooks-addr", g.hooksAddr, "--diag-addr", g.diagAddr)
	cmd.Env = append(append(os.Environ(), g.env...), "GATEHOUSE_API_ADDR="+g.apiAddr,
		"GATEHOUSE_KICK_RABBITMQ_URL="+fake.URL, "GATEHOUSE_KICK_RABBITMQ_USER=gatehouse-kick@ops", "GATEHOUSE_KICK_RABBITMQ_PASSWORD=pw")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil || err == nil {
		t.Fatalf("serve did not refuse to start (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), `internal users ["admin"] could be device ids`) {
		t.Errorf("serve's refusal does not name the user:\n%s", out)
	}
	// Without the device-shaped user it starts.
	users.Store(`[{"name":"gatehouse-kick@ops"}]`)
	g.serve(t, "GATEHOUSE_KICK_RABBITMQ_URL="+fake.URL, "GATEHOUSE_KICK_RABBITMQ_USER=gatehouse-kick@ops", "GATEHOUSE_KICK_RABBITMQ_PASSWORD=pw")
	if st := kickTargets(t, g); len(st) != 1 || st[0].Status != "ok" {
		t.Errorf("kick targets: %+v", st)
	}
}
