package testbroker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RabbitConfig describes a private RabbitMQ node with the rabbitmq_mqtt,
// rabbitmq_auth_backend_http and rabbitmq_management plugins.
type RabbitConfig struct {
	// TLS: with CertFile+KeyFile (and CAFile) the node gets an MQTT TLS
	// listener with ssl_options verify = verify_peer and
	// fail_if_no_peer_cert = true.
	CAFile   string
	CertFile string
	KeyFile  string
	// CertLogin sets mqtt.ssl_cert_login = true and ssl_cert_login_from =
	// CertLoginFrom (default common_name): a TLS client that sends no
	// username logs in as its certificate's CN, and the HTTP backend's
	// user_path sees only username=<CN>.
	CertLogin     bool
	CertLoginFrom string

	// AuthHTTPBase is the base URL of the HTTP auth backend, e.g.
	// httptest.Server.URL; the paths are <base>/user, /vhost, /resource
	// and /topic. Empty: only the internal database (auth_backends.1 =
	// internal).
	AuthHTTPBase string
	// AuthHTTPMethod is auth_http.http_method: "get" (RabbitMQ's default,
	// used when empty) or "post".
	AuthHTTPMethod string
	// HTTPAuthOnly makes the HTTP backend the only backend. By default the
	// internal backend is consulted first (see RabbitMQ) so the harness's
	// administrator can use the management API without the webhook's help.
	HTTPAuthOnly bool
	// AuthConfig, when set, replaces the auth_backends and auth_http lines
	// above verbatim (AuthHTTPBase, AuthHTTPMethod and HTTPAuthOnly are
	// then ignored): a test runs a configuration exactly as documented.
	AuthConfig string

	// ExtraConfig is appended verbatim to rabbitmq.conf.
	ExtraConfig string

	// FastStop makes Stop skip the graceful shutdown and SIGKILL the node
	// at once. A graceful stop of RabbitMQ 3.10.8 takes about 6 s, 5 s of
	// which it waits for the management plugin's statistics collector;
	// the node's data is thrown away anyway.
	FastStop bool

	// StartTimeout bounds the wait for the listeners (default 60s).
	StartTimeout time.Duration
}

// RabbitMQ starts a private RabbitMQ node and stops it at t.Cleanup.
//
// The node runs /usr/lib/rabbitmq/bin/rabbitmq-server in the foreground
// with its own RABBITMQ_NODENAME (ghtest-<random>@localhost), config,
// enabled-plugins file, mnesia/log directories, PID file, HOME and Erlang
// cookie, all under t.TempDir(), and a private epmd on a free loopback port
// (ERL_EPMD_PORT; the machine's epmd and nodes are never contacted, and no
// epmd daemon is left behind). Listeners: AMQP, MQTT, MQTT-TLS (when TLS
// files are given) and management, all on 127.0.0.1. NOTIFY_SOCKET points
// at a socket of the harness, which makes the script exec the Erlang VM
// (Broker.PID is beam.smp itself, not a signal-forwarding shell) and lets
// the harness wait for READY=1 after the listeners accept connections.
//
// Stop (and t.Cleanup) sends SIGTERM to the VM, which RabbitMQ turns into
// the same graceful stop as `rabbitmqctl stop`, and waits up to 30 s (about
// 6 s in practice; FastStop skips this), then SIGKILLs the process group and
// every process of the node's tree (Erlang helpers such as erl_child_setup
// and inet_gethost run in process groups of their own), and finally stops
// the private epmd.
//
// Authentication. With AuthHTTPBase the config has
//
//	auth_backends.1 = internal
//	auth_backends.2 = http
//
// RabbitMQ tries the backends in order and moves on when one refuses. The
// internal database holds only the harness's administrator, created at first
// boot from default_user/default_pass with a random name and password
// (Broker.MgmtUser/MgmtPass, tag administrator, full permissions on "/"), and
// any user added with AddUser. Every other username — every device — is
// refused by the internal backend (silently) and decided by the HTTP
// backend, whose answer is final, so the webhook sees exactly the requests
// it would see as the only backend and management API calls never reach it.
// (The reverse order, http first, would send the administrator's login to
// the webhook, and a webhook that answers "allow" would log it in without
// the administrator tag, breaking the management API.) There is no guest
// user. Caveat: with CertLogin the internal backend accepts an existing
// user without a password, so a certificate whose CN equals an internal
// username logs in as that user; don't issue such certificates.
// HTTPAuthOnly gives auth_backends.1 = http alone; the management API then
// works only if the webhook answers "allow administrator" for MgmtUser.
func RabbitMQ(t testing.TB, cfg RabbitConfig) *Broker {
	t.Helper()
	RequireRabbitMQ(t)
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		t.Fatalf("testbroker: RabbitConfig needs both CertFile and KeyFile")
	}
	if cfg.CertFile != "" && cfg.CAFile == "" {
		t.Fatalf("testbroker: RabbitConfig TLS needs CAFile (verify_peer)")
	}
	if cfg.CertLogin && cfg.CertFile == "" {
		t.Fatalf("testbroker: RabbitConfig.CertLogin needs the TLS files")
	}
	if cfg.HTTPAuthOnly && cfg.AuthHTTPBase == "" && cfg.AuthConfig == "" {
		t.Fatalf("testbroker: RabbitConfig.HTTPAuthOnly needs AuthHTTPBase")
	}
	switch cfg.AuthHTTPMethod {
	case "", "get", "post":
	default:
		t.Fatalf("testbroker: RabbitConfig.AuthHTTPMethod must be get or post, not %q", cfg.AuthHTTPMethod)
	}
	for _, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile} {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			t.Fatalf("testbroker: rabbitmq needs absolute file paths, got %q", f)
		}
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("testbroker: %v", err)
		}
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		b, err := startRabbit(t, cfg)
		if err == nil {
			return b
		}
		lastErr = err
		if !addrInUse(b.LogTail(300)) {
			break
		}
		t.Logf("testbroker: rabbitmq attempt %d lost a port race, retrying: %v", attempt, err)
	}
	t.Fatalf("testbroker: %v", lastErr)
	return nil
}

