//go:build linux

package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// TestRabbitMQSessionKick: a device subscribed to a real RabbitMQ 3.10 is
// revoked (another suspended) through the API, and Gatehouse closes its
// live MQTT connection through the management API within 2 s of the call;
// its next connect is refused, and a bystander device stays connected and
// keeps receiving. One broker serves every phase.
func TestRabbitMQSessionKick(t *testing.T) {
	begin := time.Now()
	pub, sub := requireRabbitMQ(t)

	g := newGatehouse(t)
	secret, kickPass := randHex(t, 16), randHex(t, 16)

	// The broker starts first: Gatehouse needs its management URL, and the
	// broker calls Gatehouse's hooks only when a client connects.
	serverCA, srvCert, srvKey := rmqServerPKI(t, g.dir)
	b := testbroker.RabbitMQ(t, testbroker.RabbitConfig{
		CAFile: g.caChain(t), CertFile: srvCert, KeyFile: srvKey,
		CertLogin: true, AuthHTTPBase: "http://gatehouse:" + secret + "@" + g.hooksAddr + "/hooks/rabbitmq", AuthHTTPMethod: "post",
		FastStop: true,
	})
	// Gatehouse gets a management user of its own (tag administrator: it
	// closes other users' connections).
	b.AddManagementUser(t, "gatehouse-kick", kickPass)

	g.serve(t,
		"GATEHOUSE_HOOKS_RABBITMQ_CERT_LOGIN=true",
		"GATEHOUSE_HOOKS_SECRET="+secret,
		"GATEHOUSE_KICK_RABBITMQ_URL="+b.MgmtURL(),
		"GATEHOUSE_KICK_RABBITMQ_USER=gatehouse-kick",
		"GATEHOUSE_KICK_RABBITMQ_PASSWORD="+kickPass,
		// A hook target that is down: its kicks fail, are retried and
		// show as such, and do not hold up the RabbitMQ kick.
		"GATEHOUSE_KICK_WEBHOOK_URL=http://"+freeAddr(t)+"/kick",
		"GATEHOUSE_KICK_WEBHOOK_SECRET="+secret,
	)
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

	c := rmqClients{pub: pub, sub: sub, port: b.MQTTTLSPort, cafile: serverCA}
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

	type kickStatus struct {
		Kicks []struct {
			Broker    string `json:"broker"`
			Status    string `json:"status"`
			Reason    string `json:"reason"`
			Attempts  int    `json:"attempts"`
			LastError string `json:"last_error"`
		} `json:"kicks"`
	}
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
		// Its next connect is refused.
		if out, err := c.publish(devs[id], id, "fleets/default/devices/"+id+"/telemetry/t", "after-"+reason); err == nil {
			t.Errorf("%s connected and published after the %s:\n%s", id, reason, out)
		}
		var st kickStatus
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
	var pending kickStatus
	g.api(t, "GET", "/api/v1/session-kicks?status=pending", nil, http.StatusOK, &pending)
	if len(pending.Kicks) != 2 || pending.Kicks[0].Broker != "webhook" || pending.Kicks[1].Broker != "webhook" {
		t.Errorf("pending kicks: %+v", pending)
	}
	logs.waitLine(t, `msg="session kick failed; retrying"`, "device=victim", "broker=webhook")
	if l := logs.String(); strings.Contains(l, kickPass) || strings.Contains(l, secret) {
		t.Error("a broker credential appeared in the serve log")
	}
	t.Logf("total %s", time.Since(begin).Round(time.Millisecond))
}
