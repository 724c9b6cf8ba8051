//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// fakeHooks is a protocol-level stand-in for Gatehouse's plugin endpoints
// (POST /hooks/v1/authorize, GET /hooks/v1/events, POST
// /hooks/v1/kicks/ack), per the protocol the plugin and Gatehouse share.
// It lets the plugin's cache, stream, staleness and kick handling be
// driven event by event against a real Mosquitto; the end-to-end test with
// the real Gatehouse is TestMosquittoPluginEndToEnd.
//
// Its rules: a device in allowed may connect with its own client id;
// it may publish and subscribe under dev/<id>/, and "ctl" may also
// publish to dev/<any>/cmd/....
type fakeHooks struct {
	secret string

	mu      sync.Mutex
	allowed map[string]bool
	asked   map[string]int // "action topic" → requests
	idents  map[string]string
	badIDs  []string // identities that differ from the client id

	events     chan string // SSE frames for the open stream
	drop       chan struct{}
	heartbeats atomic.Bool
	streams    atomic.Int32
	acks       chan map[string]any
}

func newFakeHooks(secret string, allowed ...string) *fakeHooks {
	f := &fakeHooks{secret: secret, allowed: map[string]bool{}, asked: map[string]int{}, idents: map[string]string{},
		events: make(chan string, 16), drop: make(chan struct{}, 1), acks: make(chan map[string]any, 16)}
	for _, a := range allowed {
		f.allowed[a] = true
	}
	f.heartbeats.Store(true)
	return f
}

func (f *fakeHooks) count(action, topic string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[action+" "+topic]
}

func (f *fakeHooks) setAllowed(id string, ok bool) {
	f.mu.Lock()
	f.allowed[id] = ok
	f.mu.Unlock()
}

func (f *fakeHooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Gatehouse-Hook-Secret") != f.secret {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case "/hooks/v1/authorize":
		var req struct {
			Action   string `json:"action"`
			ClientID string `json:"client_id"`
			Identity string `json:"identity"`
			CertDER  string `json:"certificate_der"`
			Topic    string `json:"topic"`
			QoS      int    `json:"qos"`
			Retain   bool   `json:"retain"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		allow := false
		f.mu.Lock()
		switch req.Action {
		case "connect":
			// The plugin sends the certificate as base64 DER with its CN
			// as the identity (Gatehouse's fingerprint lookup key).
			if der, err := base64.StdEncoding.DecodeString(req.CertDER); err == nil {
				if c, err := x509.ParseCertificate(der); err == nil {
					cn := c.Subject.CommonName
					allow = f.allowed[cn] && req.ClientID == cn && req.Identity == cn
				}
			}
		case "publish", "subscribe", "read":
			id := req.Identity
			if id != req.ClientID {
				f.badIDs = append(f.badIDs, id+"/"+req.ClientID)
			}
			own := strings.HasPrefix(req.Topic, "dev/"+id+"/")
			cmd := req.Action == "publish" && id == "ctl" && strings.HasPrefix(req.Topic, "dev/") &&
				strings.Contains(strings.TrimPrefix(req.Topic, "dev/"), "/cmd/")
			allow = f.allowed[id] && id == req.ClientID && (own || cmd)
			f.asked[req.Action+" "+req.Topic]++
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"allow":%t}`, allow)
	case "/hooks/v1/events":
		if r.URL.Query().Get("broker") != "mosquitto" {
			http.Error(w, "broker", http.StatusBadRequest)
			return
		}
		f.streams.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		fl := w.(http.Flusher)
		fmt.Fprint(w, "event: hello\ndata: {\"v\":1,\"broker\":\"mosquitto\",\"max_staleness_ms\":1500,\"heartbeat_ms\":200}\n\n")
		fl.Flush()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-f.drop:
				return
			case ev := <-f.events:
				fmt.Fprint(w, ev)
			case <-tick.C:
				if !f.heartbeats.Load() {
					continue
				}
				fmt.Fprintf(w, "event: heartbeat\ndata: {\"at_ms\":%d}\n\n", time.Now().UnixMilli())
			}
			fl.Flush()
		}
	case "/hooks/v1/kicks/ack":
		var ack map[string]any
		if err := json.NewDecoder(r.Body).Decode(&ack); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.acks <- ack
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// TestMosquittoPluginProtocol is a protocol-level test of the plugin in a
// real Mosquitto against fakeHooks: certificate-bound CONNECT, identity
// from the certificate whatever username the client sends, cached
// decisions dropped by device and reset events, the cache unused once the
// stream is quiet past max_staleness, reconnect after a dropped stream,
// and a kick event closing the device's session with an ack.
func TestMosquittoPluginProtocol(t *testing.T) { pluginProtocol(t) }

