package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testlog"
)

// The end-to-end tests drive the real binary the way an operator does:
// `gatehouse init` a data dir, `gatehouse serve` on free loopback ports,
// then the admin API and the CLI against it. gatehouse is that fixture, so
// each test holds only its own steps and assertions.

// What a fresh `gatehouse init` prints once, and never again.
var (
	adminTokenLine    = regexp.MustCompile(`(?m)^admin-token: (gha_[A-Za-z0-9_-]{43})$`)
	adminUserLine     = regexp.MustCompile(`(?m)^admin-user: (\S+)$`)
	adminPasswordLine = regexp.MustCompile(`(?m)^admin-password: ([A-Za-z0-9_-]{24})$`)
	hooksSecretLine   = regexp.MustCompile(`(?m)^hooks-secret: ([0-9a-f]{64})$`)
)

// tokensCSVHeader is the first line of every token batch CSV.
const tokensCSVHeader = "token,device_id,batch_id,fleet,profile,expires_at"

// gatehouse is one initialised data dir and, once serve ran, its server.
type gatehouse struct {
	bin  string // the binary under test
	dir  string // the test's scratch dir: device dirs, broker files
	data string // the data dir, in dir
	// env is given to every command: the CA passphrase source, and an
	// empty admin token and hook settings so nothing inherited from the
	// shell takes part.
	env []string

	initOut                              runResult
	adminToken, adminUser, adminPassword string
	// hookSecret is the broker hook secret init generated; serve reads it
	// from the data dir, and brokers (and tests) must send it.
	hookSecret string

	// Addresses are chosen before serve starts: brokers are configured
	// with the hook address before Gatehouse runs.
	apiAddr, hooksAddr, diagAddr string
	server                       string       // API base URL, http or https
	caFile                       string       // the API's TLS certificate, when served over HTTPS
	client                       *http.Client // trusts caFile
	logs                         *logBuffer   // serve's stdout and stderr
	stop                         func()       // stops serve and waits for it; idempotent
}

// newGatehouse runs `gatehouse init` in a fresh data dir and reads the
// credentials it prints. env overrides the defaults, among them an empty
// CA passphrase: init then generates one that serve finds in the data dir.
// Under -short it skips the test, which builds and runs the binary.
// eachBackend runs test against a fresh Gatehouse on SQLite, then on a
// PostgreSQL database of its own, with a fixed CA passphrase.
func eachBackend(t *testing.T, test func(*testing.T, *gatehouse)) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			env := []string{"GATEHOUSE_CA_PASSPHRASE=a-test-passphrase-123"}
			if backend == "postgres" {
				env = append(env, "GATEHOUSE_DATABASE_DSN="+testdb.Postgres(t))
			}
			test(t, newGatehouse(t, env...))
		})
	}
}

func newGatehouse(t *testing.T, env ...string) *gatehouse {
	t.Helper()
	return newGatehouseInit(t, nil, env...)
}

// newGatehouseInit is newGatehouse with extra init flags.
func newGatehouseInit(t *testing.T, initArgs []string, env ...string) *gatehouse {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	g := &gatehouse{
		bin: buildBinary(t), dir: dir, data: filepath.Join(dir, "data"),
		env: append([]string{"GATEHOUSE_CA_PASSPHRASE=", "GATEHOUSE_ADMIN_TOKEN=", "GATEHOUSE_HOOKS_SECRET=",
			"GATEHOUSE_HOOKS_SECRET_FILE=", "GATEHOUSE_HOOKS_ALLOW_UNAUTHENTICATED="}, env...),
		apiAddr: freeAddr(t), hooksAddr: freeAddr(t), diagAddr: freeAddr(t),
		client: &http.Client{Timeout: 10 * time.Second}, logs: &logBuffer{}, stop: func() {},
	}
	g.initOut = g.run(t, nil, append([]string{"init", "--data-dir", g.data}, initArgs...)...)
	out := g.initOut.stdout
	tok, user, pw := adminTokenLine.FindStringSubmatch(out), adminUserLine.FindStringSubmatch(out), adminPasswordLine.FindStringSubmatch(out)
	hs := hooksSecretLine.FindStringSubmatch(out)
	if g.initOut.code != 0 || tok == nil || user == nil || pw == nil || hs == nil {
		t.Fatalf("init: %d, want admin-token/admin-user/admin-password/hooks-secret lines\n%s%s", g.initOut.code, out, g.initOut.stderr)
	}
	g.adminToken, g.adminUser, g.adminPassword, g.hookSecret = tok[1], user[1], pw[1], hs[1]
	// serve finds the hook secret in the data dir, readable by its owner only.
	checkHookSecretFile(t, g.data, g.hookSecret)
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "GATEHOUSE_DATABASE_DSN=") }) {
		// PostgreSQL: no SQLite file to check.
	} else if st, err := os.Stat(filepath.Join(g.data, "gatehouse.db")); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("the SQLite database has mode %v, want 0600", st.Mode().Perm())
	}
	// Printed once for the operator, never logged.
	for _, secret := range []string{g.adminToken, g.adminPassword, g.hookSecret} {
		if strings.Contains(g.initOut.stderr, secret) {
			t.Fatal("init logged a secret it prints")
		}
	}
	return g
}

