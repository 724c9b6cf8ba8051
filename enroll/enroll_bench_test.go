package enroll_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/inventory"
)

// One environment serves every benchmark, so BareSign and Enroll measure
// the same CA, the same SQLite file and the same profile. It lives in a
// temp dir that TestMain removes.
var (
	benchOnce sync.Once
	benchDir  string
	bench     *env
	benchCSRs []string       // distinct P-256 CSRs, PEM
	benchReq  ca.LeafRequest // the fixed request BareSign signs
	benchErr  error
	benchCSR  *x509.CertificateRequest
)

const benchCSRPool = 256

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func benchEnv(b *testing.B) *env {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "gatehouse-bench-")
		if benchErr != nil {
			return
		}
		bench = newEnv(b, benchDir, nil)
		for range benchCSRPool {
			benchCSRs = append(benchCSRs, testpki.CSRPEM(b, testpki.Key(b, "P-256")))
		}
		benchCSR, benchErr = enroll.ParseCSR([]byte(benchCSRs[0]))
		p := inventory.DefaultProfile()
		benchReq = ca.LeafRequest{CSR: benchCSR, Fleet: "default", DeviceID: "bench-device", Validity: p.Validity, Roles: p.Roles}
	})
	if benchErr != nil || bench == nil {
		b.Fatalf("benchmark environment: %v", benchErr)
	}
	return bench
}

// reportCPU adds the CPU time spent since start, per op, as cpu-ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// tokens creates n fresh bootstrap tokens, in batches of at most the service's limit.
func (e *env) tokens(b *testing.B, n int) []string {
	b.Helper()
	out := make([]string, 0, n)
	for len(out) < n {
		k := min(n-len(out), 100000)
		batch, err := e.svc.CreateBatch(context.Background(), enroll.BatchRequest{Fleet: "default", Profile: "default",
			Count: k, TTL: 24 * time.Hour, Actor: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range batch.Tokens {
			out = append(out, t.Token)
		}
	}
	return out
}

// BenchmarkBareSign is the authority's sign rate: ca.CA.Issue of one fixed,
// parsed CSR, nothing else.
func BenchmarkBareSign(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, cpuTime())
	for range b.N {
		if _, err := e.ca.Issue(ctx, benchReq); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareSignParallel(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, cpuTime())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.ca.Issue(ctx, benchReq); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEnroll is the full first enrollment: token lookup, CSR parse and
// signature check, profile and key policy, sign, and the commit that spends
// the token and records device and certificate, plus the audit event.
func BenchmarkEnroll(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	toks := e.tokens(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, cpuTime())
	for i := range b.N {
		if _, err := e.svc.Enroll(ctx, enroll.Request{Token: toks[i], CSR: []byte(benchCSRs[i%benchCSRPool])}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnrollParallel(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	toks := e.tokens(b, b.N)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, cpuTime())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1) - 1)
			if _, err := e.svc.Enroll(ctx, enroll.Request{Token: toks[i], CSR: []byte(benchCSRs[i%benchCSRPool])}); err != nil {
				b.Error(fmt.Errorf("enroll %d: %w", i, err))
				return
			}
		}
	})
}
