package testbroker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testlog"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// ---------------------------------------------------------------------------
// Throwaway PKI

type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
	Server certFiles
	Dev    map[string]certFiles // dev1, dev2
	serial int64
}

type certFiles struct {
	Cert     *x509.Certificate
	CertFile string
	KeyFile  string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), Dev: map[string]certFiles{}, serial: 1}
	key := mustKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(p.next()),
		Subject:               pkix.Name{CommonName: "Gatehouse Test CA " + strconv.FormatInt(now.UnixNano(), 36)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", der)

	p.Server = p.issue(t, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	for _, cn := range []string{"dev1", "dev2"} {
		p.Dev[cn] = p.issue(t, cn, &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
	}
	return p
}

func (p *testPKI) next() int64 { p.serial++; return p.serial }

func (p *testPKI) issue(t *testing.T, name string, tmpl *x509.Certificate) certFiles {
	t.Helper()
	key := mustKey(t)
	tmpl.SerialNumber = big.NewInt(p.next())
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	f := certFiles{Cert: cert, CertFile: filepath.Join(p.dir, name+".crt"), KeyFile: filepath.Join(p.dir, name+".key")}
	writePEM(t, f.CertFile, "CERTIFICATE", der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, f.KeyFile, "PRIVATE KEY", kder)
	return f
}

// crl returns a PEM CRL revoking the given certificates.
func (p *testPKI) crl(t *testing.T, number int64, revoked ...*x509.Certificate) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, p.ca, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub

type mqttClient struct {
	pub, sub string
	host     string
	port     int
	cafile   string
	extra    []string // e.g. -V mqttv311
}

func (c mqttClient) tlsArgs(dev certFiles, clientID string) []string {
	args := []string{"-h", c.host, "-p", strconv.Itoa(c.port), "--cafile", c.cafile,
		"--cert", dev.CertFile, "--key", dev.KeyFile, "-i", clientID}
	return append(args, c.extra...)
}

// publish runs mosquitto_pub at QoS 1 (so it waits for the PUBACK) and
// returns its combined output and error.
func (c mqttClient) publish(dev certFiles, clientID, topic, msg string) (string, error) {
	args := append(c.tlsArgs(dev, clientID), "-t", topic, "-m", msg, "-q", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.pub, args...).CombinedOutput()
	return string(out), err
}

// subscription is a running mosquitto_sub waiting for one message.
type subscription struct {
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan error
}

func (c mqttClient) subscribe(t *testing.T, dev certFiles, clientID, topic string) *subscription {
	t.Helper()
	args := append(c.tlsArgs(dev, clientID), "-t", topic, "-q", "1", "-C", "1", "-W", "20", "-v")
	s := &subscription{out: &testlog.Buffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(c.sub, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// publishUntilDelivered publishes msg every 300 ms until sub has printed it
// (the subscriber may not have subscribed yet when the first one goes out).
func (c mqttClient) publishUntilDelivered(t *testing.T, sub *subscription, dev certFiles, clientID, topic, msg string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		if out, err := c.publish(dev, fmt.Sprintf("%s-%d", clientID, i), topic, msg); err != nil {
			t.Fatalf("mosquitto_pub as %s: %v\n%s", dev.Cert.Subject.CommonName, err, out)
		}
		select {
		case err := <-sub.done:
			sub.done <- err
			if want := topic + " " + msg; !strings.Contains(sub.out.String(), want) {
				t.Fatalf("mosquitto_sub exited (%v) without %q:\n%s", err, want, sub.out.String())
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %q on %q not delivered; subscriber output:\n%s", msg, topic, sub.out.String())
		}
	}
}

// tlsAlert completes a TLS handshake as dev and waits briefly for the
// server's verdict on the client certificate (with TLS 1.3 the server checks
// it after the client considers the handshake done). It returns the alert,
// or nil when the server kept the connection open.
func tlsAlert(addr string, pki *testPKI, dev certFiles) error {
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	cert, err := tls.LoadX509KeyPair(dev.CertFile, dev.KeyFile)
	if err != nil {
		return err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil // no alert: accepted (the broker waits for CONNECT)
	}
	return err
}

// ---------------------------------------------------------------------------
// Process checks

// assertGone fails unless pid and every process in its group are gone.
func assertGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ps", "-eo", "pid=,pgid=,args=").Output()
		var left []string
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) >= 3 && (f[0] == strconv.Itoa(pid) || f[1] == strconv.Itoa(pid)) {
				left = append(left, strings.TrimSpace(l))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s (pid %d) left processes behind:\n%s", what, pid, strings.Join(left, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Tests

func TestRequire(t *testing.T) {
	for _, bin := range []string{"mosquitto", "mosquitto_pub", "mosquitto_sub", "rabbitmq-server", "rabbitmqctl", "epmd"} {
		if p := testbroker.Require(t, bin); p == "" {
			t.Errorf("Require(%q) returned an empty path", bin)
		}
	}
	if p := testbroker.Require(t, "rabbitmqctl"); p != "/usr/lib/rabbitmq/bin/rabbitmqctl" {
		t.Errorf("rabbitmqctl resolved to %s; want the unwrapped /usr/lib/rabbitmq/bin script", p)
	}
}

func TestMosquittoTLSAndCRL(t *testing.T) {
	t.Parallel()
	pub, sub := testbroker.RequireMosquittoClients(t)
	pki := newPKI(t)
	crlFile := filepath.Join(t.TempDir(), "crl.pem")
	testbroker.WriteFileAtomic(t, crlFile, pki.crl(t, 1)) // empty CRL: mosquitto needs one at start

	b := testbroker.Mosquitto(t, testbroker.MosquittoConfig{
		CAFile:                pki.CAFile,
		CertFile:              pki.Server.CertFile,
		KeyFile:               pki.Server.KeyFile,
		RequireCertificate:    true,
		UseIdentityAsUsername: true,
		CRLFile:               crlFile,
		PlainListener:         true,
	})
	t.Logf("mosquitto started in %s", b.StartTime)
	if b.Port == 0 || b.PlainPort == 0 || b.PID == 0 || b.Host != "127.0.0.1" {
		t.Fatalf("broker fields: %+v", b)
	}
	c := mqttClient{pub: pub, sub: sub, host: b.Host, port: b.Port, cafile: pki.CAFile}
	dev1, dev2 := pki.Dev["dev1"], pki.Dev["dev2"]

	// Before revocation: dev2 publishes, dev1 receives.
	s := c.subscribe(t, dev1, "sub-dev1-a", "devices/dev1/cmd")
	c.publishUntilDelivered(t, s, dev2, "pub-dev2", "devices/dev1/cmd", "hello-from-dev2")
	logData, _ := os.ReadFile(b.LogPath)
	for _, u := range []string{"u'dev1'", "u'dev2'"} {
		if !strings.Contains(string(logData), u) {
			t.Errorf("log has no client with %s (use_identity_as_username):\n%s", u, b.LogTail(30))
		}
	}

	// A client without a certificate is refused at the handshake.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out, err := exec.CommandContext(ctx, pub, "-h", b.Host, "-p", strconv.Itoa(b.Port), "--cafile", pki.CAFile,
		"-t", "x", "-m", "x", "-q", "1").CombinedOutput()
	cancel()
	if err == nil {
		t.Errorf("publish without a client certificate succeeded:\n%s", out)
	}

	if err := tlsAlert(b.Addr(), pki, dev2); err != nil {
		t.Fatalf("TLS handshake as dev2 before the revocation: %v", err)
	}

	// Revoke dev2 and reload.
	testbroker.WriteFileAtomic(t, crlFile, pki.crl(t, 2, dev2.Cert))
	b.Reload()

	out2, err := c.publish(dev2, "pub-dev2-revoked", "devices/dev1/cmd", "must-not-arrive")
	if err == nil {
		t.Fatalf("revoked dev2 could still publish:\n%s\n%s", out2, b.LogTail(20))
	}
	t.Logf("revoked dev2: mosquitto_pub: %v: %s", err, strings.TrimSpace(out2))
	// The refusal is the revocation: the TLS alert says so.
	if err := tlsAlert(b.Addr(), pki, dev2); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("TLS handshake as revoked dev2: %v, want a revoked-certificate alert", err)
	}
	if err := tlsAlert(b.Addr(), pki, dev1); err != nil {
		t.Errorf("TLS handshake as dev1 after the revocation of dev2: %v", err)
	}

	// dev1 still works, as publisher and subscriber.
	s2 := c.subscribe(t, dev1, "sub-dev1-b", "devices/dev1/cmd")
	c.publishUntilDelivered(t, s2, dev1, "pub-dev1", "devices/dev1/cmd", "still-works")
	if strings.Contains(s2.out.String(), "must-not-arrive") {
		t.Errorf("message from revoked client delivered: %s", s2.out.String())
	}

	// The plain listener is up too (anonymous is off, so the CONNECT is
	// refused, but the TCP listener answers).
	if conn, err := net.DialTimeout("tcp", b.PlainAddr(), 2*time.Second); err != nil {
		t.Errorf("plain listener: %v", err)
	} else {
		conn.Close()
	}

	pid := b.PID
	b.Stop()
	if b.Running() {
		t.Fatal("mosquitto still running after Stop")
	}
	assertGone(t, "mosquitto", pid)
}

func TestMosquittoStartFailureIsReported(t *testing.T) {
	t.Parallel()
	// A bad option must fail the helper with the log tail; run the helper
	// against a fake testing.TB to observe the Fatalf.
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testbroker.Mosquitto(ft, testbroker.MosquittoConfig{PlainListener: true, ExtraConfig: "no_such_option 1"})
	}()
	<-done
	ft.cleanup()
	if !ft.failed.Load() {
		t.Fatal("Mosquitto with a bad config did not fail")
	}
	if msg := ft.msg(); !strings.Contains(msg, "no_such_option") && !strings.Contains(msg, "Unknown configuration") {
		t.Errorf("failure message lacks the log tail:\n%s", msg)
	}
}

func TestRabbitMQStartFailureIsReported(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testbroker.RabbitMQ(ft, testbroker.RabbitConfig{ExtraConfig: "no_such.key = 1"})
	}()
	<-done
	ft.cleanup()
	if !ft.failed.Load() {
		t.Fatal("RabbitMQ with a bad config did not fail")
	}
	if msg := ft.msg(); !strings.Contains(msg, "unknown variable: no_such.key") {
		t.Errorf("failure message lacks the cause:\n%s", msg)
	}
}

// fakeTB records Fatalf and runs Goexit like testing.T; cleanups are run
// by cleanup().
type fakeTB struct {
	testing.TB
	failed   atomic.Bool
	mu       sync.Mutex
	msgs     []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	f.failed.Store(true)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	f.failed.Store(true)
}
func (f *fakeTB) Cleanup(fn func()) { f.mu.Lock(); f.cleanups = append(f.cleanups, fn); f.mu.Unlock() }
func (f *fakeTB) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}
func (f *fakeTB) msg() string { f.mu.Lock(); defer f.mu.Unlock(); return strings.Join(f.msgs, "\n") }