// TestMosquittoPluginValgrind runs the protocol test with Mosquitto under
// valgrind's memcheck, which must report no error and no leak from the
// plugin, through startup, every event kind, reconnects, kicks and the
// plugin's cleanup at shutdown. Opt-in (GATEHOUSE_TEST_VALGRIND=1): it
// takes about a minute.
func TestMosquittoPluginValgrind(t *testing.T) {
	if os.Getenv("GATEHOUSE_TEST_VALGRIND") == "" {
		t.Skip("set GATEHOUSE_TEST_VALGRIND=1 to run Mosquitto with the plugin under valgrind")
	}
	vg := testbroker.Require(t, "valgrind")
	mosq := testbroker.RequireMosquitto(t)
	bin, logs := t.TempDir(), t.TempDir()
	wrapper := "#!/bin/sh\nexec " + vg + " --leak-check=full --show-leak-kinds=definite,indirect --log-file=" + logs +
		"/memcheck.%p.log " + mosq + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "mosquitto"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// Registered first, so it runs after the broker's cleanup stopped it.
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(logs, "memcheck.*.log"))
		if len(files) == 0 {
			t.Fatal("valgrind wrote no log")
		}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if !strings.Contains(string(b), "ERROR SUMMARY: 0 errors") || !strings.Contains(string(b), "definitely lost: 0 bytes") ||
				!strings.Contains(string(b), "indirectly lost: 0 bytes") {
				t.Errorf("valgrind found errors or leaks:\n%s", b)
			} else {
				t.Logf("valgrind: no errors, no leaks (%s)", f)
			}
		}
	})
	pluginProtocol(t)
}

