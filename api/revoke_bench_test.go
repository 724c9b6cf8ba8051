package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// BenchmarkRevokeToDeny measures the "revoke → deny" path end to
// end on one replica: the revoke API call over HTTP (real api.Server, real
// store, real CA-issued device), then EMQX authz webhook requests over HTTP
// to the real hooks handler until one is a deny.
//
//   - decision: one plain webhook decision (an allow), the baseline.
//   - revoke-deny: one full cycle, the revoke call plus the webhook
//     decision(s) up to the first deny; return-to-deny-ns is the time from
//     the revoke call returning to that deny (goal ≤ 100 ms), and
//     extra-allows the allows seen after the call returned (must be 0).
//
// The CRL and session kicks are not wired here (they run after the core
// refresh and do not delay the deny; CRL generation is benchmarked in ca/).
//
//	go test ./api -run '^$' -bench RevokeToDeny -benchtime 200x
func BenchmarkRevokeToDeny(b *testing.B) {
	for _, backend := range testdb.All() {
		b.Run(backend, func(b *testing.B) {
			var core *authz.Authorizer
			var syncer *authzsync.Syncer
			s := newStack(b, testdb.DSN(b, backend), withPolicies(&core, &syncer))
			const hookSecret = "bench-hook-secret-0123456789"
			h, err := hooks.New(hooks.Config{Authorizer: core, Secret: hookSecret})
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(h)
			b.Cleanup(hs.Close)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			allow := func(b *testing.B, id string) bool {
				body := `{"clientid":"` + id + `","username":"` + id + `","cert_common_name":"` + id +
					`","action":"publish","topic":"fleets/default/devices/` + id + `/telemetry/t","qos":"1","retain":"false"}`
				req, err := http.NewRequest("POST", hs.URL+"/hooks/emqx/authz", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Gatehouse-Hook-Secret", hookSecret)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					b.Fatalf("webhook: %d %s", resp.StatusCode, out)
				case strings.Contains(string(out), `"allow"`):
					return true
				case strings.Contains(string(out), `"deny"`):
					return false
				}
				b.Fatalf("webhook answer %s", out)
				return false
			}
			enroll := func(b *testing.B, n int) []string {
				ids := make([]string, n)
				for i := range ids {
					enr, _, _ := s.enrollOK(b, s.token(b))
					ids[i] = enr.DeviceID
				}
				if _, err := syncer.Sync(b.Context()); err != nil {
					b.Fatal(err)
				}
				for _, id := range ids {
					if !allow(b, id) {
						b.Fatalf("%s denied before its revocation", id)
					}
				}
				return ids
			}

			b.Run("decision", func(b *testing.B) {
				id := enroll(b, 1)[0]
				b.ResetTimer()
				for range b.N {
					if !allow(b, id) {
						b.Fatal("denied")
					}
				}
			})

			b.Run("revoke-deny", func(b *testing.B) {
				ids := enroll(b, b.N)
				var toDeny, worst time.Duration
				extra := 0
				b.ResetTimer()
				for _, id := range ids {
					s.call(b, "POST", "/api/v1/devices/"+id+"/revoke", s.admin, map[string]any{"reason": "keyCompromise"}, 200, nil)
					returned := time.Now()
					for allow(b, id) {
						extra++
						if time.Since(returned) > 2*time.Second {
							b.Fatalf("%s still allowed 2s after its revocation returned", id)
						}
					}
					d := time.Since(returned)
					toDeny += d
					worst = max(worst, d)
				}
				b.StopTimer()
				b.ReportMetric(float64(toDeny.Nanoseconds())/float64(b.N), "return-to-deny-ns")
				b.ReportMetric(float64(worst.Nanoseconds()), "worst-return-to-deny-ns")
				b.ReportMetric(float64(extra), "extra-allows")
				if worst > 100*time.Millisecond {
					b.Errorf("revoke → deny took up to %v (goal ≤ 100 ms)", worst)
				}
			})
		})
	}
}
