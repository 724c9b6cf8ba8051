package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkHookSecretFile: init stored the hook secret it printed in the data
// dir, with mode 0600.
func checkHookSecretFile(t *testing.T, data, secret string) {
	t.Helper()
	path := filepath.Join(data, hooksSecretFileName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("init left no hook secret: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", path, st.Mode().Perm())
	}
	if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != secret {
		t.Errorf("%s does not hold the printed secret (%v)", path, err)
	}
}

// hookProbe is one broker request, per dialect, and how to read its answer.
type hookProbe struct {
	name, path, ctype, body, hook string
	allowed                       func(status int, body string) bool
}

// connectProbes ask each dialect whether device id may connect: allowed
// for an enrolled device by any policy, so the answer shows whether the
// request was served.
func connectProbes(id string) []hookProbe {
	emqx := func(s int, b string) bool { return s == 200 && strings.Contains(b, `"result":"allow"`) }
	return []hookProbe{
		{"emqx authn", "/hooks/emqx/authn", "application/json", `{"clientid":"` + id + `","cert_common_name":"` + id + `"}`, "", emqx},
		{"emqx authz", "/hooks/emqx/authz", "application/json",
			`{"clientid":"` + id + `","cert_common_name":"` + id + `","action":"publish","topic":"fleets/default/devices/` + id + `/telemetry/t"}`, "", nil},
		{"vernemq register", "/hooks/vernemq", "application/json", `{"username":"` + id + `","client_id":"` + id + `"}`, "auth_on_register",
			func(s int, b string) bool { return s == 200 && strings.TrimSpace(b) == `{"result":"ok"}` }},
		{"vernemq subscribe", "/hooks/vernemq", "application/json",
			`{"username":"` + id + `","client_id":"` + id + `","topics":[{"topic":"fleets/default/devices/` + id + `/cmd/#","qos":0}]}`, "auth_on_subscribe", nil},
		// go-auth's user check is always denied (a listener without
		// certificate identity calls it), so it is only probed for denies.
		{"mosquitto user", "/hooks/mosquitto/user", "application/json", `{"username":"` + id + `","clientid":"` + id + `"}`, "", nil},
		{"mosquitto acl", "/hooks/mosquitto/acl", "application/json",
			`{"username":"` + id + `","clientid":"` + id + `","topic":"fleets/default/devices/` + id + `/telemetry/t","acc":2}`, "", nil},
		{"rabbitmq vhost", "/hooks/rabbitmq/vhost", "application/x-www-form-urlencoded", "username=" + id + "&client_id=" + id + "&vhost=%2F", "",
			func(s int, b string) bool { return s == 200 && strings.TrimSpace(b) == "allow" }},
		{"rabbitmq topic", "/hooks/rabbitmq/topic", "application/x-www-form-urlencoded",
			"username=" + id + "&vhost=%2F&resource=topic&name=amq.topic&permission=write&routing_key=devices." + id + ".telemetry.t&variable_map.client_id=" + id, "", nil},
		{"native", "/hooks/v1/authorize", "application/json", `{"action":"connect","client_id":"` + id + `","identity":"` + id + `"}`, "",
			func(s int, b string) bool { return s == 200 && strings.TrimSpace(b) == `{"allow":true}` }},
	}
}

// explicitDeny reports whether an answer is the dialect's explicit deny.
func explicitDeny(p hookProbe, status int, body string) bool {
	body = strings.TrimSpace(body)
	switch {
	case strings.HasPrefix(p.path, "/hooks/emqx/"):
		return status == 200 && strings.Contains(body, `"result":"deny"`)
	case p.path == "/hooks/vernemq":
		return status == 200 && body == `{"result":{"error":"not_allowed"}}`
	case strings.HasPrefix(p.path, "/hooks/mosquitto/"):
		return status == 403 // status mode: any non-200 denies; Gatehouse sends 403
	case strings.HasPrefix(p.path, "/hooks/rabbitmq/"):
		return status == 200 && body == "deny"
	default:
		return status == 200 && body == `{"allow":false}`
	}
}

