//go:build linux

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// TestRabbitMQEndToEnd puts the real binary behind a real RabbitMQ 3.10
// (rabbitmq_mqtt + rabbitmq_auth_backend_http) with real MQTT clients:
// devices enroll with the CLI, connect with their Gatehouse certificates
// over TLS (ssl_cert_login: username = CN), and every connect, publish and
// subscribe is decided by Gatehouse's /hooks/rabbitmq endpoints, which
// RabbitMQ authenticates to with the hook secret as the basic-auth password
// in the auth_http URLs' userinfo.
func TestRabbitMQEndToEnd(t *testing.T) {
	begin := time.Now()
	pub, sub := requireRabbitMQ(t)

	g := newGatehouse(t)
	// The hook secret reaches Gatehouse as the basic-auth password: Erlang's
	// httpc turns the userinfo of the auth_http URLs into an Authorization
	// header (hex, so no ':' or '@' needs escaping).
	secret := randHex(t, 24)
	g.serve(t,
		"GATEHOUSE_HOOKS_RABBITMQ_CERT_LOGIN=true",
		"GATEHOUSE_HOOKS_SECRET="+secret,
		"GATEHOUSE_AUTHZ_DECISION_LOG_EVERY=1", // every decision is logged: the test reads the reasons
	)
	logs := g.logs

	// A profile whose certificates carry the command role, and tokens.
	g.api(t, "POST", "/api/v1/profiles", map[string]any{
		"name": "command", "key_types": []string{"P-256"}, "validity": "1h", "roles": []string{"command"}}, http.StatusCreated, nil)
	sensorTokens, ctlTokens := g.tokens(t, "default", 2), g.tokens(t, "command", 1)
	sensor1 := g.enroll(t, sensorTokens[0], "sensor-1")
	sensor2 := g.enroll(t, sensorTokens[1], "sensor-2")
	ctl1 := g.enroll(t, ctlTokens[0], "ctl-1")
	t.Logf("built, initialised, serving, 3 devices enrolled after %s", time.Since(begin).Round(time.Millisecond))

	// The hook endpoint refuses a caller without the secret, and learns of
	// the new devices within a sync interval.
	hooksURL := "http://" + g.hooksAddr + "/hooks/rabbitmq"
	if got := rmqHook(t, hooksURL+"/user", "", url.Values{"username": {"ctl-1"}}); got != "deny" {
		t.Fatalf("user hook without the secret answered %q, want deny", got)
	}
	for _, id := range []string{"sensor-1", "sensor-2", "ctl-1"} {
		waitHookAllows(t, g, secret, id)
	}

	// RabbitMQ verifies device certificates against the Gatehouse root and
	// intermediate, and presents a server certificate from a throwaway CA.
	chain := g.caChain(t)
	serverCA, srvCert, srvKey := rmqServerPKI(t, g.dir)
	authBase := "http://gatehouse:" + secret + "@" + g.hooksAddr + "/hooks/rabbitmq"
	b := testbroker.RabbitMQ(t, testbroker.RabbitConfig{
		CAFile: chain, CertFile: srvCert, KeyFile: srvKey,
		CertLogin: true, AuthHTTPBase: authBase, AuthHTTPMethod: "post",
		FastStop: true, // its data is thrown away; saves RabbitMQ's ~6 s graceful stop
	})
	t.Logf("rabbitmq up after %s (its start: %s)", time.Since(begin).Round(time.Millisecond), b.StartTime.Round(time.Millisecond))
	phase := time.Now()

	c := mqttCLI{version: mqttV311, pub: pub, sub: sub, port: b.MQTTTLSPort, cafile: serverCA}
	mg := rmqMgmt{t: t, base: b.MgmtURL(), user: b.MgmtUser, pass: b.MgmtPass}
	// Operator-side queues on amq.topic (where the MQTT plugin publishes):
	// the telemetry pipeline's view of sensor-1, and a watch on everything
	// addressed to sensor-2.
	mg.queue("e2e-telemetry", "fleets.default.devices.sensor-1.telemetry.#")
	mg.queue("e2e-sensor2", "fleets.default.devices.sensor-2.#")

	// 1. sensor-1 publishes its own telemetry; it is delivered.
	if out, err := c.publish(sensor1, sensor1.id, "fleets/default/devices/sensor-1/telemetry/temp", "21.5"); err != nil {
		t.Fatalf("sensor-1 publishing its telemetry: %v\n%s\n%s", err, out, b.LogTail(30))
	}
	msgs := mg.waitMessages("e2e-telemetry", 1, 10*time.Second)
	if msgs[0].RoutingKey != "fleets.default.devices.sensor-1.telemetry.temp" || msgs[0].Payload != "21.5" {
		t.Fatalf("telemetry delivered as %+v", msgs[0])
	}

	// 2. sensor-2 subscribes to its command topics; ctl-1 (command role)
	// sends it a command, which arrives.
	s2 := c.subscribe(t, sensor2, sensor2.id, "fleets/default/devices/sensor-2/cmd/#")
	c.publishUntilSeen(t, s2, ctl1, "fleets/default/devices/sensor-2/cmd/reboot", "reboot-1")

	// 3. sensor-1 may not write into sensor-2's telemetry: RabbitMQ closes
	// the connection and routes nothing.
	refusedPublish := func(topic, payload string) {
		t.Helper()
		start := time.Now()
		out, err := c.publish(sensor1, sensor1.id, topic, payload)
		if err == nil {
			t.Errorf("sensor-1 publishing to %s succeeded:\n%s", topic, out)
			return
		}
		t.Logf("sensor-1 → %s refused in %s: %v: %s", topic, time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(out))
		logs.waitLine(t, "msg=decision", "action=publish", "device=sensor-1", "topic="+topic, "allow=false")
	}
	refusedPublish("fleets/default/devices/sensor-2/telemetry/x", "forged-telemetry")

	// 4. A temperature sensor's certificate never sends commands.
	refusedPublish("fleets/default/devices/sensor-2/cmd/reboot", "forged-command")

	// 5. sensor-1 may not subscribe to everything. With -E mosquitto_sub
	// exits 0 as soon as its subscription is acknowledged, as it does for
	// sensor-1's own command topics; RabbitMQ answers a refused SUBSCRIBE
	// by closing the connection (no SUBACK), and mosquitto_sub reconnects,
	// is refused again, and gives up at -W.
	if out, err := c.run(15*time.Second, c.sub, c.args(sensor1, sensor1.id, "-t", "fleets/default/devices/sensor-1/cmd/#", "-q", "1", "-E", "-W", "10")...); err != nil {
		t.Fatalf("sensor-1 subscribing to its own commands: %v\n%s", err, out)
	}
	start := time.Now()
	out, err := c.run(15*time.Second, c.sub, c.args(sensor1, sensor1.id, "-t", "#", "-q", "1", "-E", "-W", "3")...)
	if err == nil {
		t.Errorf("sensor-1's subscription to # was acknowledged:\n%s", out)
	} else {
		t.Logf("sensor-1 subscribe # refused (gave up after %s): %v: %s", time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(out))
	}
	logs.waitLine(t, "msg=decision", "action=subscribe", "device=sensor-1", "topic=#", "allow=false")

	// 6. A certificate is bound to its client id: sensor-1's certificate
	// with client id sensor-2 is refused at CONNECT (CONNACK 5)...
	out, err = c.publish(sensor1, "sensor-2", "fleets/default/devices/sensor-2/telemetry/x", "spoofed-client-id")
	if err == nil {
		t.Errorf("sensor-1's certificate connected as client sensor-2:\n%s", out)
	} else {
		t.Logf("client id spoof refused: %v: %s", err, strings.TrimSpace(out))
	}
	logs.waitLine(t, "msg=decision", "action=connect", "device=sensor-1", "client_id=sensor-2", "allow=false",
		`reason="client id does not match the certificate"`)
	// ...and a CONNECT username overrides the certificate in RabbitMQ, so a
	// username with a password — even an empty one — is a password login,
	// which Gatehouse refuses (CONNACK 4): devices have no passwords.
	for _, pw := range []string{"", "guess"} {
		args := c.args(sensor1, "sensor-2", "-u", "sensor-2", "-P", pw, "-t", "fleets/default/devices/sensor-2/telemetry/x",
			"-m", "spoofed-username", "-q", "1")
		out, err := c.run(15*time.Second, c.pub, args...)
		if err == nil {
			t.Errorf("sensor-1's certificate logged in as username sensor-2 with password %q:\n%s", pw, out)
		} else {
			t.Logf("username spoof with password %q refused: %v: %s", pw, err, strings.TrimSpace(out))
		}
	}
	logs.waitLine(t, `msg="hook request denied on error"`, "dialect=rabbitmq", "identity=sensor-2",
		`err="malformed hook request: password logins are refused`)

	// A second command from ctl-1 arrives after all of the above: sensor-2's
	// subscription was live throughout, and nothing forged reached it.
	c.publishUntilSeen(t, s2, ctl1, "fleets/default/devices/sensor-2/cmd/reboot", "reboot-2")
	if o := s2.out.String(); strings.Contains(o, "forged") || strings.Contains(o, "spoof") {
		t.Errorf("sensor-2 received a refused message:\n%s", o)
	}
	// None of the refused connections took over sensor-2's session.
	if blog, err := os.ReadFile(b.LogPath); err != nil || strings.Contains(string(blog), "duplicate id 'sensor-2'") {
		t.Errorf("sensor-2's subscriber was disconnected by a refused client (%v):\n%s", err, b.LogTail(30))
	}
	// The operator's watch on fleets.default.devices.sensor-2.# holds both commands (at
	// least) and nothing else.
	for _, m := range append(mg.waitMessages("e2e-sensor2", 2, 10*time.Second), mg.drain("e2e-sensor2")...) {
		if !strings.HasPrefix(m.Payload, "reboot-") || m.RoutingKey != "fleets.default.devices.sensor-2.cmd.reboot" {
			t.Errorf("a refused publish was routed: %+v", m)
		}
	}
	t.Logf("MQTT checks took %s; total so far %s", time.Since(phase).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

	// The secret never appears in Gatehouse's log.
	if strings.Contains(logs.String(), secret) {
		t.Error("the hook secret appeared in the serve log")
	}
}

// rmqHook posts a RabbitMQ-style form to a hook and returns the answer.
func rmqHook(t *testing.T, u, secret string, form url.Values) string {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth("gatehouse", secret)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// requireRabbitMQ skips under -short; otherwise a missing RabbitMQ or
// mosquitto client fails the test (testbroker never skips). It returns
// mosquitto_pub and mosquitto_sub.
func requireRabbitMQ(t *testing.T) (pub, sub string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs RabbitMQ")
	}
	pub, sub = testbroker.RequireMosquittoClients(t)
	testbroker.RequireRabbitMQ(t)
	return pub, sub
}

// waitHookAllows waits until the RabbitMQ user hook allows a new device:
// the decision core learns of enrollments by polling.
func waitHookAllows(t *testing.T, g *gatehouse, secret, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rmqHook(t, "http://"+g.hooksAddr+"/hooks/rabbitmq/user", secret, url.Values{"username": {id}}) != "allow" {
		if time.Now().After(deadline) {
			t.Fatalf("the user hook does not allow %s 10s after its enrollment\n%s", id, g.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// randHex returns n random bytes in hex: a secret that needs no escaping
// in a URL's userinfo.
func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// rmqServerPKI writes a throwaway CA and a TLS server certificate for
// 127.0.0.1/localhost issued by it.
func rmqServerPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e broker CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "broker-ca.crt"), filepath.Join(dir, "broker.crt"), filepath.Join(dir, "broker.key")
	for f, blk := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(f, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// rmqSub is a running mosquitto_sub.
type rmqSub struct {
	out  *logBuffer
	done chan error
}

// rmqMgmt uses the RabbitMQ management API as the harness's administrator
// (internal user database): the operator's side of the broker.
type rmqMgmt struct {
	t                *testing.T
	base, user, pass string
}

type rmqMessage struct {
	RoutingKey string `json:"routing_key"`
	Payload    string `json:"payload"`
}

func (m rmqMgmt) call(method, path string, body any) []byte {
	m.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, m.base+path, bytes.NewReader(b))
	req.SetBasicAuth(m.user, m.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		m.t.Fatalf("management %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		m.t.Fatalf("management %s %s: %s\n%s", method, path, resp.Status, raw)
	}
	return raw
}

// queue declares a queue bound to amq.topic with the routing key pattern.
func (m rmqMgmt) queue(name, pattern string) {
	m.t.Helper()
	m.call("PUT", "/api/queues/%2F/"+name, map[string]any{"durable": false, "auto_delete": false})
	m.call("POST", "/api/bindings/%2F/e/amq.topic/q/"+name, map[string]any{"routing_key": pattern})
}

// drain takes every message from the queue.
func (m rmqMgmt) drain(name string) []rmqMessage {
	m.t.Helper()
	var msgs []rmqMessage
	raw := m.call("POST", "/api/queues/%2F/"+name+"/get",
		map[string]any{"count": 100, "ackmode": "ack_requeue_false", "encoding": "auto"})
	if err := json.Unmarshal(raw, &msgs); err != nil {
		m.t.Fatalf("queue %s: %v\n%s", name, err, raw)
	}
	return msgs
}

// waitMessages drains the queue until it has yielded n messages.
func (m rmqMgmt) waitMessages(name string, n int, timeout time.Duration) []rmqMessage {
	m.t.Helper()
	var got []rmqMessage
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		got = append(got, m.drain(name)...)
		if len(got) >= n {
			break
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("queue %s: %d messages after %s, want %d", name, len(got), timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return got
}