// rabbitPlugins is the enabled-plugins file (an Erlang term).
const rabbitPlugins = "[rabbitmq_auth_backend_http,rabbitmq_management,rabbitmq_mqtt].\n"

// startRabbit makes one attempt at starting a node: its files, its private
// epmd, then the node itself. The error of an attempt that lost a port race
// is returned with the broker, whose log tells the caller to retry.
func startRabbit(t testing.TB, cfg RabbitConfig) (*Broker, error) {
	t.Helper()
	b := newRabbitBroker(t, cfg)
	ports := rabbitPorts{dist: freePort(t), epmd: freePort(t), ctl: freePort(t)}
	writeRabbitFiles(t, b, cfg)
	b.env = rabbitEnv(b, ports)

	begin := time.Now()
	if err := startRabbitEpmd(t, b, ports.epmd); err != nil {
		return b, err
	}
	if err := bootRabbit(t, b, cfg.StartTimeout); err != nil {
		return b, err
	}
	b.StartTime = time.Since(begin)
	t.Logf("testbroker: rabbitmq %s pid %d ready in %s: mqtt=%d mqtts=%d amqp=%d mgmt=%d dir=%s",
		b.Node, b.PID, b.StartTime.Round(time.Millisecond), b.MQTTPort, b.MQTTTLSPort, b.AMQPPort, b.MgmtPort, b.Dir)
	return b, nil
}

// rabbitPorts are the node's Erlang ports besides its listeners.
type rabbitPorts struct{ dist, epmd, ctl int }

// newRabbitBroker makes the node's directories under t.TempDir() and
// returns its Broker with a fresh name, administrator and listener ports.
func newRabbitBroker(t testing.TB, cfg RabbitConfig) *Broker {
	t.Helper()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	for _, d := range []string{filepath.Join(dir, "home"), logDir, filepath.Join(dir, "mnesia")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("testbroker: %v", err)
		}
	}
	b := &Broker{
		Kind:       "rabbitmq",
		Host:       Host,
		Dir:        dir,
		Node:       "ghtest-" + randomHex(4) + "@localhost",
		ConfigPath: filepath.Join(dir, "rabbitmq.conf"),
		LogPath:    filepath.Join(logDir, "rabbit.log"),
		outPath:    filepath.Join(logDir, "stdout.log"),
		AMQPPort:   freePort(t),
		MQTTPort:   freePort(t),
		MgmtPort:   freePort(t),
		MgmtUser:   "ghtest-admin@" + randomHex(4),
		MgmtPass:   randomHex(12),
		tb:         t,
		fastStop:   cfg.FastStop,
	}
	if cfg.CertFile != "" {
		b.MQTTTLSPort = freePort(t)
	}
	b.Port, b.PlainPort = b.MQTTTLSPort, b.MQTTPort
	return b
}

