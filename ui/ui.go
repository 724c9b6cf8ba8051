// Package ui serves the Gatehouse web UI from files embedded in the binary,
// so it works with no internet access and no CDN.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every UI response. Scripts and styles
// come only from the UI's own files: no inline script, event-handler
// attribute, style attribute or eval runs, so markup that ever slipped into
// the page could not execute. Nothing may frame the UI (clickjacking),
// change its base URL, or post a form elsewhere.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Handler serves the UI.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embed directive guarantees the directory; this cannot happen.
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		// The shell is never stored, so a signed-out browser's back button
		// or a shared machine's cache shows nothing. The modules carry no
		// version in their names: a browser must revalidate them, or after
		// an upgrade it would run old modules against a new API.
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			h.Set("Cache-Control", "no-store")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}
