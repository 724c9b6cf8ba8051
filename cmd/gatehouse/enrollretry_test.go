package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
)

// TestEnrollResendsLostReply: when the enrollment's answer is lost (the
// server may have committed it), gatehouse enroll sends the very same
// request again, same token and same CSR, which the server answers with the
// certificate it issued; a refusal is not resent.
func TestEnrollResendsLostReply(t *testing.T) {
	saved := enrollRetryDelays
	enrollRetryDelays = []time.Duration{time.Millisecond, time.Millisecond}
	t.Cleanup(func() { enrollRetryDelays = saved })

	var (
		mu     sync.Mutex
		bodies []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		if n == 1 {
			// Committed, but the reply never arrives.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(apitypes.EnrollResponse{DeviceID: "cam-1", Certificate: "CERT", Chain: "CHAIN",
			Serial: "01", NotAfter: time.Now().Add(time.Hour)})
	}))
	t.Cleanup(srv.Close)

	out := filepath.Join(t.TempDir(), "dev")
	res, err := runEnroll(srv.URL, "ghb_token", out, "cam-1", "P-256", "", false)
	if err != nil || res.DeviceID != "cam-1" {
		t.Fatalf("enroll: %+v %v", res, err)
	}
	if len(bodies) != 2 || bodies[0] != bodies[1] {
		t.Fatalf("%d requests, identical %v: want the same request twice", len(bodies), len(bodies) == 2 && bodies[0] == bodies[1])
	}
	if b, err := os.ReadFile(filepath.Join(out, deviceCertFile)); err != nil || string(b) != "CERT" {
		t.Fatalf("certificate file: %q %v", b, err)
	}

	// A refusal is final.
	bodies = nil
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		bodies = append(bodies, "x")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"error":{"code":"token_used","message":"bootstrap token was already used"}}`)
	}))
	t.Cleanup(refuse.Close)
	if _, err := runEnroll(refuse.URL, "ghb_token", filepath.Join(t.TempDir(), "d2"), "", "P-256", "", false); err == nil || len(bodies) != 1 {
		t.Fatalf("refused enrollment: %v after %d requests, want token_used after 1", err, len(bodies))
	}
}
