// Package testbroker starts private, throwaway MQTT brokers for Go tests:
// a Mosquitto 2.0 instance (Debian package mosquitto) and a RabbitMQ 3.10
// node with the MQTT, HTTP-auth and management plugins (Debian package
// rabbitmq-server).
//
// Every broker runs as a child process of the test binary, in its own
// process group, with its configuration, data and logs under t.TempDir(),
// and listens on free 127.0.0.1 ports only, so it never touches a broker the
// machine already runs (the default RabbitMQ on 5672 and Mosquitto on 1883).
// The helper waits until the broker accepts TCP connections and registers a
// t.Cleanup that stops it by PID and then kills whatever is left of its
// process group and process tree. A broker that does not come up fails the
// test with t.Fatalf and the tail of its logs.
//
// A missing broker or client binary is a test failure, not a skip: the
// message names the Debian package to install. Tests that shell out to the
// command-line clients call Require (or RequireMosquittoClients) first.
//
// Quick reference:
//
//	b := testbroker.Mosquitto(t, testbroker.MosquittoConfig{
//		CAFile: ca, CertFile: crt, KeyFile: key,
//		RequireCertificate: true, UseIdentityAsUsername: true, CRLFile: crl,
//	})
//	// b.Host, b.Port (TLS), b.PlainPort, b.PID, b.LogPath; b.Reload() after
//	// rewriting the CRL with testbroker.WriteFileAtomic.
//
//	r := testbroker.RabbitMQ(t, testbroker.RabbitConfig{
//		CAFile: ca, CertFile: crt, KeyFile: key, CertLogin: true,
//		AuthHTTPBase: hook.URL, AuthHTTPMethod: "post",
//	})
//	// r.MQTTPort, r.MQTTTLSPort, r.AMQPPort, r.MgmtPort, r.Node, r.MgmtURL(),
//	// r.MgmtUser, r.MgmtPass, r.AddManagementUser(t, name, pass), r.Ctl(t, ...)
package testbroker

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

// Host is the address every broker listens on.
const Host = "127.0.0.1"

// Broker is a running private broker. Fields that do not apply to a broker
// kind are zero.
type Broker struct {
	Kind string // "mosquitto" or "rabbitmq"
	Host string // always 127.0.0.1

	// Port is the MQTT-over-TLS port (0 when the broker has no TLS
	// listener); PlainPort the plain MQTT port (0 when there is none). For
	// RabbitMQ they equal MQTTTLSPort and MQTTPort.
	Port      int
	PlainPort int

	// RabbitMQ only.
	MQTTPort    int
	MQTTTLSPort int
	AMQPPort    int
	MgmtPort    int
	Node        string // e.g. ghtest-1a2b3c4d@localhost
	// MgmtUser/MgmtPass is an administrator created at first boot in the
	// internal database (RabbitMQ default_user); it can use the management
	// API unless RabbitConfig.HTTPAuthOnly is set.
	MgmtUser string
	MgmtPass string

	PID        int           // the broker process: mosquitto, or RabbitMQ's beam.smp
	Dir        string        // private directory with config, data and logs
	ConfigPath string        // mosquitto.conf / rabbitmq.conf the harness wrote
	LogPath    string        // the broker's own log file
	StartTime  time.Duration // from exec to "accepts connections"

	tb       testing.TB
	proc     *proc
	epmd     *proc // RabbitMQ: private epmd
	env      []string
	outPath  string // stdout+stderr of the broker process
	stopOnce sync.Once
	stopErr  error
	ctlMu    sync.Mutex
	fastStop bool
}

// Addr returns host:port of the TLS listener.
func (b *Broker) Addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// PlainAddr returns host:port of the plain MQTT listener.
func (b *Broker) PlainAddr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.PlainPort)) }

// Running reports whether the broker process is still alive.
func (b *Broker) Running() bool {
	select {
	case <-b.proc.done:
		return false
	default:
		return true
	}
}

// LogTail returns the last n lines of the broker's log and of its captured
// stdout/stderr.
func (b *Broker) LogTail(n int) string {
	return logTail(n, b.LogPath, b.outPath)
}

// Stop stops the broker and waits until it and its process tree are gone.
// It is idempotent and runs automatically at t.Cleanup; call it directly to
// test a broker outage.
func (b *Broker) Stop() {
	b.stopOnce.Do(func() {
		if b.Kind == "rabbitmq" {
			b.stopErr = b.stopRabbit()
		} else {
			b.stopErr = b.proc.stop(syscall.SIGTERM, 10*time.Second)
		}
		if b.epmd != nil {
			if err := b.epmd.stop(syscall.SIGTERM, 5*time.Second); err != nil && b.stopErr == nil {
				b.stopErr = err
			}
		}
	})
	if b.stopErr != nil {
		b.tb.Errorf("testbroker: stopping %s (pid %d): %v", b.Kind, b.PID, b.stopErr)
	}
}

// ---------------------------------------------------------------------------
// Binaries and Debian packages

