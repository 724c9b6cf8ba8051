package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
)

// The web UI driven by a real headless Chromium against the real binary:
// the operator journeys of issue 5, with a screenshot of every main page.
//
// Chromium calls home by itself; it is pinned to loopback with a proxy on a
// closed port and a resolver that resolves nothing but 127.0.0.1.

// chromiumPath finds the browser; without one the test skips, except in CI
// where a missing browser is a broken setup.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GATEHOUSE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium); CI must run the browser tests")
	}
	t.Skip("chromium not installed; set GATEHOUSE_CHROMIUM or install Debian's chromium")
	return ""
}

// closedPort returns a loopback port nothing listens on, checked by dialing.
func closedPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		addr := freeAddr(t)
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			continue
		}
		return addr
	}
	t.Fatal("no closed loopback port found")
	return ""
}

// artifactsDir is where screenshots go: $GATEHOUSE_UI_ARTIFACTS, else
// artifacts/ui at the repository root (ignored by git).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GATEHOUSE_UI_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts", "ui")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	return abs
}

// uiSession is a browser tab on the UI plus the helpers the journeys use.
type uiSession struct {
	t         *testing.T
	ctx       context.Context
	server    string
	artifacts string
}

func (u *uiSession) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		u.shot("failure-" + regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(what, "-"))
		u.t.Fatalf("%s: %v", what, err)
	}
}

// visit routes the single-page app to hash, waits for that render to finish
// (not an earlier page's), then for sel.
func (u *uiSession) visit(hash, sel string) {
	u.t.Helper()
	u.rerendered("visit "+hash, chromedp.Evaluate[chromedp.Void](`(() => { const h = `+jsString(hash)+
		`; if (location.hash === h) window.dispatchEvent(new HashChangeEvent('hashchange')); else location.hash = h; })()`),
		chromedp.WaitVisible(chromedp.CSS(sel)))
}

