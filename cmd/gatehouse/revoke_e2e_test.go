package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveForTest initialises a data dir and runs `gatehouse serve` on free
// ports until the test ends; it returns the API URL and the admin token.
func serveForTest(t *testing.T, bin string) (server, admin string) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"GATEHOUSE_CA_PASSPHRASE=", "GATEHOUSE_ADMIN_TOKEN="}
	in := run(t, env, bin, "init", "--data-dir", data)
	m := adminTokenLine.FindStringSubmatch(in.stdout)
	if in.code != 0 || m == nil {
		t.Fatalf("init: %d\n%s%s", in.code, in.stdout, in.stderr)
	}
	apiAddr, hooksAddr, diagAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	srv := exec.Command(bin, "serve", "--data-dir", data, "--hooks-addr", hooksAddr, "--diag-addr", diagAddr)
	srv.Env = append(os.Environ(), "GATEHOUSE_API_ADDR="+apiAddr)
	var logs strings.Builder
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- srv.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			t.Error("serve did not stop on SIGINT within 10s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	waitReady(t, "http://"+diagAddr+"/readyz")
	return "http://" + apiAddr, m[1]
}

// TestRevokeCLI drives `gatehouse revoke` against the real server: a device
// is revoked and shows so; a whole batch is revoked with progress to done;
// the batch's unused token no longer enrolls; bad reasons never leave the
// machine.
func TestRevokeCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	server, admin := serveForTest(t, bin)
	env := []string{"GATEHOUSE_ADMIN_TOKEN=" + admin}

	csvPath := filepath.Join(t.TempDir(), "tokens.csv")
	if r := run(t, env, bin, "token", "create", "--server", server, "--count", "4", "--ttl", "1h", "--csv", csvPath); r.code != 0 {
		t.Fatalf("token create: %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
	batchID := strings.Split(rows[0], ",")[2]
	devs := []string{"lot-dev-1", "lot-dev-2", "lot-dev-3"}
	for i, d := range devs {
		tok := strings.Split(rows[i], ",")[0]
		if r := run(t, nil, bin, "enroll", "--server", server, "--token", tok, "--out", t.TempDir(), "--device-id", d); r.code != 0 {
			t.Fatalf("enroll %s: %d\n%s", d, r.code, r.stderr)
		}
	}
	status := func(id string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", server+"/api/v1/devices/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d struct {
			Status string `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d.Status
	}

	// Refused before anything is sent: a reason that is not RFC 5280's.
	bad := run(t, env, bin, "revoke", "device", devs[0], "--server", "http://"+freeAddr(t), "--reason", "stolen")
	if bad.code != 1 || !strings.Contains(bad.stderr, "invalid_argument") || !strings.Contains(bad.stderr, "keyCompromise") {
		t.Fatalf("bad reason: %d\n%s", bad.code, bad.stderr)
	}
	noAuth := run(t, []string{"GATEHOUSE_ADMIN_TOKEN="}, bin, "revoke", "device", devs[0], "--server", server, "--json")
	if noAuth.code != 1 || !strings.Contains(noAuth.stdout, `"code": "unauthenticated"`) {
		t.Fatalf("no admin token: %d\n%s", noAuth.code, noAuth.stdout)
	}

	// Suspend and reinstate, then revoke one device.
	if r := run(t, env, bin, "revoke", "suspend", devs[0], "--server", server, "--note", "looking"); r.code != 0 ||
		!strings.Contains(r.stdout, "suspended") || status(devs[0]) != "suspended" {
		t.Fatalf("suspend: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, bin, "revoke", "reinstate", devs[0], "--server", server); r.code != 0 || status(devs[0]) != "active" {
		t.Fatalf("reinstate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	rd := run(t, env, bin, "revoke", "device", devs[0], "--server", server, "--reason", "keyCompromise", "--note", "key on a forum")
	if rd.code != 0 || !strings.Contains(rd.stdout, "device "+devs[0]+" revoked") {
		t.Fatalf("revoke device: %d\n%s%s", rd.code, rd.stdout, rd.stderr)
	}
	if s := status(devs[0]); s != "revoked" {
		t.Fatalf("%s is %s after revoke device", devs[0], s)
	}
	again := run(t, env, bin, "revoke", "suspend", devs[0], "--server", server)
	if again.code != 1 || !strings.Contains(again.stderr, "conflict") {
		t.Fatalf("suspend a revoked device: %d\n%s", again.code, again.stderr)
	}
	missing := run(t, env, bin, "revoke", "device", "nope", "--server", server)
	if missing.code != 1 || !strings.Contains(missing.stderr, "not_found") {
		t.Fatalf("unknown device: %d\n%s", missing.code, missing.stderr)
	}

	// The whole lot.
	rb := run(t, env, bin, "revoke", "batch", batchID, "--server", server, "--reason", "keyCompromise",
		"--note", "lot leaked", "--poll", "50ms")
	if rb.code != 0 {
		t.Fatalf("revoke batch: %d\n%s%s", rb.code, rb.stdout, rb.stderr)
	}
	if !strings.Contains(rb.stderr, "/3 devices") || !strings.Contains(rb.stderr, " done after ") ||
		!strings.Contains(rb.stdout, "done: batch "+batchID+", 3/3 devices processed, 2 revoked") {
		t.Fatalf("revoke batch output:\n%s%s", rb.stdout, rb.stderr)
	}
	for _, d := range devs {
		if s := status(d); s != "revoked" {
			t.Errorf("%s is %s after revoke batch", d, s)
		}
	}
	// Again, as JSON: the same finished job.
	rj := run(t, env, bin, "revoke", "batch", batchID, "--server", server, "--json")
	var res struct {
		OK  bool `json:"ok"`
		Job struct {
			ID, Status string
			Done       int
		} `json:"job"`
	}
	if rj.code != 0 || json.Unmarshal([]byte(rj.stdout), &res) != nil || !res.OK || res.Job.Status != "done" || res.Job.Done != 3 {
		t.Fatalf("revoke batch --json: %d\n%s%s", rj.code, rj.stdout, rj.stderr)
	}
	if r := run(t, env, bin, "revoke", "job", res.Job.ID, "--server", server); r.code != 0 || !strings.Contains(r.stdout, "done") {
		t.Fatalf("revoke job: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The lot's last token is dead.
	tok := strings.Split(rows[3], ",")[0]
	en := run(t, nil, bin, "enroll", "--server", server, "--token", tok, "--out", t.TempDir(), "--json")
	if en.code != 1 || !strings.Contains(en.stdout, `"code": "token_revoked"`) {
		t.Fatalf("enroll with a revoked batch's token: %d\n%s", en.code, en.stdout)
	}
	if r := run(t, env, bin, "revoke", "batch", "nope", "--server", server); r.code != 1 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("unknown batch: %d\n%s", r.code, r.stderr)
	}
}
