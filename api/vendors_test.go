package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid/idevidtest"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/store"
)

const vendorsPath = "/api/v1/fleets/default/idevid-vendors"

// raw sends body with contentType and returns the reply, whatever its status.
func (s *stack) raw(t testing.TB, method, path, bearer, contentType string, body []byte) reply {
	t.Helper()
	return s.send(t, request{method: method, path: path, bearer: bearer, contentType: contentType, body: bytes.NewReader(body)})
}

// operatorToken adds a bearer token of role operator: below the admin
// role that vendor changes need.
func operatorToken(t testing.TB, s *stack) string {
	t.Helper()
	tok := secret.New(auth.TokenPrefix)
	if _, err := s.st.CreateAdminToken(context.Background(), store.AdminToken{Name: "operator", Hash: secret.Hash(tok),
		Role: string(auth.RoleOperator)}, nil); err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestVendorRoutes drives the vendor routes with good and bad bodies and
// every role, on both databases: bad PEM, CRL or CSV input is a 400
// invalid_argument naming the line, never a 5xx, and changes nothing.
func TestVendorRoutes(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) { testVendorRoutes(t, backend) })
	}
}

func testVendorRoutes(t *testing.T, backend string) {
	s := newStack(t, testdb.DSN(t, backend))
	operator := operatorToken(t, s)
	pki := idevidtest.NewVendor(t, "Acme")
	anchors, ints := string(pki.AnchorsPEM()), string(pki.IntermediatesPEM())
	leaf, _, _ := pki.Device(t, idevidtest.DeviceOptions{})
	good := map[string]any{"name": "acme", "profile": "default", "anchors_pem": anchors, "intermediates_pem": ints,
		"id_prefix": "acme-", "require_allowlist": true}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		m[k] = v
		return m
	}

	for _, c := range []struct {
		name   string
		path   string
		bearer string
		body   any
		status int
		code   fault.Code
		says   string
	}{
		{"no token", vendorsPath, "", good, 401, fault.Unauthenticated, ""},
		{"viewer", vendorsPath, s.viewer, good, 403, fault.PermissionDenied, ""},
		{"operator", vendorsPath, operator, good, 403, fault.PermissionDenied, ""},
		{"no anchors", vendorsPath, s.admin, with("anchors_pem", ""), 400, fault.InvalidArgument, "anchor"},
		{"garbage anchors", vendorsPath, s.admin, with("anchors_pem", "hello\n"), 400, fault.InvalidArgument, "line 1"},
		{"text after a certificate", vendorsPath, s.admin, with("anchors_pem", anchors+"\n\ntrailing words\n"), 400, fault.InvalidArgument,
			"line " + itoa(strings.Count(anchors, "\n")+3)},
		{"a key block", vendorsPath, s.admin, with("intermediates_pem", anchors+"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
			400, fault.InvalidArgument, "line " + itoa(strings.Count(anchors, "\n")+1)},
		{"bad base64", vendorsPath, s.admin, with("anchors_pem", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"), 400, fault.InvalidArgument, "line 1"},
		{"leaf as anchor", vendorsPath, s.admin, with("anchors_pem", string(idevidtest.CertPEM(leaf))), 400, fault.InvalidArgument, "not a CA"},
		{"bad id_from", vendorsPath, s.admin, with("id_from", "mac"), 400, fault.InvalidArgument, "id_from"},
		{"bad id_prefix", vendorsPath, s.admin, with("id_prefix", "../"), 400, fault.InvalidArgument, "id_prefix"},
		{"bad name", vendorsPath, s.admin, with("name", "a b"), 400, fault.InvalidArgument, "vendor name"},
		{"unknown field", vendorsPath, s.admin, with("anchors", anchors), 400, fault.InvalidArgument, "unknown field"},
		{"no such profile", vendorsPath, s.admin, with("profile", "nope"), 404, fault.NotFound, "profile nope"},
		{"no such fleet", "/api/v1/fleets/nope/idevid-vendors", s.admin, good, 404, fault.NotFound, "fleet nope"},
	} {
		t.Run("create/"+c.name, func(t *testing.T) {
			b, _ := json.Marshal(c.body)
			r := s.raw(t, "POST", c.path, c.bearer, "application/json", b)
			wantError(t, r, c.status, c.code)
			if !strings.Contains(r.String(), c.says) {
				t.Errorf("error does not say %q: %s", c.says, r)
			}
		})
	}
	if vs := listVendors(t, s, s.viewer); len(vs) != 0 {
		t.Fatalf("refused creations left vendors: %+v", vs)
	}

	var v apitypes.IDevIDVendor
	s.call(t, "POST", vendorsPath, s.admin, good, http.StatusCreated, &v)
	if v.Fleet != "default" || v.Name != "acme" || v.IDFrom != "serial_number" || v.IDPrefix != "acme-" || !v.RequireAllowList ||
		v.AllowReenroll || len(v.Anchors) != 1 || len(v.Intermediates) != 1 || len(v.CRLs) != 0 || v.AnchorsPEM != anchors {
		t.Fatalf("created %+v", v)
	}
	if a := v.Anchors[0]; a.Subject != pki.Root.Subject.String() || len(a.Fingerprint) != 64 || !a.NotAfter.Equal(pki.Root.NotAfter.UTC()) {
		t.Errorf("anchor %+v", a)
	}
	wantError(t, s.raw(t, "POST", vendorsPath, s.admin, "application/json", mustJSON(t, good)), 409, fault.AlreadyExists)

	// Lists show what the PEMs say, not the PEMs.
	r := s.call(t, "GET", vendorsPath, s.viewer, nil, http.StatusOK, nil)
	if strings.Contains(r.String(), "_pem") || strings.Contains(r.String(), "BEGIN CERTIFICATE") {
		t.Errorf("the list carries PEMs: %s", r)
	}
	wantError(t, s.raw(t, "GET", "/api/v1/fleets/nope/idevid-vendors", s.viewer, "", nil), 404, fault.NotFound)
	wantError(t, s.raw(t, "GET", vendorsPath+"/ghost", s.viewer, "", nil), 404, fault.NotFound)

	// PATCH changes what is sent, refuses bad PEM without a change.
	one := vendorsPath + "/acme"
	s.call(t, "PATCH", one, s.admin, map[string]any{"allow_reenroll": true, "id_from": "cn"}, http.StatusOK, &v)
	if !v.AllowReenroll || v.IDFrom != "cn" || v.IDPrefix != "acme-" || !v.RequireAllowList {
		t.Errorf("patched %+v", v)
	}
	wantError(t, s.raw(t, "PATCH", one, s.admin, "application/json", []byte(`{"anchors_pem":"x"}`)), 400, fault.InvalidArgument)
	wantError(t, s.raw(t, "PATCH", one, operator, "application/json", []byte(`{}`)), 403, fault.PermissionDenied)
	wantError(t, s.raw(t, "PATCH", vendorsPath+"/ghost", s.admin, "application/json", []byte(`{}`)), 404, fault.NotFound)
	s.call(t, "GET", one, s.viewer, nil, http.StatusOK, &v)
	if v.AnchorsPEM != anchors {
		t.Error("a refused PATCH changed the anchors")
	}

	testVendorCRLs(t, s, pki, one)
	testVendorAllowList(t, s, one)

	s.call(t, "DELETE", one, s.admin, nil, http.StatusNoContent, nil)
	wantError(t, s.raw(t, "GET", one, s.viewer, "", nil), 404, fault.NotFound)
	wantError(t, s.raw(t, "DELETE", one, s.admin, "", nil), 404, fault.NotFound)
	for _, action := range []string{"idevid_vendor.create", "idevid_vendor.update", "idevid_vendor.crl_import",
		"idevid_vendor.allowlist_replace", "idevid_vendor.delete"} {
		es, err := s.st.ListAudit(context.Background(), store.AuditFilter{Action: action})
		if err != nil || len(es) == 0 || es[0].ObjectID != "default/acme" || es[0].Actor == "" {
			t.Errorf("%s audit: %+v %v", action, es, err)
		}
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func listVendors(t *testing.T, s *stack, bearer string) []apitypes.IDevIDVendor {
	t.Helper()
	var l apitypes.IDevIDVendorList
	s.call(t, "GET", vendorsPath, bearer, nil, http.StatusOK, &l)
	return l.Vendors
}

func testVendorCRLs(t *testing.T, s *stack, pki *idevidtest.VendorPKI, one string) {
	now := time.Now()
	first := pki.LeafCRL(t, []*big.Int{big.NewInt(7)}, now.Add(-time.Minute), now.Add(24*time.Hour))
	second := pki.LeafCRL(t, []*big.Int{big.NewInt(7), big.NewInt(8)}, now, now.Add(24*time.Hour))
	var crl apitypes.VendorCRL
	r := s.raw(t, "PUT", one+"/crls", s.admin, "application/pkix-crl", first)
	if r.status != 200 || json.Unmarshal(r.body, &crl) != nil {
		t.Fatalf("DER CRL: %d %s", r.status, r)
	}
	if crl.Issuer != pki.Intermediate.Subject.String() || crl.Number != idevidtest.ParseCRL(t, first).Number.String() ||
		crl.Entries != 1 || crl.Stale || crl.NextUpdate.IsZero() {
		t.Errorf("imported %+v", crl)
	}
	if r := s.raw(t, "PUT", one+"/crls", s.admin, "application/x-pem-file", idevidtest.CRLPEM(second)); r.status != 200 {
		t.Fatalf("PEM CRL: %d %s", r.status, r)
	}
	// The older list again: a rollback, refused.
	wantError(t, s.raw(t, "PUT", one+"/crls", s.admin, "application/pkix-crl", first), 409, fault.Conflict)
	stranger := idevidtest.NewVendor(t, "Acme") // the same names, other keys
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"garbage", []byte("not a CRL")},
		{"empty", nil},
		{"a stranger's CRL", stranger.LeafCRL(t, nil, now, now.Add(time.Hour))},
		{"a certificate", pki.AnchorsPEM()},
	} {
		r := s.raw(t, "PUT", one+"/crls", s.admin, "application/pkix-crl", c.body)
		wantError(t, r, 400, fault.InvalidArgument)
	}
	wantError(t, s.raw(t, "PUT", one+"/crls", s.viewer, "application/pkix-crl", second), 403, fault.PermissionDenied)
	wantError(t, s.raw(t, "PUT", vendorsPath+"/ghost/crls", s.admin, "application/pkix-crl", second), 404, fault.NotFound)
	// A root CRL already past its nextUpdate is stored, and flagged stale.
	stale := pki.RootCRL(t, nil, now.Add(-2*time.Hour), now.Add(-time.Hour))
	r = s.raw(t, "PUT", one+"/crls", s.admin, "application/pkix-crl", stale)
	if r.status != 200 || json.Unmarshal(r.body, &crl) != nil || !crl.Stale {
		t.Errorf("stale CRL: %d %s", r.status, r)
	}
	var v apitypes.IDevIDVendor
	s.call(t, "GET", one, s.viewer, nil, http.StatusOK, &v)
	if len(v.CRLs) != 2 {
		t.Fatalf("vendor CRLs %+v, want the intermediate's newest and the root's", v.CRLs)
	}
	for _, c := range v.CRLs {
		if c.Issuer == pki.Intermediate.Subject.String() && (c.Entries != 2 || c.Stale) ||
			c.Issuer == pki.Root.Subject.String() && !c.Stale {
			t.Errorf("stored CRL %+v", c)
		}
	}
}

func testVendorAllowList(t *testing.T, s *stack, one string) {
	ctx := context.Background()
	put := func(ct, body string) reply { return s.raw(t, "PUT", one+"/allowlist", s.admin, ct, []byte(body)) }
	var res apitypes.AllowListResult
	r := put("text/csv", "serial,comment\n01:02,first\n0x0A,second\n102,the first again\n")
	if r.status != 200 || json.Unmarshal(r.body, &res) != nil || res.Count != 2 || res.Vendor != "acme" {
		t.Fatalf("allow-list: %d %s", r.status, r)
	}
	for _, c := range []struct{ name, ct, body, says string }{
		{"bad serial", "text/csv", "serial\n01\nzz\n", "line 3"},
		{"wrong type", "application/json", `{"serials":["01"]}`, "text/csv"},
	} {
		r := put(c.ct, c.body)
		wantError(t, r, 400, fault.InvalidArgument)
		if !strings.Contains(r.String(), c.says) {
			t.Errorf("%s: error does not say %q: %s", c.name, c.says, r)
		}
	}
	wantError(t, s.raw(t, "PUT", one+"/allowlist", s.viewer, "text/csv", []byte("01\n")), 403, fault.PermissionDenied)
	for serial, want := range map[string]bool{"102": true, "a": true, "1": false} {
		if got, err := s.st.IDevIDAllowed(ctx, "default", "acme", serial); err != nil || got != want {
			t.Errorf("serial %s allowed = %v (%v), want %v: a refused import changed the list?", serial, got, err, want)
		}
	}
	var v apitypes.IDevIDVendor
	s.call(t, "GET", one, s.viewer, nil, http.StatusOK, &v)
	if v.AllowListSize != 2 {
		t.Errorf("allowlist_size %d, want 2", v.AllowListSize)
	}
}

// TestVendorCRLRace: concurrent imports of one issuer's CRLs through the
// API keep the newest, whatever order they commit in, on both databases.
func TestVendorCRLRace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			pki := idevidtest.NewVendor(t, "Acme")
			s.call(t, "POST", vendorsPath, s.admin, map[string]any{"name": "acme", "profile": "default",
				"anchors_pem": string(pki.AnchorsPEM()), "intermediates_pem": string(pki.IntermediatesPEM())}, http.StatusCreated, nil)
			const n = 16
			now := time.Now()
			crls := make([][]byte, n)
			for i := range crls { // numbers increase with i
				crls[i] = pki.LeafCRL(t, nil, now.Add(time.Duration(i)*time.Second), now.Add(time.Hour))
			}
			status := make([]int, n)
			testrace.Run(n, func(i int) {
				status[i] = s.raw(t, "PUT", vendorsPath+"/acme/crls", s.admin, "application/pkix-crl", crls[i]).status
			})
			for i, st := range status {
				if st != 200 && st != 409 {
					t.Errorf("import %d: status %d", i, st)
				}
			}
			if status[n-1] != 200 {
				t.Errorf("the newest import answered %d", status[n-1])
			}
			var v apitypes.IDevIDVendor
			s.call(t, "GET", vendorsPath+"/acme", s.viewer, nil, http.StatusOK, &v)
			want := idevidtest.ParseCRL(t, crls[n-1]).Number.String()
			if len(v.CRLs) != 1 || v.CRLs[0].Number != want {
				t.Fatalf("stored %+v, want number %s (statuses %v)", v.CRLs, want, status)
			}
		})
	}
}

