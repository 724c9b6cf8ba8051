//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// backendGrant lets device app-1 read its fleet's telemetry: the
// subscriber that shows a device's telemetry is delivered.
const backendGrant = `
# e2e: app-1 is a backend that reads its fleet's telemetry.
grants contains {"action": "subscribe", "filter": concat("/", ["fleets", input.device.fleet, "devices", "+", "telemetry", "#"]), "rule": "backend-telemetry"} if {
	input.device.id == "app-1"
}
`

// TestMosquittoPluginEndToEnd runs Debian's Mosquitto 2.0 with the
// gatehouse-mosquitto plugin and the README's mosquitto.conf against the
// real Gatehouse, with mosquitto_pub/_sub and enrolled devices'
// certificates: topic isolation, roles, certificate-bound CONNECT (client
// id spoof refused with the real session untouched; revoked, suspended,
// unknown, foreign-CA and superseded certificates refused with no CRL),
// and fail-closed while Gatehouse is down, recovered after its restart.
func TestMosquittoPluginEndToEnd(t *testing.T) {
	pub, sub := testbroker.RequireMosquittoClients(t)
	mosquittoPlugin(t)
	begin := time.Now()

	g := newGatehouse(t)
	serveEnv := []string{"GATEHOUSE_AUTHZ_MAX_STALENESS=5s", "GATEHOUSE_KICK_MOSQUITTO_ENABLED=true"}
	g.serve(t, serveEnv...)
	secretFile := filepath.Join(g.dir, "gatehouse-hook-secret")
	if err := os.WriteFile(secretFile, []byte(g.hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Policy v2: the default plus a backend that reads telemetry.
	var v1 struct {
		Policy string `json:"policy"`
		Tests  string `json:"tests"`
	}
	g.api(t, "GET", "/api/v1/policies/1", nil, http.StatusOK, &v1)
	var v2 struct {
		Version int64 `json:"version"`
	}
	g.api(t, "POST", "/api/v1/policies", map[string]any{"policy": v1.Policy + backendGrant, "tests": v1.Tests, "comment": "e2e backend"},
		http.StatusCreated, &v2)
	g.api(t, "POST", fmt.Sprintf("/api/v1/policies/%d/activate", v2.Version), nil, http.StatusOK, nil)
	for name, body := range map[string]map[string]any{
		"command": {"roles": []string{"command"}},
		"short":   {"renew_window": "2h"},
	} {
		body["name"], body["key_types"], body["validity"] = name, []string{"P-256"}, "2h"
		g.api(t, "POST", "/api/v1/profiles", body, http.StatusCreated, nil)
	}
	devs := map[string]testDevice{}
	for id, profile := range map[string]string{"sensor-1": "default", "sensor-2": "default", "ctl-1": "command", "app-1": "default",
		"revoked-1": "default", "suspended-1": "default", "renewed-1": "short"} {
		devs[id] = g.enroll(t, g.tokens(t, profile, 1)[0], id)
	}
	g.api(t, "POST", "/api/v1/devices/revoked-1/revoke", map[string]any{"reason": "keyCompromise"}, http.StatusOK, nil)
	g.api(t, "POST", "/api/v1/devices/suspended-1/suspend", map[string]any{}, http.StatusOK, nil)
	// renewed-1's first certificate is superseded by a renewal.
	superseded := testDevice{id: "renewed-1", dir: filepath.Join(g.dir, "renewed-1-old")}
	superseded.cert, superseded.key = filepath.Join(superseded.dir, "device.crt"), filepath.Join(superseded.dir, "device.key")
	concatFiles(t, mkdirFile(t, superseded.cert), devs["renewed-1"].cert)
	concatFiles(t, superseded.key, devs["renewed-1"].key)
	if r := g.run(t, nil, "renew", "--server", g.server, "--dir", devs["renewed-1"].dir, "--json"); r.code != 0 {
		t.Fatalf("renew: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Certificates from a CA the broker trusts but Gatehouse does not:
	// one with a real device's CN, one naming no device.
	foreign := newTestCA(t, g.dir, "foreign")
	forged, ghost := foreign.client(t, "sensor-1"), foreign.client(t, "ghost")

	serverCA, srvCert, srvKey := rmqServerPKI(t, g.dir)
	b := startPluginBroker(t, pluginBroker{caFile: concatFiles(t, filepath.Join(g.dir, "broker-ca.pem"), g.caChain(t), foreign.file),
		certFile: srvCert, keyFile: srvKey, url: "http://" + g.hooksAddr, secretFile: secretFile})
	c := mqttCLI{pub: pub, sub: sub, port: b.Port, cafile: serverCA}
	own := func(id, sub string) string { return "fleets/default/devices/" + id + "/" + sub }

	// Gatehouse's view of the new devices and policy settles within its
	// sync interval.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := c.publish(devs["sensor-1"], "sensor-1", own("sensor-1", "telemetry/boot"), "up")
		if err == nil && !refused(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sensor-1 cannot publish its telemetry 15 s after enrolling: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("gatehouse, broker and 7 devices ready after %s", time.Since(begin).Round(time.Millisecond))

	// Own telemetry is delivered (to the backend); another device's topic
	// is refused and never delivered.
	app := c.subscribe(t, devs["app-1"], "app-1", "fleets/default/devices/+/telemetry/#")
	c.publishUntilSeen(t, app, devs["sensor-1"], own("sensor-1", "telemetry/temp"), "21.5")
	if out, err := c.publish(devs["sensor-1"], "sensor-1", own("sensor-2", "telemetry/temp"), "forged-reading"); !refused(out) {
		t.Errorf("sensor-1 publishing to sensor-2's telemetry was not refused: %v %s", err, out)
	}

	// Subscriptions: everything, every device's commands, another device's
	// commands are refused.
	for _, filter := range []string{"#", "fleets/default/devices/+/cmd/#", own("sensor-2", "cmd/#")} {
		if out, err := subscribeOnce(c, devs["sensor-1"], "sensor-1", filter); !refused(out) {
			t.Errorf("sensor-1 subscribing to %s was not refused: %v %s", filter, err, out)
		}
	}

	// Own commands: the controller's are delivered, a sensor's refused.
	s1 := c.subscribe(t, devs["sensor-1"], "sensor-1", own("sensor-1", "cmd/#"))
	c.publishUntilSeen(t, s1, devs["ctl-1"], own("sensor-1", "cmd/reboot"), "from-ctl")
	if out, err := c.publish(devs["sensor-2"], "sensor-2", own("sensor-1", "cmd/reboot"), "from-sensor"); !refused(out) {
		t.Errorf("sensor-2 commanding sensor-1 was not refused: %v %s", err, out)
	}

	// Client id spoof: sensor-2's certificate with client id sensor-1 is
	// refused at CONNECT, before Mosquitto would take over sensor-1's
	// session, which stays up and keeps receiving.
	sessions := func() int { return strings.Count(b.LogTail(100000), " as sensor-1 (") }
	before := sessions()
	if out, err := c.publish(devs["sensor-2"], "sensor-1", own("sensor-1", "telemetry/temp"), "spoof"); err == nil ||
		!strings.Contains(out, "Connection error: Not authorized") {
		t.Fatalf("sensor-2's certificate with client id sensor-1: %v %s", err, out)
	}
	c.publishUntilSeen(t, s1, devs["ctl-1"], own("sensor-1", "cmd/ping"), "after-spoof")
	if s1.exited(0) || sessions() != before || strings.Contains(b.LogTail(100000), "already connected, closing old connection") {
		t.Fatalf("sensor-1's session was disturbed by the spoof (sessions %d → %d):\n%s", before, sessions(), b.LogTail(30))
	}
	if strings.Contains(s1.out.String(), "from-sensor") || strings.Contains(app.out.String(), "forged-reading") {
		t.Errorf("a refused publish was delivered:\n%s\n%s", s1.out.String(), app.out.String())
	}

	// Refused at CONNECT, with no CRL configured.
	for name, d := range map[string]testDevice{"revoked": devs["revoked-1"], "suspended": devs["suspended-1"],
		"unknown": ghost, "foreign CA, real CN": forged, "superseded": superseded} {
		out, err := c.publish(d, d.id, own(d.id, "telemetry/t"), "x")
		if err == nil || !strings.Contains(out, "Connection error: Not authorized") {
			t.Errorf("%s certificate (%s) not refused at CONNECT: %v %s", name, d.id, err, out)
		}
	}
	if out, err := c.publish(devs["renewed-1"], "renewed-1", own("renewed-1", "telemetry/t"), "x"); err != nil || refused(out) {
		t.Errorf("renewed-1's current certificate refused: %v %s", err, out)
	}

	if kickable(t, g) {
		revokeKicks(t, g, b, c, devs)
	} else {
		t.Log("GET /hooks/v1/events is not served by this Gatehouse (server side of the plugin protocol not merged): " +
			"revoke → kick not tested end to end here (TestMosquittoPluginProtocol covers the plugin's side)")
	}

	// Gatehouse down: a connected client's publishes are refused, and so
	// is a new CONNECT, at once.
	ctlPub := startLinePublisher(t, c, devs["ctl-1"], "ctl-1", own("ctl-1", "telemetry/stream"))
	ctlPub.send(t, "before-stop")
	waitFor(t, 10*time.Second, "ctl-1's line publisher delivered", func() bool {
		return strings.Contains(app.out.String(), own("ctl-1", "telemetry/stream")+" before-stop")
	})
	g.stop()
	start := time.Now()
	if out, err := c.publish(devs["sensor-1"], "sensor-1x", own("sensor-1", "telemetry/t"), "x"); err == nil || !refused(out) {
		t.Errorf("a CONNECT with Gatehouse stopped was not refused: %v %s", err, out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a CONNECT with Gatehouse stopped took %s to be refused", d)
	}
	ctlPub.send(t, "after-stop")
	waitFor(t, 6*time.Second, "the publish after the stop refused", func() bool { return refused(ctlPub.out.String()) })
	waitLog(t, b, "gatehouse: cannot reach Gatehouse at http://"+g.hooksAddr, 1, 5*time.Second)
	if strings.Contains(app.out.String(), "after-stop") {
		t.Errorf("a publish was delivered while Gatehouse was stopped:\n%s", app.out.String())
	}

	// Restarted: allowed again (renewed-1 has no session to disturb;
	// sensor-2 may have been revoked above).
	g.serve(t, serveEnv...)
	deadline = time.Now().Add(15 * time.Second)
	for {
		out, err := c.publish(devs["renewed-1"], "renewed-1", own("renewed-1", "telemetry/t"), "back")
		if err == nil && !refused(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewed-1 still refused 15 s after Gatehouse restarted: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitLog(t, b, "gatehouse: Gatehouse at http://"+g.hooksAddr+" answers again", 1, 5*time.Second)
	if strings.Contains(b.LogTail(100000), g.hookSecret) {
		t.Error("the hook secret appears in the broker log")
	}
}

func mkdirFile(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subscribeOnce subscribes and returns what mosquitto_sub printed: a
// refused subscription ends it at once ("All subscription requests were
// denied."), a granted one after 2 s ("Timed out").
func subscribeOnce(c mqttCLI, d testDevice, clientID, filter string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.sub, c.args(d, clientID, "-t", filter, "-q", "1", "-W", "2", "-C", "1")...).CombinedOutput()
	return string(out), err
}

// linePublisher is mosquitto_pub -l: one connection, one message per line.
type linePublisher struct {
	in  io.WriteCloser
	out *logBuffer
}

func startLinePublisher(t *testing.T, c mqttCLI, d testDevice, clientID, topic string) *linePublisher {
	t.Helper()
	cmd := exec.Command(c.pub, c.args(d, clientID, "-t", topic, "-q", "1", "-l")...)
	p := &linePublisher{out: &logBuffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return p
}

func (p *linePublisher) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		t.Fatalf("mosquitto_pub -l: %v\n%s", err, p.out.String())
	}
}

// kickable reports whether this Gatehouse serves the plugin's event stream.
func kickable(t *testing.T, g *gatehouse) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+g.hooksAddr+"/hooks/v1/events?broker=mosquitto", nil)
	req.Header.Set("X-Gatehouse-Hook-Secret", g.hookSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// revokeKicks revokes a connected, subscribed device: its session is gone
// within 1 s of the call and its reconnect is refused; the kick shows
// under broker mosquitto in the device's sessions.
func revokeKicks(t *testing.T, g *gatehouse, b *testbroker.Broker, c mqttCLI, devs map[string]testDevice) {
	t.Helper()
	topic := "fleets/default/devices/sensor-2/cmd/#"
	s2 := c.subscribe(t, devs["sensor-2"], "sensor-2", topic)
	c.publishUntilSeen(t, s2, devs["ctl-1"], "fleets/default/devices/sensor-2/cmd/ping", "before-revoke")
	start := time.Now()
	g.api(t, "POST", "/api/v1/devices/sensor-2/revoke", map[string]any{"reason": "keyCompromise"}, http.StatusOK, nil)
	waitFor(t, 2*time.Second, "sensor-2's session kicked", func() bool {
		return strings.Contains(b.LogTail(100000), "device sensor-2: session closed")
	})
	gone := time.Since(start)
	t.Logf("revoke call → sensor-2's session closed in the broker: %s", gone.Round(time.Millisecond))
	if gone > time.Second {
		t.Errorf("sensor-2's session closed %s after the revoke call, want < 1 s", gone)
	}
	if !s2.exited(15 * time.Second) {
		t.Errorf("sensor-2's mosquitto_sub still runs (its reconnect was not refused):\n%s", s2.out.String())
	}
	var st struct {
		Kicks []struct {
			Broker string `json:"broker"`
			Status string `json:"status"`
		} `json:"kicks"`
	}
	waitFor(t, 5*time.Second, "the mosquitto kick done in the device's sessions", func() bool {
		g.api(t, "GET", "/api/v1/devices/sensor-2/sessions", nil, http.StatusOK, &st)
		for _, k := range st.Kicks {
			if k.Broker == "mosquitto" && k.Status == "done" {
				return true
			}
		}
		return false
	})
}