func (u *uiSession) shot(name string) {
	u.t.Helper()
	png, err := chromedp.Run(u.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		u.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(u.artifacts, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		u.t.Fatal(err)
	}
}

func (u *uiSession) text(sel string) string {
	u.t.Helper()
	u.run("wait for "+sel, chromedp.WaitReady(chromedp.CSS(sel)))
	s, err := chromedp.Run(u.ctx, chromedp.Evaluate[*string](`(() => { const e = document.querySelector(`+jsString(sel)+`); return e ? e.textContent : null; })()`))
	if err != nil || s == nil {
		u.shot("failure-read")
		u.t.Fatalf("read %s: %v (element gone)", sel, err)
	}
	return strings.TrimSpace(*s)
}

func (u *uiSession) count(sel string) int {
	u.t.Helper()
	n, err := chromedp.Run(u.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
	if err != nil {
		u.t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

// visible reports whether sel is rendered where a user sees it: its computed
// style shows it, it takes part in layout (offsetParent) and it has an area.
// Being in the DOM says nothing, and neither does the hidden attribute: an
// author rule like "nav { display: flex }" overrides it.
func (u *uiSession) visible(sel string) bool {
	u.t.Helper()
	v, err := chromedp.Run(u.ctx, chromedp.Evaluate[bool](`(() => {
		const e = document.querySelector(`+jsString(sel)+`);
		if (!e) return false;
		const cs = getComputedStyle(e), r = e.getBoundingClientRect();
		return cs.display !== 'none' && cs.visibility !== 'hidden' && cs.opacity !== '0' &&
			e.offsetParent !== null && r.width > 0 && r.height > 0;
	})()`))
	if err != nil {
		u.t.Fatalf("visible %s: %v", sel, err)
	}
	return v
}

// wantVisible checks that each selector is, or is not, visible.
func (u *uiSession) wantVisible(want bool, sels ...string) {
	u.t.Helper()
	for _, sel := range sels {
		if got := u.visible(sel); got != want {
			hash, _ := chromedp.Run(u.ctx, chromedp.Evaluate[string](`location.hash`))
			u.shot("failure-visibility")
			u.t.Errorf("at %q: %s visible = %v, want %v", hash, sel, got, want)
		}
	}
}

// fetch runs fetch() in the page and returns the status and error code.
func (u *uiSession) fetch(js string) (int, string) {
	u.t.Helper()
	type result struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	res, err := chromedp.Run(u.ctx, chromedp.Evaluate[result](js+`.then(async r => { const b = await r.json().catch(() => ({})); return {status: r.status, code: (b.error && b.error.code) || ""}; })`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		u.t.Fatalf("fetch in the page: %v", err)
	}
	return res.Status, res.Code
}

// rerendered runs actions that end in a re-render of the page (a form that
// saves and reloads its page) and waits for the new render.
func (u *uiSession) rerendered(what string, actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	before, err := chromedp.Run(u.ctx, chromedp.Evaluate[string](`document.getElementById('main').dataset.ready || ''`))
	if err != nil {
		u.t.Fatal(err)
	}
	wait := chromedp.WaitVisible(chromedp.CSS(`main[data-ready]:not([data-ready="` + before + `"]):not([aria-busy])`))
	// The page's own waits (the last actions) come after the render.
	n := len(actions)
	if n > 0 && strings.HasPrefix(what, "visit ") {
		u.run(what, append(append(actions[:n-1:n-1], wait), actions[n-1])...)
		return
	}
	u.run(what, append(actions, wait)...)
}

// setSource replaces an editor's text the way typing would.
func (u *uiSession) setSource(id, text string) {
	u.t.Helper()
	u.run("set "+id, chromedp.Evaluate[chromedp.Void](`(() => { const t = document.getElementById(`+jsString(id)+`); t.value = `+jsString(text)+
		`; t.dispatchEvent(new Event('input', {bubbles: true})); })()`))
}

func (u *uiSession) login(user, password string) {
	u.t.Helper()
	u.visit("#/login", "#login-username")
	u.run("log in as "+user,
		chromedp.SetValue(chromedp.CSS("#login-username"), user),
		chromedp.SetValue(chromedp.CSS("#login-password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#device-counts")),
	)
	if got := u.text("#current-user"); got != user {
		u.t.Fatalf("header shows user %q, want %q", got, user)
	}
}

// waitKnown waits until the decision core knows device id.
func waitKnown(t *testing.T, g *gatehouse, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := g.call(t, http.MethodPost, "/api/v1/decisions/simulate", map[string]string{"device": id, "action": "connect"})
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the decision core does not know %s: simulate answers %d", id, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestWebUI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and drives a browser")
	}
	chromiumPath(t) // skip before building and starting anything
	g := newGatehouse(t)
	adminUser, adminPassword := g.adminUser, g.adminPassword
	// A session-kick webhook that nothing answers: the device page must
	// show the kick as undelivered, with its error, not hide it.
	g.serve(t, "GATEHOUSE_KICK_WEBHOOK_URL=http://"+closedPort(t)+"/kick",
		"GATEHOUSE_KICK_WEBHOOK_SECRET=0123456789abcdef0123456789abcdef")
	server := g.server

	downloads := t.TempDir()
	u, pageErrors := openBrowser(t, server)
	ctx := u.ctx
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	downloadsDone := make(chan string, 4)
	go func() {
		for ev, err := range chromedp.BrowserEvents(ctx, browser.DownloadProgress) {
			if err != nil {
				return
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				downloadsDone <- ev.GUID
			}
		}
	}()
	u.shot("01-login")
	// An anonymous visitor sees the sign-in form and nothing of the app.
	u.wantVisible(true, "#login-username", "#login-submit")
	u.wantVisible(false, "#nav", "#session", "#logout", "#current-user", `#nav a[data-testid="nav-dashboard"]`)

	// Wrong password: a visible error, still on the login page.
	u.run("bad login",
		chromedp.SetValue(chromedp.CSS("#login-username"), adminUser),
		chromedp.SetValue(chromedp.CSS("#login-password"), "not-the-password"),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	if code := u.text("#login-error strong"); code != "unauthenticated" {
		t.Errorf("bad login error code %q", code)
	}

	t.Run("login", func(t *testing.T) {
		u.t = t
		u.login(adminUser, adminPassword)
		if role := u.text("#current-role"); role != "admin" {
			t.Errorf("role shown %q", role)
		}
		u.wantVisible(true, "#nav", "#logout", "#current-user", `#nav a[data-testid="nav-devices"]`, `#nav a[data-testid="nav-users"]`)
		u.shot("02-dashboard-empty")
	})

	var tokens []string
	t.Run("token batch and CSV download", func(t *testing.T) {
		u.t = t
		u.visit("#/batches", "#batch-form")
		u.run("create batch",
			chromedp.SetValue(chromedp.CSS("#batch-count"), "3"),
			chromedp.SetValue(chromedp.CSS("#batch-ttl"), "2h"),
			chromedp.Click(chromedp.CSS("#batch-submit")),
			chromedp.WaitVisible(chromedp.CSS("#batch-download")),
			chromedp.WaitVisible(chromedp.CSS(`#batches-table tbody tr[data-row="0"]`)))
		u.shot("03-batch-created")
		u.wantVisible(true, `#flash [data-testid="flash-ok"]`)
		if f := u.text("#flash"); !strings.HasPrefix(f, "Token batch created") {
			t.Errorf("flash after creating a batch: %q", f)
		}
		u.run("download", chromedp.Click(chromedp.CSS("#batch-download")))
		var guid string
		select {
		case guid = <-downloadsDone:
		case <-time.After(20 * time.Second):
			t.Fatal("the CSV download did not complete")
		}
		b, err := os.ReadFile(filepath.Join(downloads, guid))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatalf("downloaded CSV: %v\n%s", err, b)
		}
		if len(rows) != 4 || strings.Join(rows[0], ",") != "token,device_id,batch_id,fleet,profile,expires_at" {
			t.Fatalf("downloaded CSV:\n%s", b)
		}
		for _, r := range rows[1:] {
			if !strings.HasPrefix(r[0], "ghb_") || r[3] != "default" || r[4] != "default" || r[2] == "" {
				t.Errorf("CSV row %q", r)
			}
			tokens = append(tokens, r[0])
		}
		if used, unused := u.text(`#batches-table tbody tr[data-row="0"] td[data-col="used"]`),
			u.text(`#batches-table tbody tr[data-row="0"] td[data-col="unused"]`); used != "0" || unused != "3" {
			t.Errorf("batch list used/unused = %s/%s, want 0/3", used, unused)
		}
		// The flash reported on this page; the next page does not repeat it.
		u.visit("#/devices", "#devices-table")
		u.wantVisible(false, "#flash .flash")
	})
	if len(tokens) != 3 {
		t.Fatal("no tokens to enroll with")
	}

	t.Run("enrolled devices are listed", func(t *testing.T) {
		u.t = t
		for i, id := range []string{"ui-sensor-1", "ui-sensor-2"} {
			g.enroll(t, tokens[i], id)
		}
		u.visit("#/devices?q=ui-sensor", `[data-testid="device-link-ui-sensor-1"]`)
		if n := u.count("#devices-table tbody tr[data-row]"); n != 2 {
			t.Errorf("devices listed: %d, want 2", n)
		}
		if st := u.text(`#devices-table tbody tr[data-row="0"] td[data-col="status"]`); st != "active" {
			t.Errorf("status shown %q", st)
		}
		u.shot("04-devices")
		u.visit("#/devices?q=nothing-matches", "#devices-table td.empty")
		// Label search: one device gets a label over the API.
		g.api(t, http.MethodPatch, "/api/v1/devices/ui-sensor-2", map[string]any{"labels": map[string]string{"room": "lab"}}, http.StatusOK, nil)
		u.visit("#/devices?label=room%3Dlab", `[data-testid="device-link-ui-sensor-2"]`)
		if n := u.count("#devices-table tbody tr[data-row]"); n != 1 {
			t.Errorf("devices with label room=lab: %d, want 1", n)
		}
		u.visit("#/batches", `#batches-table tbody tr[data-row="0"]`)
		if used := u.text(`#batches-table tbody tr[data-row="0"] td[data-col="used"]`); used != "2" {
			t.Errorf("batch used = %s after two enrollments", used)
		}
		// The decision core learns of new devices by polling (1 s); wait.
		for _, id := range []string{"ui-sensor-1", "ui-sensor-2"} {
			waitKnown(t, g, id)
		}
		// A broker asks about a publish outside the device's subtree: a deny,
		// which the dashboard lists among the recent denies.
		req, err := http.NewRequest("POST", "http://"+g.hooksAddr+"/hooks/emqx/authz", strings.NewReader(
			`{"clientid":"ui-sensor-2","cert_common_name":"ui-sensor-2","action":"publish","topic":"fleets/default/devices/ui-sensor-1/telemetry/t","qos":0,"retain":false}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gatehouse-Hook-Secret", g.hookSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		u.visit("#/", `#denies-table tbody tr[data-row="0"]`)
		if d, r := u.text(`#denies-table tr[data-row="0"] td[data-col="device"]`), u.text(`#denies-table tr[data-row="0"] td[data-col="reason"]`); d != "ui-sensor-2" || r != "deny no grant matches" {
			t.Errorf("recent deny shows device %q reason %q", d, r)
		}
		if n := u.text(`[data-testid="stat-active"] .stat-n`); n != "2" {
			t.Errorf("dashboard active count %q, want 2", n)
		}
		u.shot("05-dashboard")
	})

	policy, err := os.ReadFile(filepath.Join("..", "..", "policy", "default.rego"))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("..", "..", "policy", "default_test.rego"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("policy edit, validate at line, test, simulate, activate", func(t *testing.T) {
		u.t = t
		u.visit("#/policies/new?from=1", "#policy-source")
		lines := strings.Split(string(policy), "\n")
		broken := strings.Join(append(append(append([]string{}, lines[:13]...), `grants contains {"action": "publish" "filter": "x"}`), lines[13:]...), "\n")
		u.setSource("policy-source", broken)
		u.run("validate", chromedp.Click(chromedp.CSS("#policy-validate")), chromedp.WaitVisible(chromedp.CSS(`li[data-testid="problem"]`)))
		if line := u.text(`#policy-source-problems li[data-line]:first-child button`); !strings.HasPrefix(line, "Line 14") {
			t.Errorf("first problem located at %q, want line 14", line)
		}
		if n := u.count(`#policy-source-gutter .ln-err[data-line="14"]`); n != 1 {
			t.Errorf("gutter marks at line 14: %d", n)
		}
		if n := u.count(`#policy-source-gutter .ln-err`); n != 1 {
			t.Errorf("gutter marks %d lines, want only line 14", n)
		}
		u.shot("06-policy-syntax-error")

		// Fix it with a real change: a grant for a UI topic, and its test.
		fixed := string(policy) + "\n# Added from the web UI.\ngrants contains {\"action\": \"publish\", \"filter\": concat(\"/\", [own, \"ui\", \"#\"]), \"rule\": \"ui-demo\"}\n"
		fixedTests := string(tests) + "\ntest_ui_demo if {\n\t{\"action\": \"publish\", \"filter\": \"fleets/plant/devices/temp-1/ui/#\", \"rule\": \"ui-demo\"} in authz.grants with input as sensor\n}\n"
		u.setSource("policy-source", fixed)
		u.setSource("policy-tests", fixedTests)
		if n := u.count(`li[data-testid="problem"]`); n != 0 {
			t.Errorf("problems still shown after editing: %d", n)
		}
		u.run("save", chromedp.SetValue(chromedp.CSS("#policy-comment"), "ui-demo grant"),
			chromedp.Click(chromedp.CSS("#policy-save")),
			chromedp.WaitVisible(chromedp.CSS("#policy-run-tests")))
		if h := u.text("#page-title"); h != "Policy v2" {
			t.Fatalf("after save the page is %q", h)
		}
		u.run("run tests", chromedp.Click(chromedp.CSS("#policy-run-tests")), chromedp.WaitVisible(chromedp.CSS("#test-summary")))
		if s := u.text("#test-summary"); !strings.HasSuffix(s, " passed, 0 failed") || strings.HasPrefix(s, "0 ") {
			t.Errorf("test summary %q", s)
		}
		if n := u.count(`#test-results td[data-col="name"]`); n < 5 {
			t.Errorf("test rows %d", n)
		}
		u.shot("07-policy-tests")

		u.run("simulate allow",
			chromedp.SetValue(chromedp.CSS("#sim-device"), "ui-sensor-1"),
			chromedp.SetValue(chromedp.CSS("#sim-action"), "publish"),
			chromedp.SetValue(chromedp.CSS("#sim-topic"), "fleets/default/devices/ui-sensor-1/ui/hello"),
			chromedp.Click(chromedp.CSS("#sim-submit")),
			chromedp.WaitVisible(chromedp.CSS("#sim-result")))
		if v, r := u.text("#sim-verdict"), u.text("#sim-rule"); v != "ALLOW" || r != "ui-demo" {
			t.Errorf("simulated %s by rule %q, want ALLOW by ui-demo", v, r)
		}
		u.shot("08-policy-simulate")
		u.run("simulate deny",
			chromedp.SetValue(chromedp.CSS("#sim-topic"), "fleets/default/devices/ui-sensor-2/ui/hello"),
			chromedp.Click(chromedp.CSS("#sim-submit")),
			chromedp.WaitVisible(chromedp.CSS(`#sim-result[data-allow="false"]`)))
		if v, r := u.text("#sim-verdict"), u.text("#sim-reason"); v != "DENY" || r == "" {
			t.Errorf("simulated %s (%q), want DENY with a reason", v, r)
		}

		u.run("activate", chromedp.Click(chromedp.CSS("#policy-activate")),
			chromedp.WaitVisible(chromedp.CSS("#activate-dialog-confirm")),
			chromedp.Click(chromedp.CSS("#activate-dialog-confirm")),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash-activated-2"]`)))
		u.visit("#/policies", "#active-version")
		if v := u.text("#active-version"); v != "v2" {
			t.Errorf("active version shown %q", v)
		}
		u.shot("09-policies")
		u.visit("#/policies/diff?from=1&to=2", "#diff-output")
		if d := u.text("#diff-output"); !strings.Contains(d, "ui-demo") {
			t.Errorf("diff does not show the change:\n%s", d)
		}
		u.shot("10-policy-diff")

		// Roll back to v1 from the list, then forward again to v2.
		for _, v := range []string{"1", "2"} {
			u.visit("#/policies", `[data-testid="policy-activate-`+v+`"]`)
			u.run("activate v"+v, chromedp.Click(chromedp.CSS(`[data-testid="policy-activate-`+v+`"]`)),
				chromedp.WaitVisible(chromedp.CSS("#activate-dialog-confirm")),
				chromedp.Click(chromedp.CSS("#activate-dialog-confirm")),
				chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash-activated-`+v+`"]`)))
			u.visit("#/policies", "#active-version")
			if got := u.text("#active-version"); got != "v"+v {
				t.Errorf("after activating v%s the active version is %s", v, got)
			}
		}
	})

	t.Run("revoke a device", func(t *testing.T) {
		u.t = t
		u.visit("#/devices/ui-sensor-1", "#device-revoke")
		u.run("revoke",
			chromedp.Click(chromedp.CSS("#device-revoke")),
			chromedp.WaitVisible(chromedp.CSS("#revoke-reason")),
			chromedp.SetValue(chromedp.CSS("#revoke-reason"), "keyCompromise"),
			chromedp.SetValue(chromedp.CSS("#revoke-note"), "lost in the field"))
		u.shot("11-revoke-dialog")
		u.run("confirm", chromedp.Click(chromedp.CSS("#revoke-dialog-confirm")),
			chromedp.WaitVisible(chromedp.CSS(`#device-status-value .badge-revoked`)))
		if st := u.text("#device-status-value"); st != "revoked" {
			t.Errorf("status after revoke %q", st)
		}
		if n := u.count(`#certificates-table .badge-revoked`); n != 1 {
			t.Errorf("revoked certificates shown: %d", n)
		}
		u.shot("12-device-revoked")
		// The kick to the unreachable webhook is recorded and shown with
		// its delivery error (the first attempt runs at once).
		deadline := time.Now().Add(5 * time.Second)
		for {
			u.visit("#/devices/ui-sensor-1", `#sessions-table tbody tr[data-row="0"]`)
			if u.text(`#sessions-table tbody tr[data-row="0"] td[data-col="last_error"]`) != "" || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if b := u.text(`#sessions-table tbody tr[data-row="0"] td[data-col="broker"]`); b != "webhook" {
			t.Errorf("kick broker shown %q", b)
		}
		if st := u.text(`#sessions-table tbody tr[data-row="0"] td[data-col="status"]`); st != "pending" && st != "failed" {
			t.Errorf("kick to an unreachable webhook shown as %q", st)
		}
		if e := u.text(`#sessions-table tbody tr[data-row="0"] td[data-col="last_error"]`); !strings.Contains(e, "refused") {
			t.Errorf("kick error shown %q, want the connection error", e)
		}
		u.shot("12b-device-kick-status")
		u.visit("#/audit?action=device.revoke", `#audit-table tbody tr[data-row="0"]`)
		if obj := u.text(`#audit-table tbody tr[data-row="0"] td[data-col="object"]`); !strings.Contains(obj, "ui-sensor-1") {
			t.Errorf("audit row object %q", obj)
		}
		if actor := u.text(`#audit-table tbody tr[data-row="0"] td[data-col="actor"]`); !strings.Contains(actor, adminUser) {
			t.Errorf("audit actor %q does not name the user", actor)
		}
		u.visit("#/audit", `#audit-chain.badge-done`)
		if b := u.text(`#audit-chain`); !strings.Contains(b, "Chain verified") {
			t.Errorf("audit chain badge %q", b)
		}
		u.shot("13-audit")
		u.visit("#/revocations", `#kick-targets-table tbody tr[data-row="0"]`)
		// The kick targets' state is shown above the kicks (a webhook
		// cannot be checked; a failed RabbitMQ or EMQX check would be an
		// error line here).
		if b, st := u.text(`#kick-targets-table tbody tr[data-row="0"] td[data-col="broker"]`),
			u.text(`#kick-targets-table tbody tr[data-row="0"] td[data-col="status"]`); b != "webhook" || st != "unchecked" {
			t.Errorf("kick target shown as %q %q", b, st)
		}
		u.shot("14-revocations")
	})

	t.Run("fleets and profiles", func(t *testing.T) {
		u.t = t
		u.visit("#/fleets", "#fleet-form")
		u.wantVisible(false, "#fleet-cancel") // nothing to cancel yet
		u.rerendered("create fleet",
			chromedp.SetValue(chromedp.CSS("#fleet-name"), "lab"),
			chromedp.SetValue(chromedp.CSS("#fleet-description"), "test bench"),
			chromedp.Click(chromedp.CSS("#fleet-submit")))
		// The save reloads the list, and its flash comes along to it...
		u.wantVisible(true, `#flash [data-testid="flash-ok"]`)
		if f := u.text("#flash"); f != "Fleet lab created." {
			t.Errorf("flash after creating a fleet: %q", f)
		}
		// ...but not to the page after, however soon the user goes there.
		u.visit("#/profiles", "#profiles-table")
		u.wantVisible(false, "#flash .flash")
		u.visit("#/fleets", `[data-testid="fleet-edit-lab"]`)
		u.run("start editing", chromedp.Click(chromedp.CSS(`[data-testid="fleet-edit-lab"]`)))
		u.wantVisible(true, "#fleet-cancel")
		u.rerendered("edit fleet",
			chromedp.SetValue(chromedp.CSS("#fleet-description"), "bench two"),
			chromedp.Click(chromedp.CSS("#fleet-submit")))
		u.wantVisible(false, "#fleet-cancel")
		if !strings.Contains(u.text("#fleets-table tbody"), "bench two") {
			t.Errorf("fleet edit not shown: %s", u.text("#fleets-table tbody"))
		}
		u.shot("15-fleets")

		u.visit("#/profiles", `[data-testid="profile-edit-default"]`)
		u.rerendered("edit profile",
			chromedp.Click(chromedp.CSS(`[data-testid="profile-edit-default"]`)),
			chromedp.Click(chromedp.CSS("#profile-key-P-384")),
			chromedp.SetValue(chromedp.CSS("#profile-renew-window"), "240h"),
			chromedp.SetValue(chromedp.CSS("#profile-renew-after-expiry"), "30d"),
			chromedp.Click(chromedp.CSS("#profile-server-keygen")),
			chromedp.SetValue(chromedp.CSS("#profile-device-id-from"), "csr_serial_number"),
			chromedp.SetValue(chromedp.CSS("#profile-roles"), "telemetry, firmware"),
			chromedp.Click(chromedp.CSS("#profile-submit")))
		row := u.text(`#profiles-table tbody tr[data-row="0"]`)
		// Validity, window, grace, renew_after_expiry, server keygen and
		// device id source in that order.
		for _, want := range []string{"P-256, P-384", "720h240h1h720honcsr_serial_number", "telemetry, firmware"} {
			if !strings.Contains(row, want) {
				t.Errorf("profile row %q lacks %q", row, want)
			}
		}
		u.shot("16-profiles")
	})

	t.Run("vendors", func(t *testing.T) {
		u.t = t
		acme := idevidtest.NewVendor(t, "ACME")
		g.api(t, http.MethodPost, "/api/v1/fleets/default/idevid-vendors", map[string]any{"name": "acme", "profile": "default",
			"anchors_pem": string(acme.AnchorsPEM()), "intermediates_pem": string(acme.IntermediatesPEM()), "id_prefix": "acme-"},
			http.StatusCreated, nil)
		u.visit("#/fleets", `[data-testid="fleet-vendors-default"]`)
		u.rerendered("open vendors", chromedp.Click(chromedp.CSS(`[data-testid="fleet-vendors-default"]`)))
		u.wantVisible(true, "#vendors-table")
		row := u.text(`#vendors-table tbody tr[data-row="0"]`)
		fp := sha256.Sum256(acme.Root.Raw)
		for _, want := range []string{"acme", "acme-<serial_number>", acme.Root.Subject.String(), hex.EncodeToString(fp[:]),
			"once per IDevID", "not required, 0 serials"} {
			if !strings.Contains(row, want) {
				t.Errorf("vendor row %q lacks %q", row, want)
			}
		}
		// Within the page: the fingerprints wrap instead of widening the
		// table past the viewport.
		if n := u.count(`#vendors-table`); n != 1 {
			t.Fatalf("%d vendor tables", n)
		}
		fits, err := chromedp.Run(u.ctx, chromedp.Evaluate[bool](`document.querySelector('#vendors-table').getBoundingClientRect().right <= window.innerWidth`))
		if err != nil || !fits {
			t.Errorf("the vendors table runs past the viewport (%v)", err)
		}
		u.shot("22-vendors")
	})

	t.Run("device paging", func(t *testing.T) {
		u.t = t
		for i := range 55 {
			g.api(t, http.MethodPost, "/api/v1/devices", map[string]any{"id": fmt.Sprintf("pg-%03d", i), "fleet": "lab", "profile": "default"},
				http.StatusCreated, nil)
		}
		u.visit("#/devices?fleet=lab&status=pending", "#page-next")
		if n := u.count("#devices-table tbody tr[data-row]"); n != 50 {
			t.Errorf("first page: %d rows", n)
		}
		u.rerendered("next page", chromedp.Click(chromedp.CSS("#page-next")))
		if n, p := u.count("#devices-table tbody tr[data-row]"), u.text("#page-number"); n != 5 || p != "Page 2" {
			t.Errorf("second page: %d rows, %q", n, p)
		}
		if first := u.text(`#devices-table tbody tr[data-row="0"] td[data-col="id"]`); first != "pg-050" {
			t.Errorf("second page starts at %s", first)
		}
		if n := u.count("#page-next"); n != 0 {
			t.Error("the last page offers a next page")
		}
		u.rerendered("previous page", chromedp.Click(chromedp.CSS("#page-prev")))
		if p := u.text("#page-number"); p != "Page 1" {
			t.Errorf("back to %q", p)
		}
	})

	t.Run("revoke a token batch", func(t *testing.T) {
		u.t = t
		// A second lot, made over the API: one device enrolls from it.
		raw := g.api(t, http.MethodPost, "/api/v1/token-batches?format=csv",
			map[string]any{"fleet": "default", "profile": "default", "count": 2, "ttl": "1h"}, http.StatusCreated, nil)
		rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil || len(rows) != 3 {
			t.Fatalf("second batch: %v %v", err, rows)
		}
		batchID := rows[1][2]
		g.enroll(t, rows[1][0], "lot2-dev")
		u.visit("#/batches", `[data-testid="batch-revoke-`+batchID+`"]`)
		u.run("revoke batch",
			chromedp.Click(chromedp.CSS(`[data-testid="batch-revoke-`+batchID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS("#batch-revoke-reason")),
			chromedp.SetValue(chromedp.CSS("#batch-revoke-reason"), "affiliationChanged"),
			chromedp.Click(chromedp.CSS("#batch-revoke-dialog-confirm")),
			chromedp.WaitVisible(chromedp.CSS(`#job-progress[data-status="done"]`)))
		if p := u.text("#job-progress"); !strings.Contains(p, "1 of 1 devices (1 revoked)") {
			t.Errorf("job progress %q", p)
		}
		u.shot("18-batch-revoked")
		u.visit("#/devices/lot2-dev", `#device-status-value .badge-revoked`)
		u.visit("#/revocations", `#jobs-table tbody tr[data-row="0"]`)
	})

	t.Run("CSRF token required", func(t *testing.T) {
		u.t = t
		status, code := u.fetch(`fetch('/api/v1/fleets', {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'csrf-probe'})})`)
		if status != http.StatusForbidden || code != "csrf_failed" {
			t.Errorf("POST without CSRF token: %d %s, want 403 csrf_failed", status, code)
		}
		status, _ = u.fetch(`fetch('/api/v1/fleets/csrf-probe', {credentials: 'same-origin'})`)
		if status != http.StatusNotFound {
			t.Errorf("the refused POST created the fleet anyway: GET %d", status)
		}
	})

	t.Run("viewer cannot revoke", func(t *testing.T) {
		u.t = t
		// The admin makes the viewer on the Users page.
		u.visit("#/users", "#user-form")
		u.rerendered("create viewer",
			chromedp.SetValue(chromedp.CSS("#user-name"), "vera"),
			chromedp.SetValue(chromedp.CSS("#user-role"), "viewer"),
			chromedp.SetValue(chromedp.CSS("#user-password"), "viewer-password-123"),
			chromedp.Click(chromedp.CSS("#user-submit")))
		if v, err := chromedp.Run(u.ctx, chromedp.Value(chromedp.CSS(`[data-testid="user-role-vera"]`))); err != nil || v != "viewer" {
			t.Fatalf("users page shows vera as %q (%v)", v, err)
		}
		u.shot("19-users")
		u.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-username")))
		u.wantVisible(false, "#nav", "#session", "#logout")
		u.shot("19b-logged-out")
		u.login("vera", "viewer-password-123")
		u.wantVisible(true, "#nav", "#logout")
		u.wantVisible(false, `#nav a[data-testid="nav-users"]`)
		u.visit("#/devices/ui-sensor-2", `#device-denies-table tbody tr[data-row="0"]`)
		if n := u.count("#device-revoke, #device-suspend"); n != 0 {
			t.Errorf("viewer sees %d change buttons", n)
		}
		if n := u.count("#device-readonly"); n != 1 {
			t.Error("viewer page does not say it is read-only")
		}
		u.shot("17-viewer-device")
		// The server is the authority: a forced call, CSRF token and all, is refused.
		status, code := u.fetch(`fetch('/api/v1/session', {credentials: 'same-origin'}).then(r => r.json()).then(s =>
			fetch('/api/v1/devices/ui-sensor-2/revoke', {method: 'POST', credentials: 'same-origin',
				headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token}, body: JSON.stringify({reason: 'keyCompromise'})}))`)
		if status != http.StatusForbidden || code != "permission_denied" {
			t.Errorf("viewer revoke: %d %s, want 403 permission_denied", status, code)
		}
		u.visit("#/devices/ui-sensor-2", "#device-certificates")
		if st := u.text("#device-status-value"); st != "active" {
			t.Errorf("device status after the viewer's attempt: %q", st)
		}
		u.visit("#/batches", "#batches-table")
		if n := u.count("#batch-form"); n != 0 {
			t.Error("viewer sees the batch form")
		}
		u.visit("#/policies/2", "#policy-source")
		if n := u.count("#policy-save, #policy-activate"); n != 0 {
			t.Error("viewer sees policy save/activate")
		}
		if n := u.count(`#nav a[data-testid="nav-users"]:not([hidden])`); n != 0 {
			t.Error("viewer sees the Users link")
		}
		status, code = u.fetch(`fetch('/api/v1/users', {credentials: 'same-origin'})`)
		if status != http.StatusForbidden || code != "permission_denied" {
			t.Errorf("viewer GET /users: %d %s", status, code)
		}
	})

	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("errors in the page: %s", fmt.Sprint(errs))
	}
}

// openBrowser starts a headless Chromium pinned to loopback, opens the UI
// at server on its login page, and returns the session and a function
// listing the page's uncaught exceptions and console errors so far.
func openBrowser(t *testing.T, server string) (*uiSession, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("proxy-server", "http://"+closedPort(t)),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(bctx, 4*time.Minute)
	t.Cleanup(cancel)

	// The browser lives as long as the context of the first call: start it
	// here, so the per-step timeouts below bound steps, not the browser.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	u := &uiSession{t: t, ctx: ctx, server: server, artifacts: artifactsDir(t)}
	t.Logf("screenshots in %s", u.artifacts)
	u.run("open the UI", chromedp.Navigate(server+"/"), chromedp.WaitVisible(chromedp.CSS("#login-username")))

	// Uncaught exceptions and console errors fail the test at the end.
	var mu sync.Mutex
	var pageErrs []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			// Failed requests are logged as errors too; the journeys make
			// some on purpose (bad login, CSRF, 403, optional endpoints).
			// Anything else, a CSP violation say, is a fault.
			if m.Type == chromedp.ConsoleException || (m.Type == chromedp.ConsoleError && !strings.HasPrefix(m.Text, "Failed to load resource")) {
				mu.Lock()
				pageErrs = append(pageErrs, m.Text)
				mu.Unlock()
			}
		}
	}()
	return u, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(pageErrs)
	}
}
