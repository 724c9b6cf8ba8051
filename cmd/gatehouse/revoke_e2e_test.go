package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
)

// TestRevokeCLI drives `gatehouse revoke` against the real server: a device
// is revoked and shows so; a whole batch is revoked with progress to done;
// the batch's unused token no longer enrolls; bad reasons never leave the
// machine.
func TestRevokeCLI(t *testing.T) {
	g := newGatehouse(t)
	g.serve(t)
	server := g.server

	rows := g.tokenCSV(t, 4)
	batchID := rows[0][2]
	devs := []string{"lot-dev-1", "lot-dev-2", "lot-dev-3"}
	for i, d := range devs {
		g.enroll(t, rows[i][0], d)
	}
	status := func(id string) string {
		t.Helper()
		var d apitypes.Device
		g.api(t, "GET", "/api/v1/devices/"+id, nil, http.StatusOK, &d)
		return d.Status
	}

	// Refused before anything is sent: a reason that is not RFC 5280's.
	bad := g.adminCLI(t, "revoke", "device", devs[0], "--server", "http://"+freeAddr(t), "--reason", "stolen")
	if bad.code != 1 || !strings.Contains(bad.stderr, "invalid_argument") || !strings.Contains(bad.stderr, "keyCompromise") {
		t.Fatalf("bad reason: %d\n%s", bad.code, bad.stderr)
	}
	noAuth := g.run(t, []string{"GATEHOUSE_ADMIN_TOKEN="}, "revoke", "device", devs[0], "--server", server, "--json")
	if noAuth.code != 1 || !strings.Contains(noAuth.stdout, `"code": "unauthenticated"`) {
		t.Fatalf("no admin token: %d\n%s", noAuth.code, noAuth.stdout)
	}

	// Suspend and reinstate, then revoke one device.
	if r := g.adminCLI(t, "revoke", "suspend", devs[0], "--server", server, "--note", "looking"); r.code != 0 ||
		!strings.Contains(r.stdout, "suspended") || status(devs[0]) != "suspended" {
		t.Fatalf("suspend: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := g.adminCLI(t, "revoke", "reinstate", devs[0], "--server", server); r.code != 0 || status(devs[0]) != "active" {
		t.Fatalf("reinstate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	rd := g.adminCLI(t, "revoke", "device", devs[0], "--server", server, "--reason", "keyCompromise", "--note", "key on a forum")
	if rd.code != 0 || !strings.Contains(rd.stdout, "device "+devs[0]+" revoked") {
		t.Fatalf("revoke device: %d\n%s%s", rd.code, rd.stdout, rd.stderr)
	}
	if s := status(devs[0]); s != "revoked" {
		t.Fatalf("%s is %s after revoke device", devs[0], s)
	}
	again := g.adminCLI(t, "revoke", "suspend", devs[0], "--server", server)
	if again.code != 1 || !strings.Contains(again.stderr, "conflict") {
		t.Fatalf("suspend a revoked device: %d\n%s", again.code, again.stderr)
	}
	missing := g.adminCLI(t, "revoke", "device", "nope", "--server", server)
	if missing.code != 1 || !strings.Contains(missing.stderr, "not_found") {
		t.Fatalf("unknown device: %d\n%s", missing.code, missing.stderr)
	}

	// The whole lot.
	rb := g.adminCLI(t, "revoke", "batch", batchID, "--server", server, "--reason", "keyCompromise",
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
	rj := g.adminCLI(t, "revoke", "batch", batchID, "--server", server, "--json")
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
	if r := g.adminCLI(t, "revoke", "job", res.Job.ID, "--server", server); r.code != 0 || !strings.Contains(r.stdout, "done") {
		t.Fatalf("revoke job: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The lot's last token is dead.
	tok := rows[3][0]
	en := g.run(t, nil, "enroll", "--server", server, "--token", tok, "--out", t.TempDir(), "--json")
	if en.code != 1 || !strings.Contains(en.stdout, `"code": "token_revoked"`) {
		t.Fatalf("enroll with a revoked batch's token: %d\n%s", en.code, en.stdout)
	}
	if r := g.adminCLI(t, "revoke", "batch", "nope", "--server", server); r.code != 1 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("unknown batch: %d\n%s", r.code, r.stderr)
	}
}