// writeRabbitFiles writes the node's config, enabled-plugins file, an empty
// env file and its Erlang cookie into b.Dir.
func writeRabbitFiles(t testing.TB, b *Broker, cfg RabbitConfig) {
	t.Helper()
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(content), mode); err != nil {
			t.Fatalf("testbroker: %v", err)
		}
	}
	write("rabbitmq.conf", rabbitConf(t.Name(), b, cfg), 0o644)
	write("enabled_plugins", rabbitPlugins, 0o644)
	write("rabbitmq-env.conf", "# empty: keeps /etc/rabbitmq/rabbitmq-env.conf out\n", 0o644)
	write("home/.erlang.cookie", strings.ToUpper(randomHex(10)), 0o400)
}

// rabbitEnv is the environment of every process of the node: the caller's
// without its RabbitMQ and Erlang settings, pointed at the files and ports
// of b.
func rabbitEnv(b *Broker, ports rabbitPorts) []string {
	dir, logDir := b.Dir, filepath.Join(b.Dir, "log")
	return append(cleanEnv("RABBITMQ_*", "ERL_*", "HOME", "LANG", "LC_ALL"),
		"HOME="+filepath.Join(dir, "home"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"RABBITMQ_NODENAME="+b.Node,
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+b.ConfigPath,
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"), // absent
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+logDir,
		"RABBITMQ_LOGS="+b.LogPath,
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports.dist),
		"RABBITMQ_CTL_DIST_PORT_MIN="+strconv.Itoa(ports.ctl),
		"RABBITMQ_CTL_DIST_PORT_MAX="+strconv.Itoa(ports.ctl),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_CRASH_DUMP_SECONDS=0", // no erl_crash.dump on a failed boot
		"ERL_EPMD_ADDRESS=127.0.0.1",
		// The private epmd is already up; without this every Erlang VM
		// of the node (its "epmd-starter" helper, rabbitmqctl) would also
		// fork an `epmd -daemon` that finds the port taken and exits.
		"ERL_FLAGS=-start_epmd false",
		"ERL_EPMD_PORT="+strconv.Itoa(ports.epmd),
	)
}

// startRabbitEpmd starts the node's private epmd on port and waits until it
// listens.
func startRabbitEpmd(t testing.TB, b *Broker, port int) error {
	t.Helper()
	logPath := filepath.Join(b.Dir, "log", "epmd.log")
	epmdBin := Require(t, "epmd")
	ep, err := startProc(epmdBin, []string{"-address", "127.0.0.1", "-port", strconv.Itoa(port)},
		b.env, b.Dir, logPath)
	if err != nil {
		t.Fatalf("testbroker: start epmd: %v", err)
	}
	b.epmd = ep
	if err := waitTCP(ep, []string{net.JoinHostPort(Host, strconv.Itoa(port))}, 10*time.Second); err != nil {
		_ = ep.kill(nil)
		return fmt.Errorf("private epmd on port %d did not start: %v\n%s", port, err,
			logTail(20, logPath))
	}
	return nil
}

