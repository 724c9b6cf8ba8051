package testbroker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MosquittoConfig describes a private Mosquitto instance.
type MosquittoConfig struct {
	// TLS listener. CertFile and KeyFile enable it; CAFile is needed to
	// verify client certificates. Without CertFile there is no TLS listener
	// and a plain listener is always started.
	CAFile   string
	CertFile string
	KeyFile  string
	// RequireCertificate sets require_certificate true (needs CAFile).
	RequireCertificate bool
	// UseIdentityAsUsername sets use_identity_as_username true: the
	// username is the client certificate's CN.
	UseIdentityAsUsername bool
	// CRLFile sets crlfile. The file must exist and hold a valid, unexpired
	// CRL before the start (mosquitto refuses to start otherwise); rewrite
	// it with WriteFileAtomic and call Reload.
	CRLFile string

	// PlainListener adds a plain MQTT listener (Broker.PlainPort).
	PlainListener bool
	// AllowAnonymous sets allow_anonymous true (global:
	// per_listener_settings is false). Leave it false when every client
	// authenticates by certificate (UseIdentityAsUsername) or through
	// ExtraConfig (password_file, plugin).
	AllowAnonymous bool

	// ExtraConfig is appended verbatim at the end of mosquitto.conf, after
	// the listener blocks: listener-scoped options apply to the TLS
	// listener (the last one; the plain listener when there is no TLS).
	// Security options (plugin, acl_file, password_file) are global.
	ExtraConfig string

	// StartTimeout bounds the wait for the listeners (default 15s).
	StartTimeout time.Duration
}

// Mosquitto starts a private mosquitto in the foreground (`mosquitto -c
// <dir>/mosquitto.conf`), waits until its listeners accept TCP connections
// and stops it at t.Cleanup.
func Mosquitto(t testing.TB, cfg MosquittoConfig) *Broker {
	t.Helper()
	bin := RequireMosquitto(t)
	if cfg.CertFile != "" && cfg.KeyFile == "" || cfg.CertFile == "" && cfg.KeyFile != "" {
		t.Fatalf("testbroker: MosquittoConfig needs both CertFile and KeyFile")
	}
	if cfg.RequireCertificate && cfg.CAFile == "" {
		t.Fatalf("testbroker: MosquittoConfig.RequireCertificate needs CAFile")
	}
	for _, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.CRLFile} {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			t.Fatalf("testbroker: mosquitto needs absolute file paths, got %q", f)
		}
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("testbroker: %v (mosquitto would refuse to start)", err)
		}
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 15 * time.Second
	}

	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		b, err := startMosquitto(t, bin, cfg)
		if err == nil {
			return b
		}
		lastErr = err
		if !addrInUse(b.LogTail(200)) {
			break
		}
		t.Logf("testbroker: mosquitto attempt %d lost a port race, retrying: %v", attempt, err)
	}
	t.Fatalf("testbroker: %v", lastErr)
	return nil
}

func startMosquitto(t testing.TB, bin string, cfg MosquittoConfig) (*Broker, error) {
	t.Helper()
	dir := t.TempDir()
	b := &Broker{
		Kind:       "mosquitto",
		Host:       Host,
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "mosquitto.conf"),
		LogPath:    filepath.Join(dir, "mosquitto.log"),
		outPath:    filepath.Join(dir, "mosquitto.out"),
		tb:         t,
	}
	tls := cfg.CertFile != ""
	if tls {
		b.Port = freePort(t)
	}
	if cfg.PlainListener || !tls {
		b.PlainPort = freePort(t)
	}
	if err := os.WriteFile(b.ConfigPath, []byte(mosquittoConf(t.Name(), b, cfg)), 0o644); err != nil {
		t.Fatalf("testbroker: %v", err)
	}

	begin := time.Now()
	p, err := startProc(bin, []string{"-c", b.ConfigPath}, cleanEnv(), dir, b.outPath)
	if err != nil {
		t.Fatalf("testbroker: start %s: %v", bin, err)
	}
	b.proc, b.PID = p, p.pid
	t.Cleanup(b.Stop)

	var addrs []string
	if b.Port != 0 {
		addrs = append(addrs, b.Addr())
	}
	if b.PlainPort != 0 {
		addrs = append(addrs, b.PlainAddr())
	}
	if err := waitTCP(p, addrs, cfg.StartTimeout); err != nil {
		_ = p.kill(descendants(p.pid))
		return b, fmt.Errorf("mosquitto (pid %d, config %s) did not start: %v\n%s",
			b.PID, b.ConfigPath, err, b.LogTail(40))
	}
	b.StartTime = time.Since(begin)
	t.Logf("testbroker: mosquitto pid %d ready in %s: tls=%d plain=%d dir=%s",
		b.PID, b.StartTime.Round(time.Millisecond), b.Port, b.PlainPort, dir)
	return b, nil
}