// TestVendorAllowListTooLarge: an allow-list body past its cap, sent
// without a length so the cap is met while the CSV is being parsed, is 413
// body_too_large, not a parse error of a cut line, and changes nothing.
func TestVendorAllowListTooLarge(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	pki := idevidtest.NewVendor(t, "Acme")
	s.call(t, "POST", vendorsPath, s.admin, map[string]any{"name": "acme", "profile": "default",
		"anchors_pem": string(pki.AnchorsPEM())}, http.StatusCreated, nil)
	pr, pw := io.Pipe()
	go func() {
		// Long lines: the cap is met long before the serial cap.
		line := []byte("01," + strings.Repeat("x", 64<<10) + "\n")
		for sent := 0; sent <= 130<<20; sent += len(line) {
			if _, err := pw.Write(line); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	r := s.send(t, request{method: "PUT", path: vendorsPath + "/acme/allowlist", bearer: s.admin, contentType: "text/csv",
		body: pr, chunked: true})
	_ = pr.CloseWithError(io.ErrClosedPipe)
	wantError(t, r, http.StatusRequestEntityTooLarge, fault.BodyTooLarge)
	if ok, err := s.st.IDevIDAllowed(context.Background(), "default", "acme", "1"); ok || err != nil {
		t.Errorf("an oversized import stored serials: %v %v", ok, err)
	}
}

// TestVendorOnePKIOneRegistration: a registration whose anchor or
// intermediate key is another registration's is refused, on create and on
// change: an IDevID goes to the first registration that trusts its chain,
// so a second would silently take (or lose) the first one's devices.
func TestVendorOnePKIOneRegistration(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			pki := idevidtest.NewVendor(t, "Acme")
			s.call(t, "POST", vendorsPath, s.admin, map[string]any{"name": "acme", "profile": "default",
				"anchors_pem": string(pki.AnchorsPEM()), "intermediates_pem": string(pki.IntermediatesPEM())}, http.StatusCreated, nil)
			// One vendor PKI, one registration: the same CA keys under another
			// name, or in another fleet, would silently share its devices.
			s.call(t, "POST", "/api/v1/fleets", s.admin, map[string]any{"name": "lab"}, http.StatusCreated, nil)
			twin := map[string]any{"name": "acme-twin", "profile": "default", "anchors_pem": string(pki.AnchorsPEM())}
			wantError(t, s.raw(t, "POST", "/api/v1/fleets/lab/idevid-vendors", s.admin, "application/json", mustJSON(t, twin)), 409, fault.Conflict)
			other := idevidtest.NewVendor(t, "Other")
			s.call(t, "POST", "/api/v1/fleets/lab/idevid-vendors", s.admin, map[string]any{"name": "other", "profile": "default",
				"anchors_pem": string(other.AnchorsPEM())}, http.StatusCreated, nil)
			// Nor by a change: adding acme's intermediate to another registration.
			wantError(t, s.raw(t, "PATCH", "/api/v1/fleets/lab/idevid-vendors/other", s.admin, "application/json",
				mustJSON(t, map[string]any{"intermediates_pem": string(pki.IntermediatesPEM())})), 409, fault.Conflict)
			// Nor by trusting another part of it: acme trusts the root and the
			// intermediate; its intermediate alone, as an anchor, is the same PKI.
			intOnly := map[string]any{"name": "acme-int", "profile": "default", "anchors_pem": string(pki.IntermediatesPEM())}
			wantError(t, s.raw(t, "POST", "/api/v1/fleets/lab/idevid-vendors", s.admin, "application/json", mustJSON(t, intOnly)), 409, fault.Conflict)
			// And the other way: a PKI registered by its root only, then a CA
			// it signed registered elsewhere.
			third := idevidtest.NewVendor(t, "Third")
			s.call(t, "POST", "/api/v1/fleets/lab/idevid-vendors", s.admin, map[string]any{"name": "third", "profile": "default",
				"anchors_pem": string(third.AnchorsPEM())}, http.StatusCreated, nil)
			wantError(t, s.raw(t, "POST", vendorsPath, s.admin, "application/json", mustJSON(t, map[string]any{"name": "third-int",
				"profile": "default", "anchors_pem": string(third.IntermediatesPEM())})), 409, fault.Conflict)
		})
	}
}
