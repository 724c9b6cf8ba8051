package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestESTRoutes: EST answers sit outside /api, so the UI's catch-all must
// not take them, and every error there is text with its stable code (RFC
// 7030), a 401 with the Basic realm; never a 5xx for what a client sent.
func TestESTRoutes(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ui")) })
	s := newStack(t, testdb.SQLite(t), withTLS(), withUI(ui))
	plain := newStack(t, testdb.SQLite(t))
	big := strings.Repeat("A", 80<<10)
	for _, tc := range []struct {
		name         string
		on           *stack
		method, path string
		body, ct     string
		status       int
		code         string
	}{
		{"over http", plain, "GET", "/.well-known/est/cacerts", "", "", 403, "tls_required"},
		{"wrong method", s, "GET", "/.well-known/est/simpleenroll", "", "", 405, "method_not_allowed"},
		{"no such operation", s, "GET", "/.well-known/est/line/fullcmc", "", "", 404, "not_found"},
		{"NUL in the label", s, "GET", "/.well-known/est/a%00b/cacerts", "", "", 400, "invalid_argument"},
		{"unknown label", s, "GET", "/.well-known/est/nope/csrattrs", "", "", 404, "not_found"},
		{"no credentials", s, "POST", "/.well-known/est/simpleenroll", "AAAA", "application/pkcs10", 401, "unauthenticated"},
		{"body too large", s, "POST", "/.well-known/est/simplereenroll", big, "application/pkcs10", 413, "body_too_large"},
		{"serverkeygen without credentials", s, "POST", "/.well-known/est/serverkeygen", "AAAA", "application/pkcs10", 401, "unauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.on.send(t, request{method: tc.method, path: tc.path, body: strings.NewReader(tc.body), contentType: tc.ct})
			if r.status != tc.status || !strings.HasPrefix(string(r.body), tc.code+": ") ||
				!strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Fatalf("%d %q %q, want %d %s as text", r.status, r.header.Get("Content-Type"), r.body, tc.status, tc.code)
			}
			if got := r.header.Get("WWW-Authenticate"); (r.status == 401) != (got == `Basic realm="gatehouse-est"`) {
				t.Errorf("status %d with WWW-Authenticate %q", r.status, got)
			}
		})
	}
}