func mosquittoConf(testName string, b *Broker, cfg MosquittoConfig) string {
	var c strings.Builder
	fmt.Fprintf(&c, "# written by internal/testbroker for %s\n", testName)
	c.WriteString("per_listener_settings false\n")
	c.WriteString("persistence false\n")
	fmt.Fprintf(&c, "log_dest file %s\n", b.LogPath)
	c.WriteString("log_type all\n")
	c.WriteString("log_timestamp true\n")
	c.WriteString("log_timestamp_format %Y-%m-%dT%H:%M:%S\n")
	c.WriteString("connection_messages true\n")
	fmt.Fprintf(&c, "allow_anonymous %t\n", cfg.AllowAnonymous)
	if os.Geteuid() == 0 {
		// As root mosquitto would switch to the mosquitto user and then
		// could not re-read the CRL (or write the log) in root's 0700
		// t.TempDir() on SIGHUP.
		c.WriteString("user root\n")
	}
	if b.PlainPort != 0 {
		fmt.Fprintf(&c, "\nlistener %d %s\n", b.PlainPort, Host)
	}
	if b.Port != 0 {
		fmt.Fprintf(&c, "\nlistener %d %s\n", b.Port, Host)
		if cfg.CAFile != "" {
			fmt.Fprintf(&c, "cafile %s\n", cfg.CAFile)
		}
		fmt.Fprintf(&c, "certfile %s\n", cfg.CertFile)
		fmt.Fprintf(&c, "keyfile %s\n", cfg.KeyFile)
		fmt.Fprintf(&c, "require_certificate %t\n", cfg.RequireCertificate)
		fmt.Fprintf(&c, "use_identity_as_username %t\n", cfg.UseIdentityAsUsername)
		if cfg.CRLFile != "" {
			fmt.Fprintf(&c, "crlfile %s\n", cfg.CRLFile)
		}
	}
	if cfg.ExtraConfig != "" {
		c.WriteString("\n# ExtraConfig\n")
		c.WriteString(strings.TrimRight(cfg.ExtraConfig, "\n"))
		c.WriteString("\n")
	}
	return c.String()
}

// Reload sends SIGHUP to mosquitto, which re-reads its configuration and
// the crlfile, and waits until the log shows the reload ("Reloading
// config."). mosquitto is single-threaded, so connections made after Reload
// returns see the new CRL. Clients already connected stay connected.
func (b *Broker) Reload() {
	b.tb.Helper()
	if b.Kind != "mosquitto" {
		b.tb.Fatalf("testbroker: Reload is only supported for mosquitto, not %s", b.Kind)
	}
	if !b.Running() {
		b.tb.Fatalf("testbroker: Reload: mosquitto (pid %d) is not running: %v\n%s", b.PID, b.proc.err, b.LogTail(40))
	}
	before := countInFile(b.LogPath, "Reloading config")
	if err := syscall.Kill(b.PID, syscall.SIGHUP); err != nil {
		b.tb.Fatalf("testbroker: SIGHUP pid %d: %v", b.PID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countInFile(b.LogPath, "Reloading config") <= before {
		if !b.Running() || time.Now().After(deadline) {
			b.tb.Fatalf("testbroker: mosquitto (pid %d) did not log a reload after SIGHUP (running=%t)\n%s",
				b.PID, b.Running(), b.LogTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The message is logged at the start of the reload, inside one
	// iteration of the main loop; a short pause lets that iteration finish
	// even on a loaded machine.
	time.Sleep(100 * time.Millisecond)
	if !b.Running() {
		b.tb.Fatalf("testbroker: mosquitto (pid %d) exited during reload: %v\n%s", b.PID, b.proc.err, b.LogTail(40))
	}
}

func countInFile(path, s string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), s)
}