// authHook is a fake RabbitMQ HTTP auth backend.
type authHook struct {
	mu        sync.Mutex
	reqs      []hookReq
	denyWrite atomic.Bool // answer "deny" to topic write checks
}

type hookReq struct {
	Path   string
	Method string
	Form   url.Values
	Answer string
}

func (h *authHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	answer := "allow"
	if r.URL.Path == "/topic" && r.Form.Get("permission") == "write" && h.denyWrite.Load() {
		answer = "deny"
	}
	h.mu.Lock()
	h.reqs = append(h.reqs, hookReq{Path: r.URL.Path, Method: r.Method, Form: r.Form, Answer: answer})
	h.mu.Unlock()
	fmt.Fprint(w, answer)
}

func (h *authHook) find(path string, match func(url.Values) bool) (hookReq, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.reqs {
		if r.Path == path && match(r.Form) {
			return r, true
		}
	}
	return hookReq{}, false
}

func (h *authHook) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var sb strings.Builder
	for _, r := range h.reqs {
		fmt.Fprintf(&sb, "%s %s %s -> %s\n", r.Method, r.Path, r.Form.Encode(), r.Answer)
	}
	return sb.String()
}

func TestRabbitMQMQTTWithHTTPAuth(t *testing.T) {
	t.Parallel()
	pub, sub := testbroker.RequireMosquittoClients(t)
	pki := newPKI(t)
	hook := &authHook{}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)

	b := testbroker.RabbitMQ(t, testbroker.RabbitConfig{
		CAFile:         pki.CAFile,
		CertFile:       pki.Server.CertFile,
		KeyFile:        pki.Server.KeyFile,
		CertLogin:      true,
		AuthHTTPBase:   srv.URL,
		AuthHTTPMethod: "post",
	})
	t.Logf("rabbitmq %s started in %s", b.Node, b.StartTime)
	if !strings.HasPrefix(b.Node, "ghtest-") || b.MQTTTLSPort == 0 || b.MQTTPort == 0 || b.AMQPPort == 0 || b.MgmtPort == 0 {
		t.Fatalf("broker fields: %+v", b)
	}
	c := mqttClient{pub: pub, sub: sub, host: b.Host, port: b.MQTTTLSPort, cafile: pki.CAFile, extra: []string{"-V", "mqttv311"}}
	dev1, dev2 := pki.Dev["dev1"], pki.Dev["dev2"]

	// dev2 subscribes, dev1 publishes; both log in by certificate only.
	s := c.subscribe(t, dev2, "sub-dev2", "devices/dev1/cmd")
	c.publishUntilDelivered(t, s, dev1, "pub-dev1", "devices/dev1/cmd", "hello-rabbit")

	u, ok := hook.find("/user", func(f url.Values) bool { return f.Get("username") == "dev1" })
	if !ok {
		t.Fatalf("no user request for dev1; requests:\n%s", hook.dump())
	}
	if u.Method != http.MethodPost {
		t.Errorf("user request method %s, want POST", u.Method)
	}
	if u.Form.Has("password") && u.Form.Get("password") != "" {
		t.Errorf("certificate login sent a password: %v", u.Form)
	}
	tw, ok := hook.find("/topic", func(f url.Values) bool {
		return f.Get("username") == "dev1" && f.Get("permission") == "write"
	})
	if !ok {
		t.Fatalf("no topic write request for dev1; requests:\n%s", hook.dump())
	}
	if got := tw.Form.Get("routing_key"); got != "devices.dev1.cmd" {
		t.Errorf("topic write routing_key = %q, want devices.dev1.cmd (%v)", got, tw.Form)
	}
	if _, ok := hook.find("/topic", func(f url.Values) bool {
		return f.Get("username") == "dev2" && f.Get("permission") == "read" && f.Get("routing_key") == "devices.dev1.cmd"
	}); !ok {
		t.Errorf("no topic read request for dev2's subscription; requests:\n%s", hook.dump())
	}

	t.Logf("webhook requests so far:\n%s", hook.dump())

	// Management API with the harness's administrator (internal backend);
	// the webhook must not see it.
	whoami(t, b, b.MgmtUser, b.MgmtPass)
	if _, ok := hook.find("/user", func(f url.Values) bool { return f.Get("username") == b.MgmtUser }); ok {
		t.Errorf("management login reached the HTTP backend:\n%s", hook.dump())
	}

	// Deny topic writes: the publish fails, the connection is closed.
	hook.denyWrite.Store(true)
	out, err := c.publish(dev1, "pub-dev1-denied", "devices/dev1/cmd", "denied")
	if err == nil {
		t.Fatalf("publish succeeded although the webhook denied the topic write:\n%s\nrequests:\n%s", out, hook.dump())
	}
	t.Logf("denied publish: %v: %s", err, strings.TrimSpace(out))
	if _, ok := hook.find("/topic", func(f url.Values) bool {
		return f.Get("variable_map.client_id") == "pub-dev1-denied"
	}); !ok {
		t.Errorf("no topic request for the denied publish:\n%s", hook.dump())
	}

	pid := b.PID
	b.Stop()
	if b.Running() {
		t.Fatal("rabbitmq still running after Stop")
	}
	assertGone(t, "rabbitmq", pid)
	assertNodeGone(t, b)
}

