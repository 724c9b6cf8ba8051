package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

const e2eHookSecret = "e2e-hook-secret-0123456789"

// hookAllows asks the running binary's native hook, as a broker would.
func (g *gatehouse) hookAllows(t *testing.T, req map[string]any) bool {
	t.Helper()
	b, _ := json.Marshal(req)
	hr, err := http.NewRequest(http.MethodPost, "http://"+g.hooksAddr+"/hooks/v1/authorize", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Gatehouse-Hook-Secret", e2eHookSecret)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Allow bool }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Allow
}

// TestEnrollThenConnect is issue 9 item 10 against the binary, as a new
// user tries it: `gatehouse enroll`, then the device's first CONNECT and
// PUBLISH at once. The server's device poll runs every second; each of these
// requests comes within milliseconds of the enroll call, so only the
// enrollment refreshing the decision core explains the allows.
func TestEnrollThenConnect(t *testing.T) {
	g := newGatehouse(t)
	g.serve(t, "GATEHOUSE_HOOKS_SECRET="+e2eHookSecret)
	for i, tok := range g.tokens(t, "default", 5) {
		id := fmt.Sprintf("first-connect-%d", i)
		d := g.enroll(t, tok, id)
		if !g.hookAllows(t, map[string]any{"action": "connect", "client_id": id, "identity": id}) {
			t.Fatalf("%s: CONNECT right after `gatehouse enroll` returned is denied", id)
		}
		cert, err := os.ReadFile(d.cert)
		if err != nil {
			t.Fatal(err)
		}
		if !g.hookAllows(t, map[string]any{"action": "publish", "client_id": id, "certificate": string(cert),
			"topic": "fleets/default/devices/" + id + "/telemetry/t", "qos": 1}) {
			t.Fatalf("%s: PUBLISH with the new certificate right after enrolling is denied", id)
		}
	}
	if strings.Contains(g.logs.String(), "decision state is stale") {
		t.Errorf("a healthy server logged stale decisions:\n%s", g.logs.String())
	}
}

// TestServeRefusesBadMaxStaleness: a bound below the sync intervals (it
// would flap) or a negative one stops serve with a clear error.
func TestServeRefusesBadMaxStaleness(t *testing.T) {
	g := newGatehouse(t)
	for _, v := range []string{"1s", "-30s", "soon"} {
		r := g.run(t, []string{"GATEHOUSE_AUTHZ_MAX_STALENESS=" + v}, "serve", "--data-dir", g.data,
			"--api-addr", freeAddr(t), "--hooks-addr", freeAddr(t), "--diag-addr", freeAddr(t))
		if r.code == 0 || !strings.Contains(r.stderr, "authz.max_staleness") {
			t.Errorf("max_staleness %q: exit %d\n%s", v, r.code, r.stderr)
		}
	}
}