// serve runs `gatehouse serve` until the test ends (or stop) and waits
// until it is ready. env comes on top of g.env.
func (g *gatehouse) serve(t *testing.T, env ...string) { g.start(t, "", "", env) }

// serveTLS serves the API over HTTPS with a self-signed certificate, which
// the harness's client and g.enroll then trust.
func (g *gatehouse) serveTLS(t *testing.T, certFile, keyFile string, env ...string) {
	g.start(t, certFile, keyFile, env)
}

func (g *gatehouse) start(t *testing.T, certFile, keyFile string, env []string) {
	t.Helper()
	args := []string{"serve", "--data-dir", g.data, "--hooks-addr", g.hooksAddr, "--diag-addr", g.diagAddr}
	g.server = "http://" + g.apiAddr
	if certFile != "" {
		pemData, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			t.Fatalf("%s holds no certificate", certFile)
		}
		args = append(args, "--tls-cert", certFile, "--tls-key", keyFile)
		g.server, g.caFile = "https://"+g.apiAddr, certFile
		g.client = &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	cmd := exec.Command(g.bin, args...)
	// The API address comes from the environment, the others from flags:
	// every run shows both ways of configuring serve work.
	cmd.Env = append(append(append(os.Environ(), g.env...), "GATEHOUSE_API_ADDR="+g.apiAddr), env...)
	cmd.Stdout, cmd.Stderr = g.logs, g.logs
	cmd.SysProcAttr = serveProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Error("serve did not stop on SIGINT within 10s")
			}
		})
	}
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("serve log:\n%s", g.logs.String())
		}
	})
	waitReady(t, "http://"+g.diagAddr+"/readyz")
}

// run runs the binary to completion with g.env and then env.
func (g *gatehouse) run(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	return g.runStdin(t, "", env, args...)
}

// adminCLI runs an admin command of the CLI with the admin token.
func (g *gatehouse) adminCLI(t *testing.T, args ...string) runResult {
	t.Helper()
	return g.run(t, []string{"GATEHOUSE_ADMIN_TOKEN=" + g.adminToken}, args...)
}

type runResult struct {
	stdout, stderr string
	code           int
}