// bootRabbit starts the node (its epmd already up), stops it at t.Cleanup,
// and waits up to timeout for every listener.
func bootRabbit(t testing.TB, b *Broker, timeout time.Duration) error {
	t.Helper()
	// NOTIFY_SOCKET makes the rabbitmq-server script exec the VM instead
	// of running it as a child of a signal-forwarding shell, so the PID we
	// hold is beam.smp itself (and Pdeathsig reaches it), and RabbitMQ
	// reports its boot progress (STATUS=..., READY=1) on the socket.
	notify := newNotifySocket(t)
	server, _ := findBinary("rabbitmq-server")
	p, err := startProc(server, nil, append(b.env, "NOTIFY_SOCKET="+notify.path), b.Dir, b.outPath)
	if err != nil {
		_ = b.epmd.kill(nil)
		t.Fatalf("testbroker: start %s: %v", server, err)
	}
	b.proc, b.PID = p, p.pid
	t.Cleanup(b.Stop)

	addrs := []string{
		net.JoinHostPort(Host, strconv.Itoa(b.AMQPPort)),
		net.JoinHostPort(Host, strconv.Itoa(b.MQTTPort)),
		net.JoinHostPort(Host, strconv.Itoa(b.MgmtPort)),
	}
	if b.MQTTTLSPort != 0 {
		addrs = append(addrs, net.JoinHostPort(Host, strconv.Itoa(b.MQTTTLSPort)))
	}
	if err := waitTCP(p, addrs, timeout); err != nil {
		_ = p.kill(descendants(p.pid))
		_ = b.epmd.kill(nil)
		return fmt.Errorf("rabbitmq node %s (pid %d, config %s) did not start: %v\nboot status: %q\n%s%s",
			b.Node, b.PID, b.ConfigPath, err, notify.messages(), firstErrors(25, b.outPath, b.LogPath), b.LogTail(60))
	}
	// The AMQP listener opens last; READY=1 follows "Server startup
	// complete" a moment later.
	if !notify.waitReady(p, 15*time.Second) {
		t.Logf("testbroker: rabbitmq %s listens but sent no READY=1 (notifications: %q)", b.Node, notify.messages())
	}
	return nil
}

func rabbitConf(testName string, b *Broker, cfg RabbitConfig) string {
	var c strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&c, format+"\n", args...) }
	line("# written by internal/testbroker for %s", testName)
	line("listeners.tcp.default = %s:%d", Host, b.AMQPPort)
	line("mqtt.listeners.tcp.default = %s:%d", Host, b.MQTTPort)
	if b.MQTTTLSPort != 0 {
		line("mqtt.listeners.ssl.default = %s:%d", Host, b.MQTTTLSPort)
	}
	line("management.tcp.port = %d", b.MgmtPort)
	line("management.tcp.ip = %s", Host)
	line("mqtt.allow_anonymous = false")
	line("mqtt.vhost = /")
	line("mqtt.exchange = amq.topic")
	line("")
	line("# administrator for the management API (internal database, first boot only)")
	line("default_vhost = /")
	line("default_user = %s", b.MgmtUser)
	line("default_pass = %s", b.MgmtPass)
	line("default_user_tags.administrator = true")
	line("default_permissions.configure = .*")
	line("default_permissions.read = .*")
	line("default_permissions.write = .*")
	if cfg.CertFile != "" {
		line("")
		line("ssl_options.cacertfile = %s", cfg.CAFile)
		line("ssl_options.certfile = %s", cfg.CertFile)
		line("ssl_options.keyfile = %s", cfg.KeyFile)
		line("ssl_options.verify = verify_peer")
		line("ssl_options.fail_if_no_peer_cert = true")
	}
	if cfg.CertLogin {
		from := cfg.CertLoginFrom
		if from == "" {
			from = "common_name"
		}
		line("mqtt.ssl_cert_login = true")
		line("ssl_cert_login_from = %s", from)
	}
	line("")
	switch {
	case cfg.AuthConfig != "":
		line("# AuthConfig")
		line("%s", strings.TrimRight(cfg.AuthConfig, "\n"))
	case cfg.AuthHTTPBase == "":
		line("auth_backends.1 = internal")
	case cfg.HTTPAuthOnly:
		line("auth_backends.1 = http")
	default:
		line("auth_backends.1 = internal")
		line("auth_backends.2 = http")
	}
	if cfg.AuthHTTPBase != "" && cfg.AuthConfig == "" {
		method := cfg.AuthHTTPMethod
		if method == "" {
			method = "get"
		}
		base := strings.TrimRight(cfg.AuthHTTPBase, "/")
		line("auth_http.http_method = %s", method)
		line("auth_http.user_path = %s/user", base)
		line("auth_http.vhost_path = %s/vhost", base)
		line("auth_http.resource_path = %s/resource", base)
		line("auth_http.topic_path = %s/topic", base)
	}
	if cfg.ExtraConfig != "" {
		line("")
		line("# ExtraConfig")
		line("%s", strings.TrimRight(cfg.ExtraConfig, "\n"))
	}
	return c.String()
}