// whoami calls GET /api/whoami and checks the administrator tag.
func whoami(t *testing.T, b *testbroker.Broker, user, pass string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.MgmtURL()+"/api/whoami", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("management API: %v", err)
	}
	defer resp.Body.Close()
	var who struct {
		Name string `json:"name"`
		Tags any    `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&who); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/whoami as %s: %s %v", user, resp.Status, err)
	}
	if who.Name != user || !strings.Contains(fmt.Sprint(who.Tags), "administrator") {
		t.Errorf("whoami = %+v, want %s with administrator", who, user)
	}
}

// assertNodeGone checks that no beam.smp of this node is left.
func assertNodeGone(t *testing.T, b *testbroker.Broker) {
	t.Helper()
	out, _ := exec.Command("ps", "-eo", "pid=,args=").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, b.Dir) || strings.Contains(l, b.Node) {
			t.Errorf("process of %s left behind: %s", b.Node, strings.TrimSpace(l))
		}
	}
}

func TestRabbitMQInternalAuthAndCtl(t *testing.T) {
	t.Parallel()
	pub, _ := testbroker.RequireMosquittoClients(t)
	b := testbroker.RabbitMQ(t, testbroker.RabbitConfig{})
	t.Logf("rabbitmq %s (no TLS, internal auth) started in %s", b.Node, b.StartTime)
	whoami(t, b, b.MgmtUser, b.MgmtPass)
	b.AddManagementUser(t, "ops", "ops-pass")
	whoami(t, b, "ops", "ops-pass")

	// MQTT with the internal backend over the plain listener.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	args := []string{"-h", b.Host, "-p", strconv.Itoa(b.MQTTPort), "-V", "mqttv311", "-u", "ops", "-P", "ops-pass",
		"-t", "a/b", "-m", "x", "-q", "1"}
	if out, err := exec.CommandContext(ctx, pub, args...).CombinedOutput(); err != nil {
		t.Errorf("publish as internal user: %v\n%s", err, out)
	}
	args[8] = "wrong"
	if out, err := exec.CommandContext(ctx, pub, args...).CombinedOutput(); err == nil {
		t.Errorf("publish with a wrong password succeeded:\n%s", out)
	}
}
