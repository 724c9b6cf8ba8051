//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// Helpers shared by the gatehouse-mosquitto plugin tests: building the
// plugin, the README's mosquitto.conf, a throwaway PKI and the Mosquitto
// command-line clients.

// mosqPluginBuild builds the plugin once per test binary.
var mosqPluginBuild struct {
	once       sync.Once
	path, skip string
	err        error
}

// mosquittoPlugin builds brokers/mosquitto/gatehouse-mosquitto.so with
// `make mosquitto-plugin` and returns its absolute path. Without the
// Debian development packages the test is skipped, except under CI=true,
// where that is a failure.
func mosquittoPlugin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the plugin and runs Mosquitto")
	}
	mosqPluginBuild.once.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			mosqPluginBuild.err = err
			return
		}
		_, errH := os.Stat("/usr/include/mosquitto_plugin.h")
		if _, err := os.Stat("/usr/include/mosquitto.h"); errH == nil {
			errH = err
		}
		errP := exec.Command("pkg-config", "--exists", "libcurl", "libcjson", "openssl").Run()
		if errH != nil || errP != nil {
			mosqPluginBuild.skip = fmt.Sprintf("plugin headers missing (mosquitto_plugin.h, mosquitto.h: %v; pkg-config libcurl libcjson openssl: %v): "+
				"apt-get install mosquitto-dev libmosquitto-dev libcurl4-openssl-dev libcjson-dev libssl-dev pkg-config", errH, errP)
			return
		}
		if out, err := exec.Command("make", "-C", root, "mosquitto-plugin").CombinedOutput(); err != nil {
			mosqPluginBuild.err = fmt.Errorf("make mosquitto-plugin: %v\n%s", err, out)
			return
		}
		mosqPluginBuild.path = filepath.Join(root, "brokers", "mosquitto", "gatehouse-mosquitto.so")
	})
	if mosqPluginBuild.skip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(mosqPluginBuild.skip)
		}
		t.Skip(mosqPluginBuild.skip)
	}
	if mosqPluginBuild.err != nil {
		t.Fatal(mosqPluginBuild.err)
	}
	return mosqPluginBuild.path
}

// readmeFenced returns the first fenced block of language lang after the
// README heading.
func readmeFenced(t *testing.T, heading, lang string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var block []string
	state := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == heading:
			state = 1
		case state == 1 && line == "```"+lang:
			state = 2
		case state == 2 && line == "```":
			return strings.Join(block, "\n") + "\n"
		case state == 2:
			block = append(block, line)
		}
	}
	t.Fatalf("README.md has no %s block after %q", lang, heading)
	return ""
}

// pluginBroker is what a plugin test's Mosquitto is started with.
type pluginBroker struct {
	caFile, certFile, keyFile string // client CA, server certificate and key
	url, secretFile           string // plugin_opt_url, plugin_opt_secret_file
	// extra plugin_opt_* lines after the README's (a later line wins).
	extra []string
}

// startPluginBroker starts a private Mosquitto with the README's
// mosquitto.conf, its paths and addresses replaced, and checks that the
// broker's config holds every line of it.
func startPluginBroker(t *testing.T, p pluginBroker) *testbroker.Broker {
	t.Helper()
	so := mosquittoPlugin(t)
	conf := readmeFenced(t, "### Mosquitto (first-party plugin)", "conf")
	conf = strings.NewReplacer(
		"/etc/mosquitto/gatehouse-ca.pem", p.caFile,
		"/etc/mosquitto/server.crt", p.certFile,
		"/etc/mosquitto/server.key", p.keyFile,
		"/usr/local/lib/mosquitto/gatehouse-mosquitto.so", so,
		"http://127.0.0.1:8081", p.url,
		"/etc/mosquitto/gatehouse-hook-secret", p.secretFile,
	).Replace(conf)
	var plugin, want []string
	for _, l := range strings.Split(conf, "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "listener "):
			// testbroker writes the listener line with a free port
		case strings.HasPrefix(l, "plugin"):
			plugin = append(plugin, l)
		default:
			want = append(want, l)
		}
	}
	b := testbroker.Mosquitto(t, testbroker.MosquittoConfig{CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile,
		RequireCertificate: true, UseIdentityAsUsername: false, ExtraConfig: strings.Join(append(plugin, p.extra...), "\n")})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log:\n%s", b.LogTail(60))
		}
	})
	got, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range append(want, plugin...) {
		if !strings.Contains("\n"+string(got)+"\n", "\n"+l+"\n") {
			t.Fatalf("the broker's config lacks the README's line %q:\n%s", l, got)
		}
	}
	return b
}