// MgmtURL returns the management API base URL, e.g. http://127.0.0.1:PORT
// (API under /api/). Authenticate with MgmtUser/MgmtPass or a user made by
// AddManagementUser.
func (b *Broker) MgmtURL() string {
	return "http://" + net.JoinHostPort(b.Host, strconv.Itoa(b.MgmtPort))
}

// Ctl runs /usr/lib/rabbitmq/bin/rabbitmqctl -n <node> args... with the
// node's private HOME (cookie) and epmd, fails the test on error, and
// returns the output. Each call starts an Erlang VM (about 1-2 s).
func (b *Broker) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := b.ctl(60*time.Second, args...)
	if err != nil {
		t.Fatalf("testbroker: rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (b *Broker) ctl(timeout time.Duration, args ...string) (string, error) {
	if b.Kind != "rabbitmq" {
		return "", fmt.Errorf("rabbitmqctl needs a rabbitmq broker, not %s", b.Kind)
	}
	// One CLI at a time: each listens on RABBITMQ_CTL_DIST_PORT_MIN.
	b.ctlMu.Lock()
	defer b.ctlMu.Unlock()
	bin, err := findBinary("rabbitmqctl")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-n", b.Node}, args...)...)
	cmd.Env = b.env
	cmd.Dir = b.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stray VM helpers, if any
	}
	return string(out), err
}

// AddUser creates a user in the node's internal database with rabbitmqctl
// add_user, set_user_tags and set_permissions (configure/write/read ".*" on
// vhost "/"). Users in the internal database authenticate only while
// auth_backends includes internal (the default; not with HTTPAuthOnly).
func (b *Broker) AddUser(t testing.TB, name, password string, tags ...string) {
	t.Helper()
	b.Ctl(t, "add_user", name, password)
	b.Ctl(t, append([]string{"set_user_tags", name}, tags...)...)
	b.Ctl(t, "set_permissions", "-p", "/", name, ".*", ".*", ".*")
}

// AddManagementUser creates an administrator for the management API.
func (b *Broker) AddManagementUser(t testing.TB, name, password string) {
	t.Helper()
	b.AddUser(t, name, password, "administrator")
}

// stopRabbit sends SIGTERM to the VM, which RabbitMQ handles like
// `rabbitmqctl stop` (rabbit_prelaunch_sighandler: graceful stop, then
// halt) without starting a second Erlang VM for the CLI, then kills the
// process group and every descendant.
func (b *Broker) stopRabbit() error {
	tree := descendants(b.PID)
	if !b.proc.exited() && !b.fastStop {
		begin := time.Now()
		_ = syscall.Kill(b.PID, syscall.SIGTERM)
		if !b.proc.wait(30 * time.Second) {
			b.tb.Logf("testbroker: rabbitmq %s (pid %d) ignored SIGTERM for 30s; killing it\n%s", b.Node, b.PID, b.LogTail(20))
		} else {
			b.tb.Logf("testbroker: rabbitmq %s stopped in %s", b.Node, time.Since(begin).Round(time.Millisecond))
		}
	}
	return b.proc.kill(tree)
}

// notifySocket receives sd_notify datagrams.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

func newNotifySocket(t testing.TB) *notifySocket {
	t.Helper()
	// A unix socket path is limited to 108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "ghtest-rmq-")
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	n := &notifySocket{path: filepath.Join(dir, "notify.sock")}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testbroker: notify socket: %v", err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := n.conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		n.conn.Close()
		os.RemoveAll(dir)
	})
	return n
}

func (n *notifySocket) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// waitReady waits for READY=1, the process exit or the timeout.
func (n *notifySocket) waitReady(p *proc, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && !p.exited() {
		for _, m := range n.messages() {
			for _, l := range strings.Split(m, "\n") {
				if l == "READY=1" {
					return true
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// firstErrors returns the first n "[error]" lines of the files: the cause of
// a failed boot comes before the crash reports that fill the tail.
func firstErrors(n int, paths ...string) string {
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "[error]") && len(out) < n {
				out = append(out, l)
			}
		}
		if len(out) > 0 {
			break // stdout repeats the log file
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "--- first error lines\n" + strings.Join(out, "\n") + "\n"
}
