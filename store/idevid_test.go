package store_test

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestIDevIDVendors is the vendor registry's suite, on both databases.
func TestIDevIDVendors(t *testing.T) {
	onEveryBackend(t, []backendCase{
		{"CRUD", testIDevIDVendorCRUD},
		{"CRLRollbackRefused", testIDevIDVendorCRLRollback},
		{"CRLRace", testIDevIDVendorCRLRace},
		{"AllowList", testIDevIDAllowList},
		{"DeleteCascades", testIDevIDVendorDeleteCascades},
		{"AuditInTransaction", testIDevIDVendorAuditInTransaction},
	})
}

func vendor(name string) store.IDevIDVendor {
	return store.IDevIDVendor{Fleet: fleet, Name: name, Profile: profile, AnchorsPEM: "ANCHORS", IntermediatesPEM: "INTS",
		IDFrom: "serial_number", IDPrefix: "acme-", RequireAllowList: true}
}

func auditOf(action string) *store.AuditEvent {
	return &store.AuditEvent{Actor: "test", Action: action, ObjectType: "idevid_vendor", ObjectID: fleet + "/acme"}
}

func testIDevIDVendorCRUD(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := seeded(t, backend)
	missingFleet, missingProfile := vendor("acme"), vendor("acme")
	missingFleet.Fleet, missingProfile.Profile = "nofleet", "noprofile"
	_, err := s.CreateIDevIDVendor(ctx, missingFleet, nil)
	wantCode(t, err, fault.NotFound)
	_, err = s.CreateIDevIDVendor(ctx, missingProfile, nil)
	wantCode(t, err, fault.NotFound)

	got := must(s.CreateIDevIDVendor(ctx, vendor("acme"), auditOf("idevid_vendor.create")))(t)
	want := vendor("acme")
	want.CreatedAt, want.UpdatedAt = base, base
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("created %+v, want %+v", got, want)
	}
	if g := must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("read back %+v, want %+v", g, want)
	}
	_, err = s.CreateIDevIDVendor(ctx, vendor("acme"), nil)
	wantCode(t, err, fault.AlreadyExists)

	must(s.CreateFleet(ctx, store.Fleet{Name: "other"}, nil))(t)
	o := vendor("acme") // one name in two fleets: two vendors
	o.Fleet = "other"
	must(s.CreateIDevIDVendor(ctx, o, nil))(t)
	must(s.CreateIDevIDVendor(ctx, vendor("zeta"), nil))(t)
	names := func(vs []store.IDevIDVendor) (out []string) {
		for _, v := range vs {
			out = append(out, v.Fleet+"/"+v.Name)
		}
		return out
	}
	if got := names(must(s.ListIDevIDVendors(ctx, ""))(t)); fmt.Sprint(got) != "[factory/acme factory/zeta other/acme]" {
		t.Errorf("all vendors = %v", got)
	}
	if got := names(must(s.ListIDevIDVendors(ctx, "other"))(t)); fmt.Sprint(got) != "[other/acme]" {
		t.Errorf("vendors of other = %v", got)
	}

	// The fleet and the profile stay while a vendor refers to them.
	wantCode(t, s.DeleteFleet(ctx, "other", nil), fault.Conflict)
	wantCode(t, s.DeleteProfile(ctx, profile, nil), fault.Conflict)

	clk.Set(base.Add(time.Minute))
	must(s.CreateProfile(ctx, store.Profile{Name: "p2", KeyTypes: []string{"ecdsa-p256"}, Validity: time.Hour}, nil))(t)
	up := vendor("acme")
	up.Profile, up.AnchorsPEM, up.IntermediatesPEM, up.IDFrom, up.IDPrefix = "p2", "A2", "", "cn", ""
	up.AllowReenroll, up.RequireAllowList = true, false
	g := must(s.UpdateIDevIDVendor(ctx, up, auditOf("idevid_vendor.update")))(t)
	if g.Profile != "p2" || g.AnchorsPEM != "A2" || g.IntermediatesPEM != "" || g.IDFrom != "cn" || g.IDPrefix != "" ||
		!g.AllowReenroll || g.RequireAllowList || !g.CreatedAt.Equal(base) || !g.UpdatedAt.Equal(base.Add(time.Minute)) {
		t.Errorf("updated = %+v", g)
	}
	// A change read before another's committed is refused, not written
	// over it; the version read now goes through.
	stale := g
	stale.UpdatedAt = base
	stale.IDPrefix = "lost-"
	_, err = s.UpdateIDevIDVendor(ctx, stale, nil)
	wantCode(t, err, fault.Conflict)
	fresh := g
	fresh.IDPrefix = "kept-"
	if g2 := must(s.UpdateIDevIDVendor(ctx, fresh, nil))(t); g2.IDPrefix != "kept-" || !g2.UpdatedAt.After(g.UpdatedAt) {
		t.Errorf("update of the version read = %+v", g2)
	}
	up.Profile = "nope"
	_, err = s.UpdateIDevIDVendor(ctx, up, nil)
	wantCode(t, err, fault.NotFound)
	up.Profile, up.Name = profile, "ghost"
	_, err = s.UpdateIDevIDVendor(ctx, up, nil)
	wantCode(t, err, fault.NotFound)

	noErr(t, s.DeleteIDevIDVendor(ctx, "other", "acme", auditOf("idevid_vendor.delete")))
	wantCode(t, s.DeleteIDevIDVendor(ctx, "other", "acme", nil), fault.NotFound)
	_, err = s.GetIDevIDVendor(ctx, "other", "acme")
	wantCode(t, err, fault.NotFound)
	noErr(t, s.DeleteFleet(ctx, "other", nil))

	for _, action := range []string{"idevid_vendor.create", "idevid_vendor.update", "idevid_vendor.delete"} {
		if es := must(s.ListAudit(ctx, store.AuditFilter{Action: action}))(t); len(es) != 1 {
			t.Errorf("%s: %d audit events, want 1", action, len(es))
		}
	}
}

