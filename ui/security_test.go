package ui

import (
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSecurityHeaders(t *testing.T) {
	for _, tc := range []struct {
		path, cache string
	}{
		{"/", "no-store"},
		{"/app.js", "no-cache"},
		{"/app.css", "no-cache"},
		{"/pages/devices.js", "no-cache"},
	} {
		resp := get(t, tc.path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", tc.path, resp.StatusCode)
		}
		want := map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "no-referrer",
			"Cache-Control":          tc.cache,
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET %s: %s %q, want %q", tc.path, k, got, v)
			}
		}
		csp := map[string]string{}
		for _, d := range strings.Split(resp.Header.Get("Content-Security-Policy"), ";") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), " ")
			csp[name] = val
		}
		for name, val := range map[string]string{
			"default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "object-src": "'none'",
			"frame-ancestors": "'none'", "base-uri": "'none'", "form-action": "'self'",
		} {
			if csp[name] != val {
				t.Errorf("GET %s: CSP %s is %q, want %q (policy %q)", tc.path, name, csp[name], val, resp.Header.Get("Content-Security-Policy"))
			}
		}
		for name, val := range csp {
			if strings.Contains(val, "unsafe-") || strings.Contains(val, "*") || strings.Contains(val, "data:") {
				t.Errorf("GET %s: CSP %s %q loosens the policy", tc.path, name, val)
			}
		}
	}
}

// The UI must run under the CSP above and never turn server data into
// markup or script: no inline script, handler or style attribute, no HTML
// sinks, no string-evaluating calls, and every link built by h() goes
// through href() or is a same-origin literal.
func TestNoUnsafeSinks(t *testing.T) {
	forbidden := []struct {
		re   *regexp.Regexp
		why  string
		html bool // applies to index.html only
	}{
		{regexp.MustCompile(`\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser|srcdoc`), "HTML sink", false},
		{regexp.MustCompile(`\beval\s*\(|new\s+Function\s*\(|setTimeout\s*\(\s*['"\x60]|setInterval\s*\(\s*['"\x60]`), "string evaluated as code", false},
		{regexp.MustCompile(`(?i)javascript:`), "javascript: URL", false},
		{regexp.MustCompile(`\bstyle\s*:\s*['"\x60{]|setAttribute\(\s*['"]style|setAttribute\(\s*['"]on|\.cssText\b`), "inline style or handler (blocked by the CSP)", false},
		{regexp.MustCompile(`(?i)\sstyle\s*=|\son[a-z]+\s*=|<style`), "inline style or handler (blocked by the CSP)", true},
	}
	// Every href: value in a page is href(...), a literal route hash or
	// path, or the blob URL of a download.
	hrefUse := regexp.MustCompile(`\bhref:\s*`)
	safeHref := regexp.MustCompile(`^(href\(|'#|'/[^/]|url\b)`)
	scriptTag := regexp.MustCompile(`(?i)<script[^>]*>`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".css") {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		src := string(b)
		isHTML := strings.HasSuffix(path, ".html")
		for _, f := range forbidden {
			if f.html != isHTML {
				continue
			}
			// Comments may name the sinks they avoid.
			for _, line := range strings.Split(src, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "//") || strings.HasPrefix(strings.TrimSpace(line), "*") {
					continue
				}
				if m := f.re.FindString(line); m != "" {
					t.Errorf("%s: %s: %q in %q", path, f.why, m, strings.TrimSpace(line))
				}
			}
		}
		for _, tag := range scriptTag.FindAllString(src, -1) {
			if !strings.Contains(tag, " src=") {
				t.Errorf("%s: inline script %q (blocked by the CSP)", path, tag)
			}
		}
		for _, loc := range hrefUse.FindAllStringIndex(src, -1) {
			rest := src[loc[1]:min(loc[1]+40, len(src))]
			if !safeHref.MatchString(rest) {
				t.Errorf("%s: href built from %q: use href() or a same-origin literal", path, rest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// h() itself drops URL attributes that leave the origin and string event
// handlers, whatever a page passes it. Runs dom.js in Node with a minimal
// document; skipped where Node is not installed, except in CI (make test
// installs it), where a skip would hide the check.
func TestDomDropsUnsafeAttributes(t *testing.T) {
	dir := nodeDir(t, "dom.js")
	script := `
class El { constructor(t) { this.tag = t; this.attrs = {}; this.listeners = {}; this.dataset = {}; this.children = []; }
  setAttribute(k, v) { this.attrs[k] = v; } addEventListener(k, f) { this.listeners[k] = f; } append(...c) { this.children.push(...c); } }
globalThis.Node = El;
globalThis.document = { createElement: (t) => new El(t) };
const { h } = await import('./dom.js');
const cases = [
  ['href', '#/devices/x', true], ['href', '/crl.pem', true], ['href', 'blob:http://x/1', true],
  ['href', 'javascript:alert(1)', false], ['href', ' javascript:alert(1)', false], ['href', 'JaVaScRiPt:alert(1)', false],
  ['href', 'data:text/html,<script>alert(1)</script>', false], ['href', '//evil.example/', false],
  ['href', '/\\evil.example/', false], ['href', 'https://evil.example/', false], ['src', 'https://evil.example/x.js', false],
  ['action', 'https://evil.example/', false], ['onclick', 'alert(1)', false],
];
const bad = [];
for (const [k, v, keep] of cases) {
  const el = h('a', { [k]: v });
  if ((k in el.attrs) !== keep) bad.push(k + '=' + v + (keep ? ' dropped' : ' kept'));
}
const fn = () => {};
if (h('a', { onclick: fn }).listeners.click !== fn) bad.push('function handler not attached');
console.log(bad.length ? 'FAIL ' + bad.join('; ') : 'OK');
`
	runNode(t, dir, script)
}

// nodeDir copies UI modules into a temp dir that Node loads as ES modules
// (package.json says so), under their own names, so their imports resolve. Without Node the test skips, except in CI (make
// test installs it), where a skip would hide the check.
func nodeDir(t *testing.T, modules ...string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed (apt-get install nodejs); CI must run this test")
		}
		t.Skip("node not installed")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"type": "module"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		b, err := fs.ReadFile(static, "static/"+m)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, m), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runNode runs script as a module in dir and fails unless it prints OK.
func runNode(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("node", "--input-type=module", "-e", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Fatalf("node: %v\n%s", err, out)
	}
}

// Sanity: the test helpers above reach the real handler.
var _ http.Handler = Handler()

// A form holding a password posts if it is ever submitted natively (script
// failed before preventDefault): a GET would put the password in the URL,
// the history and the server's access log.
func TestPasswordFormsPost(t *testing.T) {
	pw := regexp.MustCompile(`autocomplete:\s*'(current|new)-password'`)
	pages, err := fs.Glob(static, "static/pages/*.js")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pages {
		b, _ := fs.ReadFile(static, p)
		src := string(b)
		if !pw.MatchString(src) {
			continue
		}
		n++
		i := strings.Index(src, "h('form', {")
		if i < 0 {
			t.Errorf("%s: password input outside an h('form') form", p)
			continue
		}
		head := src[i:min(i+300, len(src))]
		if !strings.Contains(head, "method: 'post'") {
			t.Errorf("%s: password form without method: 'post': %q", p, head)
		}
	}
	if n < 3 {
		t.Fatalf("only %d pages with password forms found", n)
	}
}