func (g *gatehouse) runStdin(t *testing.T, stdin string, env []string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(g.bin, args...)
	cmd.Env = append(append(os.Environ(), g.env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return runResult{so.String(), se.String(), code}
}

// call sends an admin API request with the admin token (a JSON body unless
// nil) and returns the status and body.
func (g *gatehouse) call(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.server+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+g.adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, raw
}

// api is call that fails the test unless the answer has status want, and
// decodes it into out unless out is nil.
func (g *gatehouse) api(t *testing.T, method, path string, body any, want int, out any) []byte {
	t.Helper()
	code, raw := g.call(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s: HTTP %d, want %d\n%s", method, path, code, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, raw)
		}
	}
	return raw
}

// tokens makes n enrollment tokens for profile in the default fleet over
// the API.
func (g *gatehouse) tokens(t *testing.T, profile string, n int) []string {
	t.Helper()
	var res apitypes.BatchResponse
	g.api(t, "POST", "/api/v1/token-batches", apitypes.BatchRequest{Fleet: "default", Profile: profile, Count: n, TTL: "1h"},
		http.StatusCreated, &res)
	if len(res.Tokens) != n {
		t.Fatalf("token batch for %s: %d tokens, want %d", profile, len(res.Tokens), n)
	}
	var out []string
	for _, tk := range res.Tokens {
		out = append(out, tk.Token)
	}
	return out
}

// tokenCSV makes n tokens the factory way, `gatehouse token create --csv`,
// checks the file (owner-only: it holds secrets) and returns its rows
// after the header: token, device_id, batch_id, fleet, profile, expires_at.
func (g *gatehouse) tokenCSV(t *testing.T, n int) [][]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.csv")
	r := g.adminCLI(t, "token", "create", "--server", g.server, "--count", strconv.Itoa(n), "--ttl", "1h", "--csv", path)
	if r.code != 0 {
		t.Fatalf("token create: %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("tokens CSV mode %v, want 0600", st.Mode().Perm())
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != n+1 || strings.Join(rows[0], ",") != tokensCSVHeader {
		t.Fatalf("tokens CSV (%v):\n%s", err, b)
	}
	return rows[1:]
}

// testDevice is an enrolled device's files.
type testDevice struct{ id, dir, cert, key string }

// enroll enrolls device id with token through the CLI into a directory of
// its own under g.dir.
func (g *gatehouse) enroll(t *testing.T, token, id string) testDevice {
	t.Helper()
	dir := filepath.Join(g.dir, id)
	args := []string{"enroll", "--server", g.server, "--token", token, "--out", dir, "--device-id", id, "--json"}
	if g.caFile != "" {
		args = append(args, "--ca-file", g.caFile)
	}
	if r := g.run(t, nil, args...); r.code != 0 {
		t.Fatalf("enroll %s: %d\n%s%s", id, r.code, r.stdout, r.stderr)
	}
	return testDevice{id: id, dir: dir, cert: filepath.Join(dir, deviceCertFile), key: filepath.Join(dir, deviceKeyFile)}
}

// caChain writes the Gatehouse root and intermediate to one PEM file, for a
// broker that verifies device certificates.
func (g *gatehouse) caChain(t *testing.T) string {
	t.Helper()
	var chain []byte
	for _, f := range []string{"root_ca.crt", "intermediate_ca.crt"} {
		b, err := os.ReadFile(filepath.Join(g.data, "ca", f))
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, b...)
	}
	path := filepath.Join(g.dir, "gatehouse-ca.pem")
	if err := os.WriteFile(path, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// logBuffer collects a process's output while it runs.
type logBuffer struct{ testlog.Buffer }

// waitLine waits (up to 5 s) for a log line holding every field, e.g.
// "msg=decision", "action=publish", "allow=false". A field matches at the
// start of a space-delimited value in slog's text format.
func (l *logBuffer) waitLine(t *testing.T, fields ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(l.String(), "\n") {
			ok := true
			for _, f := range fields {
				if !strings.Contains(" "+line, " "+f) {
					ok = false
					break
				}
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no line with %q in the serve log:\n%s", fields, l.String())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The binary is built once per test run (go build is slow on a busy
// machine) and removed by TestMain.
var build struct {
	once     sync.Once
	dir, bin string
	err      error
}

func buildBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "gatehouse-e2e-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "gatehouse")
		// The binary has the build tags this test binary has (pkcs11).
		if out, err := exec.Command("go", "build", "-tags", binaryTags, "-o", build.bin, ".").CombinedOutput(); err != nil {
			build.err = &buildError{err, out}
		}
	})
	if build.err != nil {
		t.Fatalf("go build: %v", build.err)
	}
	return build.bin
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// handedOut remembers every address freeAddr gave in this test binary: the
// kernel may offer a just-closed port again, and two listeners of one
// server (api and diag) were once given the same one.
var handedOut sync.Map

func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
	t.Fatal("no fresh loopback port in 100 tries")
	return ""
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready", url)
}

// serveProcAttr is set per platform: on Linux a crashed test leaves no
// server behind.
var serveProcAttr = func() *syscall.SysProcAttr { return nil }