// hookCall sends a probe to the hook listener with secret (none if empty)
// in the header and returns the answer.
func hookCall(t *testing.T, addr string, p hookProbe, secret string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+p.path, strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", p.ctype)
	if p.hook != "" {
		req.Header.Set("vernemq-hook", p.hook)
	}
	if secret != "" {
		req.Header.Set("X-Gatehouse-Hook-Secret", secret)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return resp.StatusCode, string(b)
}

// TestHooksClosedByDefault: `init` prints a hook secret and `serve` with
// its defaults enforces it. Without it (or with a wrong one) every dialect
// answers its explicit deny; with it the same requests are served. A flood
// of such requests writes a handful of log lines, each with a count.
func TestHooksClosedByDefault(t *testing.T) {
	g := newGatehouse(t)
	g.serve(t)
	tok := g.tokens(t, "default", 1)[0]
	d := g.enroll(t, tok, "hook-dev")
	probes := connectProbes(d.id)
	// The decision core learns of the device within a sync interval.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, b := hookCall(t, g.hooksAddr, probes[0], g.hookSecret); probes[0].allowed(s, b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the emqx authn hook does not allow %s with the secret", d.id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range probes {
		for _, secret := range []string{"", strings.Repeat("0", 64), g.hookSecret[:32]} {
			if s, b := hookCall(t, g.hooksAddr, p, secret); !explicitDeny(p, s, b) {
				t.Errorf("%s with secret %q: %d %s, want the explicit deny", p.name, secret, s, b)
			}
		}
		if p.allowed != nil {
			if s, b := hookCall(t, g.hooksAddr, p, g.hookSecret); !p.allowed(s, b) {
				t.Errorf("%s with the secret: %d %s, want allow", p.name, s, b)
			}
		}
	}
	// 600 more unauthenticated requests: the log counts them, at most a
	// line a second, instead of writing one line each.
	start := time.Now()
	for i := range 600 {
		hookCall(t, g.hooksAddr, probes[i%len(probes)], "")
	}
	elapsed := time.Since(start)
	countRe := regexp.MustCompile(`msg="unauthenticated hook requests denied" count=(\d+)`)
	want := 600 + 3*len(probes)
	var lines [][]string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lines = countRe.FindAllStringSubmatch(g.logs.String(), -1)
		sum := 0
		for _, l := range lines {
			n, _ := strconv.Atoi(l[1])
			sum += n
		}
		if sum == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unauthenticated log lines count %d requests, want %d\n%s", sum, want, g.logs.String())
		}
	}
	t.Logf("%d unauthenticated requests (600 in %s) → %d log lines", want, elapsed.Round(time.Millisecond), len(lines))
	if limit := 3 + int(elapsed/time.Second) + 1; len(lines) > limit {
		t.Errorf("%d log lines for %d unauthenticated requests, want at most %d", len(lines), want, limit)
	}
	if strings.Contains(g.logs.String(), g.hookSecret) {
		t.Error("serve logged the hook secret")
	}
}

// TestServeRefusesOpenHooks: a data dir without a hook secret (as made
// before init generated one) and nothing else to authenticate brokers:
// serve refuses to start and says what to do. hooks.allow_unauthenticated
// opens the hooks with a warning; `init --if-missing` adds the secret,
// prints it once, and serve then enforces it.
func TestServeRefusesOpenHooks(t *testing.T) {
	g := newGatehouse(t)
	if err := os.Remove(filepath.Join(g.data, hooksSecretFileName)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, "serve", "--data-dir", g.data, "--api-addr", g.apiAddr,
		"--hooks-addr", g.hooksAddr, "--diag-addr", g.diagAddr)
	cmd.Env = append(os.Environ(), g.env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("serve ran with open hooks until killed:\n%s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("serve without a hook secret: %v, want a failed start\n%s", err, out)
	}
	if !strings.Contains(string(out), "gatehouse init --data-dir "+g.data+" --if-missing") ||
		!strings.Contains(string(out), "hooks.allow_unauthenticated") {
		t.Errorf("serve's refusal does not say what to do:\n%s", out)
	}

	// Explicitly opened: served, with a warning at start.
	g.serve(t, "GATEHOUSE_HOOKS_ALLOW_UNAUTHENTICATED=true")
	g.logs.waitLine(t, "level=WARN", `msg="hooks.allow_unauthenticated is set`)
	d := g.enroll(t, g.tokens(t, "default", 1)[0], "open-dev")
	p := connectProbes(d.id)[len(connectProbes(d.id))-1] // native connect
	deadline := time.Now().Add(10 * time.Second)
	for s, b := hookCall(t, g.hooksAddr, p, ""); !p.allowed(s, b); s, b = hookCall(t, g.hooksAddr, p, "") {
		if time.Now().After(deadline) {
			t.Fatalf("opened hooks: %d %s, want allow without a secret", s, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.stop()

	// init --if-missing adds the missing secret and prints it once.
	r := g.run(t, nil, "init", "--data-dir", g.data, "--if-missing")
	m := hooksSecretLine.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("init --if-missing on a data dir without a hook secret: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkHookSecretFile(t, g.data, m[1])
	if again := g.run(t, nil, "init", "--data-dir", g.data, "--if-missing"); again.code != 0 || strings.Contains(again.stdout, "hooks-secret") {
		t.Errorf("a second init --if-missing: %d, printed the secret again:\n%s", again.code, again.stdout)
	}
	g.logs = &logBuffer{}
	g.serve(t)
	if s, b := hookCall(t, g.hooksAddr, p, ""); !explicitDeny(p, s, b) {
		t.Errorf("after init --if-missing, without the secret: %d %s, want deny", s, b)
	}
	if s, b := hookCall(t, g.hooksAddr, p, m[1]); !p.allowed(s, b) {
		t.Errorf("after init --if-missing, with the new secret: %d %s, want allow", s, b)
	}
}
