package vendors_test

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

// lists records what the service hands the store.
type lists struct {
	serials []string
	audit   *store.AuditEvent
	peak    uint64 // heap in use when the store was called
}

func (l *lists) PutIDevIDVendorCRL(context.Context, string, string, string, []byte, *big.Int, time.Time, *store.AuditEvent) error {
	return nil
}

func (l *lists) ReplaceIDevIDAllowList(_ context.Context, _, _ string, serials []string, audit *store.AuditEvent) (int, error) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	l.serials, l.audit, l.peak = serials, audit, m.HeapAlloc
	return len(serials), nil
}

type registry struct{ vendors.Registry }

// csvLines streams an allow-list CSV of n serials (each twice: duplicates
// collapse) without holding it in memory.
func csvLines(n int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "serial,batch\n")
		for i := range 2 * n {
			_, _ = fmt.Fprintf(pw, "7F:%030X,lot-1\n", (i*7919)%n)
		}
		_ = pw.Close()
	}()
	return pr
}

// TestReplaceAllowList: the service hands the store each serial once,
// normalised and sorted, with an audit event that counts them and never
// lists them; it logs the time and heap of a large import (100,000 serials,
// GATEHOUSE_TEST_ALLOWLIST_N for more).
func TestReplaceAllowList(t *testing.T) {
	n := 100000
	if v := os.Getenv("GATEHOUSE_TEST_ALLOWLIST_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("GATEHOUSE_TEST_ALLOWLIST_N=%q", v)
		}
	}
	l := &lists{}
	s, err := vendors.New(vendors.Config{Registry: registry{}, Lists: l})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	start := time.Now()
	got, err := s.ReplaceAllowList(context.Background(), "alice", "f", "acme", csvLines(n))
	if err != nil || got != n {
		t.Fatalf("ReplaceAllowList = %d, %v; want %d", got, err, n)
	}
	t.Logf("%d serials (%d CSV lines) parsed, deduplicated and sorted in %s; heap %d MiB when handed to the store",
		n, 2*n, time.Since(start).Round(time.Millisecond), l.peak>>20)
	if !slices.IsSorted(l.serials) || len(slices.Compact(slices.Clone(l.serials))) != n || l.serials[0] != "7f"+fmt.Sprintf("%030x", 0) {
		t.Errorf("serials handed to the store are not the sorted distinct normalised list: %v…", l.serials[:3])
	}
	if a := l.audit; a == nil || a.Action != "idevid_vendor.allowlist_replace" || a.Detail != "serials="+strconv.Itoa(n) || a.ObjectID != "f/acme" {
		t.Errorf("audit %+v", a)
	}

	s, _ = vendors.New(vendors.Config{Registry: registry{}, Lists: l, MaxAllowList: 10})
	over := ""
	for i := range 11 {
		over += strconv.Itoa(i+1) + "\n"
	}
	if _, err := s.ReplaceAllowList(context.Background(), "alice", "f", "acme", strings.NewReader(over)); fault.CodeOf(err) != fault.InvalidArgument {
		t.Errorf("over the cap: %v, want invalid_argument", err)
	}
}