// debianPackage maps the binaries the harness uses to the Debian packages
// that ship them.
var debianPackage = map[string]string{
	"mosquitto":        "mosquitto",
	"mosquitto_pub":    "mosquitto-clients",
	"mosquitto_sub":    "mosquitto-clients",
	"mosquitto_rr":     "mosquitto-clients",
	"mosquitto_passwd": "mosquitto",
	"rabbitmq-server":  "rabbitmq-server",
	"rabbitmqctl":      "rabbitmq-server",
	"rabbitmq-plugins": "rabbitmq-server",
	"epmd":             "erlang-base",
	"erl":              "erlang-base",
}

// extraDirs are searched after $PATH: sbin is often missing from a non-root
// PATH, and the RabbitMQ scripts that run a node as the calling user (not
// the Debian wrappers that su to the rabbitmq user) live in
// /usr/lib/rabbitmq/bin.
var extraDirs = []string{"/usr/lib/rabbitmq/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"}

// findBinary returns the path of binary. RabbitMQ scripts are always taken
// from /usr/lib/rabbitmq/bin: /usr/sbin/rabbitmqctl is a wrapper that
// switches to the rabbitmq user and would not see the private HOME/cookie.
func findBinary(binary string) (string, error) {
	if strings.HasPrefix(binary, "rabbitmq") {
		p := filepath.Join("/usr/lib/rabbitmq/bin", binary)
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s not found", p)
	}
	if p, err := exec.LookPath(binary); err == nil {
		return p, nil
	}
	for _, d := range extraDirs {
		p := filepath.Join(d, binary)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH or %s", binary, strings.Join(extraDirs, ", "))
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Require returns the path of binary (e.g. "mosquitto_pub", "mosquitto",
// "rabbitmqctl", "epmd") and fails the test, naming the Debian package to
// install, when it is missing. It never skips: CI installs rabbitmq-server,
// mosquitto and mosquitto-clients.
func Require(t testing.TB, binary string) string {
	t.Helper()
	p, err := findBinary(binary)
	if err != nil {
		pkg := debianPackage[binary]
		if pkg == "" {
			pkg = "(unknown package)"
		}
		t.Fatalf("testbroker: %v: install the Debian package %s (apt-get install -y %s)", err, pkg, pkg)
	}
	return p
}

// RequireMosquitto checks for the broker binary (package mosquitto).
func RequireMosquitto(t testing.TB) string { t.Helper(); return Require(t, "mosquitto") }

// RequireMosquittoClients checks for mosquitto_pub and mosquitto_sub
// (package mosquitto-clients) and returns their paths.
func RequireMosquittoClients(t testing.TB) (pub, sub string) {
	t.Helper()
	return Require(t, "mosquitto_pub"), Require(t, "mosquitto_sub")
}

// RequireRabbitMQ checks for rabbitmq-server, rabbitmqctl (package
// rabbitmq-server) and epmd (package erlang-base, a dependency).
func RequireRabbitMQ(t testing.TB) {
	t.Helper()
	Require(t, "rabbitmq-server")
	Require(t, "rabbitmqctl")
	Require(t, "epmd")
}

// ---------------------------------------------------------------------------
// Files

// WriteFileAtomic writes data to path through a temporary file in the same
// directory and a rename, so a broker that re-reads the file (mosquitto's
// crlfile on SIGHUP) never sees a partial file: mosquitto 2.0.11 accepts
// revoked certificates after reading a missing or garbage CRL.
func WriteFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		t.Fatalf("testbroker: write %s: %v", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		t.Fatalf("testbroker: %v", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// logTail returns the last n lines of each non-empty file.
func logTail(n int, paths ...string) string {
	var sb strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(&sb, "--- %s: %v\n", p, err)
			continue
		}
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&sb, "--- last %d lines of %s\n%s\n", len(lines), p, strings.Join(lines, "\n"))
	}
	if sb.Len() == 0 {
		return "(logs are empty)"
	}
	return sb.String()
}

// ---------------------------------------------------------------------------
// Ports

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a loopback TCP port that was free a moment ago and that
// this test binary has not handed out before. Another process may still
// take it before the broker binds it; the helpers retry the start with new
// ports when the broker reports an address in use.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", Host+":0")
		if err != nil {
			t.Fatalf("testbroker: find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatalf("testbroker: no free loopback port found")
	return 0
}

func addrInUse(logs string) bool {
	l := strings.ToLower(logs)
	return strings.Contains(l, "address already in use") || strings.Contains(l, "eaddrinuse") ||
		strings.Contains(l, "address in use")
}

// ---------------------------------------------------------------------------
// Processes

// proc is a child process in its own process group.
type proc struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed when the process has been reaped
	err  error         // exit status, valid after done
}

// startProc starts path with args in its own process group, stdout and
// stderr appended to outPath. The child gets SIGKILL if the test binary dies
// (Pdeathsig), so a crashed or timed-out test leaves no broker behind.
func startProc(path string, args, env []string, dir, outPath string) (*proc, error) {
	adoptOrphans()
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	startedMu.Lock()
	started[p.pid] = true
	startedMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		startedMu.Lock()
		delete(started, p.pid)
		startedMu.Unlock()
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop sends sig to the process, waits up to grace, then SIGKILLs its
// process group and every descendant it had (some Erlang helpers start
// their own process group), and reports anything that survived.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	tree := descendants(p.pid)
	if !p.exited() {
		_ = syscall.Kill(p.pid, sig)
		p.wait(grace)
	}
	return p.kill(tree)
}

// kill SIGKILLs the process, its group and the given processes (captured
// while the process was alive) and waits for them to disappear.
func (p *proc) kill(tree []procID) error {
	tree = append(tree, descendants(p.pid)...)
	if !p.exited() {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // the group; ESRCH when empty
	for _, c := range tree {
		if c.alive() {
			_ = syscall.Kill(c.pid, syscall.SIGKILL)
		}
	}
	if !p.wait(10 * time.Second) {
		return fmt.Errorf("pid %d did not exit after SIGKILL", p.pid)
	}
	defer reapTree(tree)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, c := range tree {
			if c.alive() {
				left = append(left, strconv.Itoa(c.pid))
			}
		}
		if groupAlive(p.pid) {
			left = append(left, "group "+strconv.Itoa(p.pid))
		}
		if len(left) == 0 {
			return nil
		}
		reapTree(tree)
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left after SIGKILL: %s", strings.Join(left, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procID identifies a process across PID reuse by its start time.
type procID struct {
	pid   int
	start string
}

func (c procID) alive() bool {
	_, start, state, ok := statOf(c.pid)
	return ok && start == c.start && state != "Z"
}

// statOf reads ppid, start time and state from /proc/<pid>/stat.
func statOf(pid int) (ppid int, start, state string, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", "", false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", "", false
	}
	f := strings.Fields(s[i+1:])
	// f[0]=state f[1]=ppid ... f[19]=starttime (field 22 of stat)
	if len(f) < 20 {
		return 0, "", "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], f[0], true
}

// descendants returns every live process below pid.
func descendants(pid int) []procID {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]procID{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, start, _, ok := statOf(n)
		if ok {
			children[ppid] = append(children[ppid], procID{n, start})
		}
	}
	var out []procID
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// groupAlive reports whether any non-zombie process is in process group pgid.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return true
		}
	}
	return false
}

// waitTCP waits until every addr accepts a TCP connection, the process
// exits, or the timeout passes.
func waitTCP(p *proc, addrs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pending := append([]string(nil), addrs...)
	for {
		if p.exited() {
			return fmt.Errorf("broker exited before accepting connections: %v", p.err)
		}
		var still []string
		for _, a := range pending {
			c, err := net.DialTimeout("tcp", a, 250*time.Millisecond)
			if err != nil {
				still = append(still, a)
				continue
			}
			c.Close()
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection to %s after %s", strings.Join(pending, ", "), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanEnv returns the environment without variables that would leak the
// machine's broker setup into a private one.
func cleanEnv(drop ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, d := range drop {
			if strings.HasSuffix(d, "*") && strings.HasPrefix(k, strings.TrimSuffix(d, "*")) || k == d {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return env
}

// ---------------------------------------------------------------------------
// Orphans
//
// Erlang VMs start helpers (erl_child_setup, inet_gethost, a shell for the
// disk monitor, short-lived "epmd-starter" VMs) that outlive their parent
// by a moment and are then re-parented. Where init does not reap orphans
// (some container and microVM inits) they would stay in ps as zombies. The
// test binary therefore becomes a child subreaper the first time it starts
// a broker: orphans from the brokers' process trees are re-parented to it,
// and it reaps them. It only ever reaps (1) processes it recorded in a
// broker's tree and (2) zombies named like Erlang's helpers, so it never
// steals the exit status of a command another test started with os/exec.

var (
	adoptOnce sync.Once
	adopting  bool
)

// reapNames are helpers nobody starts directly with os/exec.
var reapNames = map[string]bool{"erl_child_setup": true, "inet_gethost": true, "epmd": true}

// started holds the PIDs startProc started; their exit status belongs to
// os/exec, never to the reaper.
var (
	startedMu sync.Mutex
	started   = map[int]bool{}
)

func isStarted(pid int) bool {
	startedMu.Lock()
	defer startedMu.Unlock()
	return started[pid]
}

func adoptOrphans() {
	adoptOnce.Do(func() {
		const prSetChildSubreaper = 36
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
			return // not Linux or not allowed: init reaps, as usual
		}
		adopting = true
		go func() {
			for {
				time.Sleep(time.Second)
				reapHelpers()
			}
		}()
	})
}

// reapHelpers reaps zombie children of this process named in reapNames.
func reapHelpers() {
	me := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, _, state, ok := statOf(pid)
		if !ok || ppid != me || state != "Z" || isStarted(pid) {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || !reapNames[strings.TrimSpace(string(comm))] {
			continue
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// reapTree reaps the recorded processes that ended up as zombie children
// of this process.
func reapTree(tree []procID) {
	if !adopting {
		return
	}
	me := os.Getpid()
	for _, c := range tree {
		ppid, start, state, ok := statOf(c.pid)
		if ok && ppid == me && start == c.start && state == "Z" && !isStarted(c.pid) {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(c.pid, &ws, syscall.WNOHANG, nil)
		}
	}
	reapHelpers()
}