func testIDevIDVendorCRLRollback(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
	put := func(issuer string, der string, n int64, this time.Time) error {
		var num *big.Int
		if n >= 0 {
			num = big.NewInt(n)
		}
		return s.PutIDevIDVendorCRL(ctx, fleet, "acme", issuer, []byte(der), num, this, auditOf("idevid_vendor.crl_import"))
	}
	crls := func() string {
		return fmt.Sprintf("%s", must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t).CRLs)
	}
	noErr(t, put("int", "int-5", 5, base))
	noErr(t, put("root", "root-1", 1, base))
	for _, c := range []struct {
		name      string
		der       string
		n         int64
		this      time.Time
		wantError bool
	}{
		{"lower number", "int-4", 4, base.Add(time.Hour), true},
		{"same number", "int-5b", 5, base.Add(time.Hour), true},
		{"higher number, earlier thisUpdate", "int-6", 6, base.Add(-time.Hour), true},
		{"no number, same thisUpdate", "int-x", -1, base, true},
		{"higher number", "int-7", 7, base.Add(time.Hour), false},
		{"no number, later thisUpdate", "int-x2", -1, base.Add(2 * time.Hour), false},
		{"numbered again, later", "int-8", 8, base.Add(3 * time.Hour), false},
		{"numbered, not later", "int-9", 9, base.Add(3 * time.Hour), false},
		{"number over 2^64", "int-big", -2, base.Add(4 * time.Hour), false},
		{"lower than over 2^64", "int-10", 10, base.Add(5 * time.Hour), true},
	} {
		var err error
		if c.n == -2 {
			big64 := new(big.Int).Lsh(big.NewInt(1), 100)
			err = s.PutIDevIDVendorCRL(ctx, fleet, "acme", "int", []byte(c.der), big64, c.this, nil)
		} else {
			err = put("int", c.der, c.n, c.this)
		}
		if c.wantError {
			if fault.CodeOf(err) != fault.Conflict {
				t.Errorf("%s: err = %v, want conflict", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if got := crls(); got != "[int-big root-1]" {
		t.Errorf("stored CRLs = %s, want [int-big root-1]", got)
	}
	tooBig := new(big.Int).Lsh(big.NewInt(1), 161)
	wantCode(t, s.PutIDevIDVendorCRL(ctx, fleet, "acme", "x", []byte("x"), tooBig, base, nil), fault.InvalidArgument)
	wantCode(t, s.PutIDevIDVendorCRL(ctx, fleet, "acme", "x", []byte("x"), big.NewInt(-1), base, nil), fault.InvalidArgument)
	wantCode(t, s.PutIDevIDVendorCRL(ctx, fleet, "ghost", "x", []byte("x"), big.NewInt(1), base, nil), fault.NotFound)
	// One audit event per stored list: 2 first, then 4 of the cases (the
	// one over 2^64 is stored without).
	if es := must(s.ListAudit(ctx, store.AuditFilter{Action: "idevid_vendor.crl_import"}))(t); len(es) != 6 {
		t.Errorf("%d crl_import audit events, want 6", len(es))
	}
}

// testIDevIDVendorCRLRace: imports of one issuer's CRLs numbered 1..n at
// once leave the newest stored, whatever the order they commit in.
func testIDevIDVendorCRLRace(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
	const n = 24
	errs := make([]error, n)
	testrace.Run(n, func(i int) {
		errs[i] = s.PutIDevIDVendorCRL(ctx, fleet, "acme", "int", []byte("crl-"+strconv.Itoa(i+1)), big.NewInt(int64(i+1)),
			base.Add(time.Duration(i)*time.Minute), nil)
	})
	stored := 0
	for i, err := range errs {
		switch {
		case err == nil:
			stored++
		case fault.CodeOf(err) != fault.Conflict:
			t.Errorf("import %d: %v", i+1, err)
		}
	}
	if err := errs[n-1]; err != nil {
		t.Errorf("the newest import failed: %v", err)
	}
	v := must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t)
	if len(v.CRLs) != 1 || string(v.CRLs[0]) != "crl-"+strconv.Itoa(n) {
		t.Fatalf("stored CRLs = %q after %d of %d imports succeeded, want only crl-%d", v.CRLs, stored, n, n)
	}
}

func testIDevIDAllowList(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
	must(s.CreateIDevIDVendor(ctx, vendor("other"), nil))(t)
	// 1000 serials, duplicates among them: not a power of two, so every
	// batch size of the insert is used.
	var serials []string
	for i := range 1000 {
		serials = append(serials, strconv.FormatInt(int64(i%997)+0x1000, 16))
	}
	if n := must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", serials, auditOf("idevid_vendor.allowlist_replace")))(t); n != 997 {
		t.Errorf("stored %d serials, want 997", n)
	}
	if v := must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t); v.AllowListSize != 997 {
		t.Errorf("AllowListSize = %d, want 997", v.AllowListSize)
	}
	allowed := func(name, serial string) bool { return must(s.IDevIDAllowed(ctx, fleet, name, serial))(t) }
	if !allowed("acme", "1000") || !allowed("acme", "13e4") || allowed("acme", "13e5") || allowed("other", "1000") {
		t.Error("allow-list lookups wrong")
	}
	must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", []string{"abc"}, nil))(t)
	if allowed("acme", "1000") || !allowed("acme", "abc") {
		t.Error("replacement kept the old list")
	}
	if v := must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t); v.AllowListSize != 1 {
		t.Errorf("AllowListSize = %d, want 1", v.AllowListSize)
	}
	if n := must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", nil, nil))(t); n != 0 || allowed("acme", "abc") {
		t.Errorf("empty replacement: %d stored", n)
	}
	_, err := s.ReplaceIDevIDAllowList(ctx, fleet, "ghost", []string{"1"}, nil)
	wantCode(t, err, fault.NotFound)
	// A cancelled replacement leaves the old list.
	must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", []string{"abc"}, nil))(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ReplaceIDevIDAllowList(cctx, fleet, "acme", serials, nil); err == nil {
		t.Error("a cancelled replacement succeeded")
	}
	if !allowed("acme", "abc") || allowed("acme", "1000") {
		t.Error("a cancelled replacement changed the list")
	}
}