// waitLog waits up to d for the broker log to hold s at least n times.
func waitLog(t *testing.T, b *testbroker.Broker, s string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for strings.Count(b.LogTail(100000), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the broker log has %q fewer than %d times after %s:\n%s", s, n, d, b.LogTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testCA is a throwaway CA that issues client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
	dir  string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(2 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem"), dir: dir}
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// client issues a clientAuth certificate with CN cn and writes it and its
// key under the CA's dir.
func (ca *testCA) client(t *testing.T, cn string) testDevice {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(2 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := filepath.Join(ca.dir, ca.cert.Subject.CommonName+"-"+cn)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d := testDevice{id: cn, dir: dir, cert: filepath.Join(dir, "client.crt"), key: filepath.Join(dir, "client.key")}
	_ = os.WriteFile(d.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(d.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return d
}

// concatFiles writes the files one after the other into a new file.
func concatFiles(t *testing.T, out string, files ...string) string {
	t.Helper()
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(out, all, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// mqttCLI runs mosquitto_pub and mosquitto_sub against one TLS listener,
// over MQTT 5 unless version says otherwise: MQTT 5 answers a refused
// PUBLISH with a reason code (MQTT 3.1.1 acknowledges it as if it went
// through); RabbitMQ speaks only 3.1.1.
type mqttCLI struct {
	pub, sub string
	port     int
	cafile   string
	// version is mosquitto_pub's -V value; "" is MQTT 5.
	version string
}

// mqttV311 is mqttCLI.version for MQTT 3.1.1 (RabbitMQ).
const mqttV311 = "mqttv311"

func (c mqttCLI) args(d testDevice, clientID string, extra ...string) []string {
	v := c.version
	if v == "" {
		v = "5"
	}
	return append([]string{"-V", v, "-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "--cafile", c.cafile,
		"--cert", d.cert, "--key", d.key, "-i", clientID}, extra...)
}

// publish publishes one QoS 1 message and returns the client's output and
// exit error.
func (c mqttCLI) publish(d testDevice, clientID, topic, msg string, extra ...string) (string, error) {
	return c.run(15*time.Second, c.pub, c.args(d, clientID, append([]string{"-t", topic, "-m", msg, "-q", "1"}, extra...)...)...)
}

// run runs a client with a hard timeout and returns its combined output.
func (c mqttCLI) run(timeout time.Duration, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s did not finish within %s", filepath.Base(bin), timeout)
	}
	return string(out), err
}

// refused reports whether a client's output says the broker refused it
// (CONNACK, PUBACK or SUBACK "not authorized").
func refused(out string) bool {
	o := strings.ToLower(out)
	return strings.Contains(o, "not authori") || strings.Contains(o, "denied")
}

// subscribe starts mosquitto_sub -v on filter; killed at the test's end.
func (c mqttCLI) subscribe(t *testing.T, d testDevice, clientID, filter string, extra ...string) *rmqSub {
	t.Helper()
	s := &rmqSub{out: &logBuffer{}, done: make(chan error, 1)}
	cmd := exec.Command(c.sub, c.args(d, clientID, append([]string{"-t", filter, "-q", "1", "-v", "-W", "60"}, extra...)...)...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

// publishUntilSeen publishes as d (client id d.id) until s prints the
// message: the first may go out before the subscription is in place.
func (c mqttCLI) publishUntilSeen(t *testing.T, s *rmqSub, d testDevice, topic, msg string) {
	t.Helper()
	want := topic + " " + msg
	deadline := time.Now().Add(15 * time.Second)
	for {
		if out, err := c.publish(d, d.id, topic, msg); err != nil || refused(out) {
			t.Fatalf("%s publishing to %s: %v\n%s", d.id, topic, err, out)
		}
		for wait := time.Now().Add(500 * time.Millisecond); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
			if strings.Contains(s.out.String(), want) {
				return
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("subscriber exited (%v) without %q:\n%s", err, want, s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not delivered within 15s; subscriber output:\n%s", want, s.out.String())
		}
	}
}

// exited reports whether the subscriber has exited, waiting up to d.
func (s *rmqSub) exited(d time.Duration) bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	case <-time.After(d):
		return false
	}
}