func pluginProtocol(t *testing.T) {
	pub, sub := testbroker.RequireMosquittoClients(t)
	mosquittoPlugin(t)
	dir := t.TempDir()
	secret := randHex(t, 16)
	secretFile := filepath.Join(dir, "hook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := newFakeHooks(secret, "dev-a", "ctl")
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)

	serverCA, srvCert, srvKey := rmqServerPKI(t, dir)
	ca := newTestCA(t, dir, "devices")
	devA, ctl, devB := ca.client(t, "dev-a"), ca.client(t, "ctl"), ca.client(t, "dev-b")
	b := startPluginBroker(t, pluginBroker{caFile: ca.file, certFile: srvCert, keyFile: srvKey, url: srv.URL, secretFile: secretFile})
	waitLog(t, b, "gatehouse: event stream connected", 1, 10*time.Second)
	waitLog(t, b, "gatehouse: event stream live", 1, 5*time.Second)
	if strings.Contains(b.LogTail(100000), secret) {
		t.Fatal("the hook secret appears in the broker log")
	}
	c := mqttCLI{pub: pub, sub: sub, port: b.Port, cafile: serverCA}

	// CONNECT: an unknown device and a client id that is not the
	// certificate's are refused.
	if out, err := c.publish(devB, "dev-b", "dev/dev-b/t", "x"); err == nil || !refused(out) {
		t.Fatalf("dev-b (not allowed) connected: %v %s", err, out)
	}
	if out, err := c.publish(ctl, "dev-a", "dev/dev-a/t", "x"); err == nil || !refused(out) {
		t.Fatalf("ctl's certificate with client id dev-a connected: %v %s", err, out)
	}

	// MQTT 5 enhanced authentication (an authentication method in
	// CONNECT) takes Mosquitto's extended-auth path, not the password
	// check: with no plugin handling it, it is refused, not let through.
	if out, err := c.publish(devB, "dev-b", "dev/dev-b/t", "x", "-D", "connect", "authentication-method", "gatehouse"); err == nil {
		t.Fatalf("dev-b (not allowed) connected with an authentication method: %s", out)
	} else {
		t.Logf("CONNECT with an authentication method: %v %s", err, strings.TrimSpace(out))
	}

	// dev-a subscribes claiming to be ctl by username: the identity sent to
	// Gatehouse is the certificate's CN all the same.
	s := c.subscribe(t, devA, "dev-a", "dev/dev-a/cmd/#", "-u", "ctl", "-P", "whatever")
	c.publishUntilSeen(t, s, ctl, "dev/dev-a/cmd/ping", "ping-1")
	fake.mu.Lock()
	bad := fake.badIDs
	fake.mu.Unlock()
	if len(bad) != 0 {
		t.Fatalf("decisions asked with an identity that is not the client's certificate: %q", bad)
	}

	// Cached while the stream is live: three publishes, one question.
	const topic = "dev/ctl/telemetry"
	publishOK := func() {
		t.Helper()
		if out, err := c.publish(ctl, "ctl", topic, "m"); err != nil || refused(out) {
			t.Fatalf("ctl publishing to its telemetry: %v %s\n%s", err, out, b.LogTail(20))
		}
	}
	for range 3 {
		publishOK()
	}
	if n := fake.count("publish", topic); n != 1 {
		t.Fatalf("3 publishes with a live stream asked Gatehouse %d times, want 1", n)
	}
	// A refused publish is refused (and cached) too.
	if out, _ := c.publish(ctl, "ctl", "dev/dev-a/telemetry", "m"); !refused(out) {
		t.Fatalf("ctl publishing to dev-a's telemetry was not refused: %s", out)
	}

	// A device event for another device keeps ctl's entries; one for ctl
	// drops them; a reset drops everything.
	for i, step := range []struct {
		event string
		want  int
	}{
		{`event: device` + "\n" + `data: {"device":"dev-a"}`, 1},
		{`event: device` + "\n" + `data: {"device":"ctl"}`, 2},
		{`event: unknown-future-event` + "\n" + `data: {}`, 2},
		{`event: reset` + "\n" + `data: {}`, 3},
		// Odd frames: a device event whose data line is past the line
		// limit is unreadable, so it drops everything; CRLF line ends
		// work; a comment, an unnamed event and an over-long event name
		// change nothing; a device id with an escaped NUL drops the id
		// before it (more than named, never less).
		{"event: device\ndata: {\"device\":\"" + strings.Repeat("x", 70000) + "\"}", 4},
		{"event: device\r\ndata: {\"device\":\"ctl\"}\r\n", 5},
		{": comment\ndata: {\"device\":\"ctl\"}", 5},
		{"event: device" + strings.Repeat("e", 200) + "\ndata: {\"device\":\"ctl\"}", 5},
		{"event: device\ndata: {\"device\":\"ctl\u0000x\"}", 6},
	} {
		fake.events <- step.event + "\n\n"
		time.Sleep(400 * time.Millisecond) // the broker's loop passes at least every 100 ms
		publishOK()
		if n := fake.count("publish", topic); n != step.want {
			t.Fatalf("step %d (%q): %d questions, want %d", i, step.event, n, step.want)
		}
	}

	// Heartbeats stop: past max_staleness (1.5 s) the cache is not used,
	// though other events still flow (a stale core passes on device and
	// kick events; only a heartbeat says it is fresh).
	fake.heartbeats.Store(false)
	stopOthers := make(chan struct{})
	othersDone := make(chan struct{})
	go func() {
		defer close(othersDone)
		for {
			select {
			case <-stopOthers:
				return
			case <-time.After(300 * time.Millisecond):
				fake.events <- "event: device\ndata: {\"device\":\"dev-a\"}\n\n"
			}
		}
	}()
	waitLog(t, b, "gatehouse: no event from Gatehouse within 1500 ms", 1, 5*time.Second)
	before := fake.count("publish", topic)
	publishOK()
	publishOK()
	close(stopOthers)
	<-othersDone
	if n := fake.count("publish", topic) - before; n != 2 {
		t.Fatalf("2 publishes with a stale stream asked %d times, want 2 (no cache)", n)
	}
	// The stream ends quiet after max staleness; the plugin reconnects and
	// the cache is used again.
	fake.heartbeats.Store(true)
	fake.drop <- struct{}{}
	waitLog(t, b, "gatehouse: event stream connected", 2, 10*time.Second)
	waitLog(t, b, "gatehouse: event stream live", 2, 5*time.Second)
	before = fake.count("publish", topic)
	publishOK()
	publishOK()
	if n := fake.count("publish", topic) - before; n != 1 {
		t.Fatalf("2 publishes after the stream came back asked %d times, want 1", n)
	}

	// Kick: dev-a loses access and its session is closed; the ack names
	// the kick.
	fake.setAllowed("dev-a", false)
	start := time.Now()
	fake.events <- "event: kick\ndata: {\"id\":\"k-1\",\"device\":\"dev-a\",\"reason\":\"device.revoke\"}\n\n"
	select {
	case ack := <-fake.acks:
		if ack["id"] != "k-1" || ack["broker"] != "mosquitto" || ack["ok"] != true || ack["sessions"] != float64(1) {
			t.Fatalf("kick ack %v", ack)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no kick ack within 5 s\n%s", b.LogTail(30))
	}
	acked := time.Since(start)
	waitLog(t, b, "gatehouse: kick k-1: device dev-a: session closed", 1, time.Second)
	if !s.exited(10 * time.Second) {
		t.Fatalf("dev-a's mosquitto_sub still runs after the kick:\n%s", s.out.String())
	}
	t.Logf("kick event → session closed and acked in %s", acked.Round(time.Millisecond))
	if acked > time.Second {
		t.Errorf("kick took %s, want < 1 s", acked)
	}
	// A kick for a device without a session is a success with 0 sessions.
	fake.events <- "event: kick\ndata: {\"id\":\"k-2\",\"device\":\"nobody\",\"reason\":\"device.suspend\"}\n\n"
	select {
	case ack := <-fake.acks:
		if ack["id"] != "k-2" || ack["ok"] != true || ack["sessions"] != float64(0) {
			t.Fatalf("kick ack %v", ack)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ack for a kick without a session")
	}

	// Gatehouse unreachable: every decision is denied, at once.
	srv.CloseClientConnections()
	srv.Close()
	start = time.Now()
	if out, err := c.publish(ctl, "ctl", topic, "m"); err == nil || !refused(out) {
		t.Fatalf("ctl connected with Gatehouse down: %v %s", err, out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a CONNECT with Gatehouse down took %s", d)
	}
	waitLog(t, b, "gatehouse: cannot reach Gatehouse", 1, time.Second)
}

// TestMosquittoPluginRefusesToLoad: without a Gatehouse URL or a hook
// secret the plugin refuses to load, and Mosquitto does not start, with a
// log line naming the missing option (and never the secret).
func TestMosquittoPluginRefusesToLoad(t *testing.T) {
	so := mosquittoPlugin(t)
	mosq := testbroker.RequireMosquitto(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, opts, want string
	}{
		{"no url", "plugin_opt_secret 0123456789abcdef-secret\n", "plugin_opt_url (Gatehouse hooks base URL, http:// or https://) is required"},
		{"no secret", "plugin_opt_url http://127.0.0.1:1\n", "plugin_opt_secret or plugin_opt_secret_file (the hook secret) is required"},
		{"unreadable secret file", "plugin_opt_url http://127.0.0.1:1\nplugin_opt_secret_file " + filepath.Join(dir, "missing") + "\n",
			"cannot read plugin_opt_secret_file"},
		{"bad timeout", "plugin_opt_url http://127.0.0.1:1\nplugin_opt_secret 0123456789abcdef-secret\nplugin_opt_timeout_ms 0\n",
			"plugin_opt_timeout_ms 0: want 50..60000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "mosquitto.conf")
			body := fmt.Sprintf("log_dest stderr\nlog_type all\nlistener %s 127.0.0.1\nallow_anonymous false\nplugin %s\n%s",
				strings.TrimPrefix(freeAddr(t), "127.0.0.1:"), so, tc.opts)
			if os.Geteuid() == 0 {
				body += "user root\n"
			}
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, mosq, "-c", conf).CombinedOutput()
			if ctx.Err() != nil || err == nil {
				t.Fatalf("mosquitto started (or did not exit) with %s: %v\n%s", tc.name, err, out)
			}
			if !strings.Contains(string(out), "gatehouse: "+tc.want) {
				t.Fatalf("mosquitto's output lacks %q:\n%s", tc.want, out)
			}
			if strings.Contains(string(out), "0123456789abcdef-secret") {
				t.Fatalf("the secret was logged:\n%s", out)
			}
		})
	}
}

// TestMosquittoPluginTLS: the plugin reaches Gatehouse's hooks over mutual
// TLS (plugin_opt_cafile, plugin_opt_certfile, plugin_opt_keyfile), and a
// hooks certificate it does not trust means no answer: CONNECT refused.
func TestMosquittoPluginTLS(t *testing.T) {
	pub, sub := testbroker.RequireMosquittoClients(t)
	mosquittoPlugin(t)
	dir := t.TempDir()
	secret := randHex(t, 16)
	secretFile := filepath.Join(dir, "hook-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	devCA, brokerCA := newTestCA(t, dir, "devices"), newTestCA(t, dir, "brokers")
	devA := devCA.client(t, "dev-a")
	pluginCert := brokerCA.client(t, "mosquitto-1")

	fake := newFakeHooks(secret, "dev-a")
	srv := httptest.NewUnstartedServer(fake)
	pool := x509.NewCertPool()
	pool.AddCert(brokerCA.cert)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hooksCA := filepath.Join(dir, "hooks-ca.pem")
	if err := os.WriteFile(hooksCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	serverCA, srvCert, srvKey := rmqServerPKI(t, dir)
	for _, tc := range []struct {
		name   string
		cafile string
		ok     bool
	}{
		{"trusted", hooksCA, true},
		{"untrusted hooks certificate", devCA.file, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startPluginBroker(t, pluginBroker{caFile: devCA.file, certFile: srvCert, keyFile: srvKey, url: srv.URL, secretFile: secretFile,
				extra: []string{"plugin_opt_cafile " + tc.cafile, "plugin_opt_certfile " + pluginCert.cert, "plugin_opt_keyfile " + pluginCert.key}})
			c := mqttCLI{pub: pub, sub: sub, port: b.Port, cafile: serverCA}
			out, err := c.publish(devA, "dev-a", "dev/dev-a/telemetry", "x")
			if tc.ok {
				if err != nil || refused(out) {
					t.Fatalf("dev-a refused with Gatehouse over mutual TLS: %v %s", err, out)
				}
				waitLog(t, b, "gatehouse: event stream connected", 1, 10*time.Second)
				return
			}
			if err == nil || !refused(out) {
				t.Fatalf("dev-a connected though the plugin cannot trust Gatehouse: %v %s", err, out)
			}
			waitLog(t, b, "gatehouse: cannot reach Gatehouse", 1, 5*time.Second)
		})
	}
}

// TestMosquittoPluginWrongSecret: Gatehouse answers 403 to a wrong hook
// secret; every CONNECT is refused, and the broker log says so once, not
// once per client.
func TestMosquittoPluginWrongSecret(t *testing.T) {
	pub, sub := testbroker.RequireMosquittoClients(t)
	mosquittoPlugin(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "hook-secret")
	if err := os.WriteFile(secretFile, []byte("not-the-secret-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newFakeHooks(randHex(t, 16), "dev-a"))
	t.Cleanup(srv.Close)
	devCA := newTestCA(t, dir, "devices")
	devA := devCA.client(t, "dev-a")
	serverCA, srvCert, srvKey := rmqServerPKI(t, dir)
	b := startPluginBroker(t, pluginBroker{caFile: devCA.file, certFile: srvCert, keyFile: srvKey, url: srv.URL, secretFile: secretFile})
	c := mqttCLI{pub: pub, sub: sub, port: b.Port, cafile: serverCA}
	for range 3 {
		if out, err := c.publish(devA, "dev-a", "dev/dev-a/telemetry", "x"); err == nil || !refused(out) {
			t.Fatalf("dev-a connected with a wrong hook secret: %v %s", err, out)
		}
	}
	const line = "gatehouse: authorize answered HTTP 403 (is plugin_opt_secret Gatehouse's hook secret?)"
	waitLog(t, b, line, 1, 5*time.Second)
	if n := strings.Count(b.LogTail(100000), line); n != 1 {
		t.Errorf("the 403 was logged %d times for 3 clients, want once", n)
	}
	waitLog(t, b, "gatehouse: event stream cannot connect", 1, 5*time.Second)
}