func testIDevIDVendorDeleteCascades(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
	must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", []string{"1", "2"}, nil))(t)
	noErr(t, s.PutIDevIDVendorCRL(ctx, fleet, "acme", "int", []byte("crl"), big.NewInt(3), base, nil))
	noErr(t, s.DeleteIDevIDVendor(ctx, fleet, "acme", nil))
	// A new vendor of the same name starts empty: nothing of the old one's
	// lists is left to revoke or allow for it.
	v := must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
	v = must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t)
	if len(v.CRLs) != 0 || v.AllowListSize != 0 || must(s.IDevIDAllowed(ctx, fleet, "acme", "1"))(t) {
		t.Errorf("recreated vendor inherited lists: %+v", v)
	}
	// And a CRL numbered lower than the deleted vendor's is accepted.
	noErr(t, s.PutIDevIDVendorCRL(ctx, fleet, "acme", "int", []byte("crl"), big.NewInt(1), base, nil))
}

// testIDevIDVendorAuditInTransaction: when the audit insert fails, no
// vendor change is left, and a failed allow-list import leaves the old list.
func testIDevIDVendorAuditInTransaction(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)
	s := open(t, dsn, nil)
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"}, Validity: time.Hour}, nil))(t)
	must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
	must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", []string{"1", "2"}, nil))(t)
	noErr(t, s.PutIDevIDVendorCRL(ctx, fleet, "acme", "int", []byte("crl-3"), big.NewInt(3), base, nil))
	testdb.FailAuditInserts(t, dsn)
	ev := auditOf("x")

	_, err := s.CreateIDevIDVendor(ctx, vendor("new"), ev)
	if err == nil {
		t.Error("create committed without its audit event")
	}
	up := vendor("acme")
	up.AnchorsPEM = "CHANGED"
	if _, err := s.UpdateIDevIDVendor(ctx, up, ev); err == nil {
		t.Error("update committed without its audit event")
	}
	if err := s.PutIDevIDVendorCRL(ctx, fleet, "acme", "int", []byte("crl-4"), big.NewInt(4), base, ev); err == nil {
		t.Error("CRL import committed without its audit event")
	}
	if _, err := s.ReplaceIDevIDAllowList(ctx, fleet, "acme", []string{"3", "4", "5"}, ev); err == nil {
		t.Error("allow-list import committed without its audit event")
	}
	if err := s.DeleteIDevIDVendor(ctx, fleet, "acme", ev); err == nil {
		t.Error("delete committed without its audit event")
	}
	if _, err := s.GetIDevIDVendor(ctx, fleet, "new"); fault.CodeOf(err) != fault.NotFound {
		t.Errorf("vendor new: %v, want not found", err)
	}
	v := must(s.GetIDevIDVendor(ctx, fleet, "acme"))(t)
	if v.AnchorsPEM != "ANCHORS" || len(v.CRLs) != 1 || !bytes.Equal(v.CRLs[0], []byte("crl-3")) || v.AllowListSize != 2 {
		t.Errorf("vendor after failed changes: %+v", v)
	}
	for serial, want := range map[string]bool{"1": true, "2": true, "3": false} {
		if got := must(s.IDevIDAllowed(ctx, fleet, "acme", serial))(t); got != want {
			t.Errorf("serial %s allowed = %v, want %v", serial, got, want)
		}
	}
}

