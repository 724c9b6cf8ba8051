package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func TestServesShellAndModules(t *testing.T) {
	cases := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", `<script type="module" src="/app.js">`},
		{"/app.js", "text/javascript", "const ROUTES"},
		{"/api.js", "text/javascript", "X-CSRF-Token"},
		{"/app.css", "text/css", ".editor"},
		{"/pages/policy.js", "text/javascript", "/policies/validate"},
	}
	for _, c := range cases {
		resp := get(t, c.path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: %d %s, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains, strings.Contains(string(body), c.contains))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", c.path, csp)
		}
	}
	if resp := get(t, "/pages/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown file: %d", resp.StatusCode)
	}
}

// Every page the router names is embedded, and no file loads anything from
// another origin: the UI must work with no internet.
func TestPagesEmbeddedAndOffline(t *testing.T) {
	app, err := fs.ReadFile(static, "static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	pages := regexp.MustCompile(`page: '([a-z]+)'`).FindAllStringSubmatch(string(app), -1)
	if len(pages) < 10 {
		t.Fatalf("router names %d pages", len(pages))
	}
	for _, p := range pages {
		if _, err := fs.Stat(static, "static/pages/"+p[1]+".js"); err != nil {
			t.Errorf("route page %s: %v", p[1], err)
		}
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import\s+url\(|\bimport\s*\(?\s*["']https?:`)
	err = fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads from another origin: %q", path, m)
		}
		if strings.Contains(string(b), "innerHTML") && !strings.Contains(path, "dom.js") {
			t.Errorf("%s uses innerHTML; build elements with h()", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