// TestIDevIDAllowListLarge replaces an allow-list of many serials on both
// databases and logs the time and the memory it took. It uses 20,000
// serials unless GATEHOUSE_TEST_ALLOWLIST_N says more (the sizing
// is 1,000,000: GATEHOUSE_TEST_ALLOWLIST_N=1000000).
func TestIDevIDAllowListLarge(t *testing.T) {
	n := 20000
	if v := os.Getenv("GATEHOUSE_TEST_ALLOWLIST_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("GATEHOUSE_TEST_ALLOWLIST_N=%q", v)
		}
	}
	serials := make([]string, n)
	for i := range serials {
		// 16-byte serials like a CA's, ascending as the service sorts them.
		serials[i] = fmt.Sprintf("7f%030x", i)
	}
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			s, _ := seeded(t, backend)
			must(s.CreateIDevIDVendor(ctx, vendor("acme"), nil))(t)
			for round := range 2 { // the second replaces a full list
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				start := time.Now()
				got := must(s.ReplaceIDevIDAllowList(ctx, fleet, "acme", serials, auditOf("idevid_vendor.allowlist_replace")))(t)
				took := time.Since(start)
				runtime.ReadMemStats(&after)
				if got != n {
					t.Fatalf("stored %d, want %d", got, n)
				}
				t.Logf("round %d: %d serials replaced in %s (%.0f/s), %d MiB allocated in all, heap %d MiB after",
					round+1, n, took.Round(time.Millisecond), float64(n)/took.Seconds(),
					(after.TotalAlloc-before.TotalAlloc)>>20, after.HeapAlloc>>20)
			}
			for _, i := range []int{0, n / 2, n - 1} {
				if !must(s.IDevIDAllowed(ctx, fleet, "acme", serials[i]))(t) {
					t.Errorf("serial %d not allowed", i)
				}
			}
		})
	}
}
