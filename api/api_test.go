package api_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/internal/testrace"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestEnrollHappyPath(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	before := time.Now()
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": 3, "ttl": "1h"})
	if len(b.Tokens) != 3 {
		t.Fatalf("%d tokens, want 3", len(b.Tokens))
	}
	seen := map[string]bool{}
	for _, tk := range b.Tokens {
		if !strings.HasPrefix(tk.Token, enroll.BootstrapPrefix) || len(tk.Token) < 40 || seen[tk.Token] || tk.DeviceID != "" {
			t.Fatalf("bad or repeated token %+v", tk)
		}
		seen[tk.Token] = true
	}
	if bb := b.Batch; bb.Fleet != "default" || bb.Profile != "default" || bb.Count != 3 || bb.Used != 0 ||
		bb.CreatedBy != "token:admin" || bb.ExpiresAt.Before(before.Add(time.Hour-time.Second)) ||
		bb.ExpiresAt.After(time.Now().Add(time.Hour+time.Second)) {
		t.Fatalf("batch %+v", bb)
	}

	key := testpki.Key(t, "P-256")
	var got apitypes.EnrollResponse
	s.call(t, http.MethodPost, "/api/v1/enroll", "", apitypes.EnrollRequest{Token: b.Tokens[0].Token, CSR: testpki.CSRPEM(t, key)},
		http.StatusCreated, &got)
	leaf, err := enroll.ParseCertificatePEM([]byte(got.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	id := got.DeviceID
	wantURI := "urn:gatehouse:default:" + id
	if !ca.ValidName(id) || got.Fleet != "default" || got.Identity != wantURI || got.Serial != ca.SerialHex(leaf.SerialNumber) ||
		!got.NotAfter.Equal(leaf.NotAfter) {
		t.Fatalf("enroll reply %+v", got)
	}
	if leaf.Subject.CommonName != id {
		t.Errorf("CN %q, want device id %q", leaf.Subject.CommonName, id)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantURI {
		t.Errorf("URI SANs %v, want [%s]", leaf.URIs, wantURI)
	}
	if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 || leaf.Subject.Organization != nil {
		t.Errorf("CSR content leaked into the certificate: %v %v %v", leaf.DNSNames, leaf.EmailAddresses, leaf.Subject)
	}
	if !samePub(key.Public(), leaf.PublicKey) {
		t.Error("certificate key is not the CSR's key")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != 30*24*time.Hour+time.Minute {
		t.Errorf("lifetime %v, want 30d + 1m backdate", life)
	}
	// The chain in the reply and the published root verify the leaf for client auth.
	var chain []*x509.Certificate
	for rest := []byte(got.Chain); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	rootReply := s.send(t, request{method: http.MethodGet, path: "/api/v1/ca/root"})
	root, err := enroll.ParseCertificatePEM(rootReply.body)
	if err != nil || rootReply.status != 200 {
		t.Fatalf("GET /ca/root: %d %v", rootReply.status, err)
	}
	if len(chain) != 2 || !chain[1].Equal(root) {
		t.Fatalf("chain has %d certificates, want intermediate + root", len(chain))
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(chain[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}

	var dev apitypes.Device
	s.call(t, http.MethodGet, "/api/v1/devices/"+id, s.viewer, nil, http.StatusOK, &dev)
	if dev.ID != id || dev.Status != "active" || dev.Fleet != "default" || dev.Profile != "default" || dev.Identity != wantURI {
		t.Errorf("device %+v", dev)
	}
	var certs apitypes.CertificateList
	s.call(t, http.MethodGet, "/api/v1/devices/"+id+"/certificates", s.viewer, nil, http.StatusOK, &certs)
	if len(certs.Certificates) != 1 {
		t.Fatalf("%d certificates, want 1", len(certs.Certificates))
	}
	if c := certs.Certificates[0]; c.Serial != got.Serial || c.Status != "active" || c.Certificate != got.Certificate ||
		c.RevokedAt != nil || !c.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("certificate record %+v", c)
	}
	var batch apitypes.TokenBatch
	s.call(t, http.MethodGet, "/api/v1/token-batches/"+b.Batch.ID, s.viewer, nil, http.StatusOK, &batch)
	if batch.Used != 1 || batch.Count != 3 {
		t.Errorf("batch after one enrollment: used %d count %d", batch.Used, batch.Count)
	}

	var events apitypes.AuditEventList
	s.call(t, http.MethodGet, "/api/v1/audit", s.viewer, nil, http.StatusOK, &events)
	want := map[string]apitypes.AuditEvent{
		"token_batch.create": {Actor: "token:admin", ObjectType: "token_batch", ObjectID: b.Batch.ID},
		"device.enroll":      {Actor: "device:" + id, ObjectType: "device", ObjectID: id},
	}
	for _, e := range events.Events {
		if w, ok := want[e.Action]; ok && e.Actor == w.Actor && e.ObjectType == w.ObjectType && e.ObjectID == w.ObjectID {
			delete(want, e.Action)
		}
	}
	if len(want) != 0 {
		t.Errorf("audit log lacks %v; has %+v", want, events.Events)
	}
}

func TestTokenBatchCSV(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	for _, c := range []struct {
		name   string
		query  string
		accept string
	}{
		{"query", "?format=csv", ""},
		{"accept", "", "text/csv"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/api/v1/token-batches"+c.query,
				strings.NewReader(`{"fleet":"default","profile":"default","count":3,"ttl":"2h"}`))
			req.Header.Set("Authorization", "Bearer "+s.admin)
			req.Header.Set("Content-Type", "application/json")
			if c.accept != "" {
				req.Header.Set("Accept", c.accept)
			}
			resp, err := s.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
				t.Fatalf("Content-Type %q", ct)
			}
			rows, err := csv.NewReader(resp.Body).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 4 {
				t.Fatalf("%d rows, want header + 3", len(rows))
			}
			if want := []string{"token", "device_id", "batch_id", "fleet", "profile", "expires_at"}; !slices.Equal(rows[0], want) {
				t.Fatalf("header %v, want %v", rows[0], want)
			}
			batchID := rows[1][2]
			if !strings.Contains(resp.Header.Get("Content-Disposition"), batchID) {
				t.Errorf("Content-Disposition %q lacks batch id", resp.Header.Get("Content-Disposition"))
			}
			for _, row := range rows[1:] {
				exp, err := time.Parse(time.RFC3339, row[5])
				if err != nil || row[2] != batchID || row[3] != "default" || row[4] != "default" || row[1] != "" ||
					time.Until(exp) < time.Hour || time.Until(exp) > 2*time.Hour {
					t.Errorf("row %v", row)
				}
				if got, _, _ := s.enrollOK(t, row[0]); got.Fleet != "default" {
					t.Errorf("enrolled into %q", got.Fleet)
				}
			}
			var batch apitypes.TokenBatch
			s.call(t, http.MethodGet, "/api/v1/token-batches/"+batchID, s.viewer, nil, http.StatusOK, &batch)
			if batch.Used != 3 {
				t.Errorf("used %d, want 3", batch.Used)
			}
		})
	}
}

func TestDeviceIDBatch(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	s.call(t, http.MethodPost, "/api/v1/token-batches", s.admin,
		map[string]any{"fleet": "default", "profile": "default", "count": 3, "device_ids": []string{"gw-1", "gw-2"}, "ttl": "1h"},
		http.StatusBadRequest, nil)
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "device_ids": []string{"gw-1", "gw-2", "gw-3"}, "ttl": "1h"})
	if b.Batch.Count != 3 || len(b.Tokens) != 3 {
		t.Fatalf("batch %+v", b.Batch)
	}
	tokens := map[string]string{}
	for _, tk := range b.Tokens {
		tokens[tk.DeviceID] = tk.Token
	}
	cases := []struct {
		name     string
		device   string // whose token
		asked    string // device_id in the request
		status   int
		code     fault.Code
		enrolled string
	}{
		{"other id refused", "gw-2", "gw-3", 400, fault.InvalidArgument, ""},
		{"other id refused again", "gw-2", "gw-1", 400, fault.InvalidArgument, ""},
		{"no id given", "gw-1", "", 201, "", "gw-1"},
		{"same id given", "gw-2", "gw-2", 201, "", "gw-2"}, // the refusals did not spend it
		{"token spent", "gw-1", "gw-1", 409, fault.TokenUsed, ""},
		{"token for gw-3 asks for enrolled gw-1", "gw-3", "gw-1", 400, fault.InvalidArgument, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := testpki.Key(t, "P-256")
			r := s.call(t, http.MethodPost, "/api/v1/enroll", "",
				apitypes.EnrollRequest{Token: tokens[c.device], CSR: testpki.CSRPEM(t, key), DeviceID: c.asked}, c.status, nil)
			if c.status != 201 {
				wantError(t, r, c.status, c.code)
				return
			}
			var got apitypes.EnrollResponse
			if err := jsonUnmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			leaf, err := enroll.ParseCertificatePEM([]byte(got.Certificate))
			if err != nil {
				t.Fatal(err)
			}
			if got.DeviceID != c.enrolled || leaf.Subject.CommonName != c.enrolled ||
				leaf.URIs[0].String() != "urn:gatehouse:default:"+c.enrolled {
				t.Fatalf("enrolled %q (CN %q), want %q", got.DeviceID, leaf.Subject.CommonName, c.enrolled)
			}
		})
	}
}

func TestAdminAuth(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	ui := newStack(t, testdb.SQLite(t), withUI(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<html>ui</html>"))
	})))
	const (
		none   = ""
		bad    = "gha_this-token-was-never-issued"
		admin  = "<admin>"
		viewer = "<viewer>"
	)
	cases := []struct {
		name   string
		ui     bool
		method string
		path   string
		auth   string // Authorization header, with <admin>/<viewer> replaced
		body   string
		status int
		code   fault.Code // "" for success
		allow  string     // expected Allow header on 405
	}{
		{"no credentials", false, "GET", "/api/v1/devices", none, "", 401, fault.Unauthenticated, ""},
		{"basic auth", false, "GET", "/api/v1/devices", "Basic YWRtaW46YWRtaW4=", "", 401, fault.Unauthenticated, ""},
		{"empty bearer", false, "GET", "/api/v1/devices", "Bearer ", "", 401, fault.Unauthenticated, ""},
		{"unknown token", false, "GET", "/api/v1/devices", "Bearer " + bad, "", 401, fault.Unauthenticated, ""},
		{"bootstrap token as admin token", false, "GET", "/api/v1/devices", "Bearer <bootstrap>", "", 401, fault.Unauthenticated, ""},
		{"viewer reads devices", false, "GET", "/api/v1/devices", "Bearer " + viewer, "", 200, "", ""},
		{"viewer reads fleets", false, "GET", "/api/v1/fleets", "bearer " + viewer, "", 200, "", ""},
		{"viewer reads audit", false, "GET", "/api/v1/audit", "Bearer " + viewer, "", 200, "", ""},
		{"viewer creates fleet", false, "POST", "/api/v1/fleets", "Bearer " + viewer, `{"name":"v"}`, 403, fault.PermissionDenied, ""},
		{"viewer creates batch", false, "POST", "/api/v1/token-batches", "Bearer " + viewer,
			`{"fleet":"default","profile":"default","count":1,"ttl":"1h"}`, 403, fault.PermissionDenied, ""},
		{"viewer deletes profile", false, "DELETE", "/api/v1/profiles/default", "Bearer " + viewer, "", 403, fault.PermissionDenied, ""},
		{"admin creates fleet", false, "POST", "/api/v1/fleets", "Bearer " + admin, `{"name":"a"}`, 201, "", ""},
		{"unknown route, no credentials", false, "GET", "/api/v1/nope", none, "", 404, fault.NotFound, ""},
		{"unknown route, viewer", false, "GET", "/api/v1/nope", "Bearer " + viewer, "", 404, fault.NotFound, ""},
		{"unknown route, admin", false, "POST", "/api/v1/nope", "Bearer " + admin, "{}", 404, fault.NotFound, ""},
		{"unknown api version", false, "GET", "/api/v2/devices", none, "", 404, fault.NotFound, ""},
		{"outside api, UI double", false, "GET", "/index.html", none, "", 404, "", ""},
		{"wrong method, device endpoint", false, "GET", "/api/v1/enroll", none, "", 405, "method_not_allowed", "OPTIONS, POST"},
		{"wrong method, admin endpoint", false, "PUT", "/api/v1/fleets", "Bearer " + admin, "{}", 405, "method_not_allowed", "GET, OPTIONS, POST"},
		{"wrong method, no credentials", false, "DELETE", "/api/v1/devices", none, "", 405, "method_not_allowed", "GET, OPTIONS, POST"},
		{"wrong method, with param", false, "POST", "/api/v1/devices/x/certificates", none, "", 405, "method_not_allowed", "GET, OPTIONS"},
		{"UI: unknown api route", true, "GET", "/api/v1/nope", none, "", 404, fault.NotFound, ""},
		{"UI: api root", true, "GET", "/api", none, "", 404, fault.NotFound, ""},
		{"UI: wrong method", true, "DELETE", "/api/v1/enroll", none, "", 405, "method_not_allowed", "OPTIONS, POST"},
		{"UI: page", true, "GET", "/devices/abc", none, "", 200, "", ""},
	}
	bootstrap := s.token(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := s
			if c.ui {
				st = ui
			}
			auth := strings.NewReplacer(admin, st.admin, viewer, st.viewer, "<bootstrap>", bootstrap).Replace(c.auth)
			req, _ := http.NewRequest(c.method, st.srv.URL+c.path, strings.NewReader(c.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := st.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r := readReply(resp)
			if c.code != "" {
				wantError(t, r, c.status, c.code)
			} else if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r)
			}
			if got := r.header.Get("Allow"); got != c.allow {
				t.Errorf("Allow %q, want %q", got, c.allow)
			}
			if c.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
			}
			if strings.HasPrefix(c.path, "/api") && r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("API response without X-Content-Type-Options: nosniff")
			}
			if c.ui && c.status == 200 && !strings.Contains(r.String(), "ui") {
				t.Errorf("UI not served: %s", r)
			}
		})
	}
}

// step is one admin API call of a scripted scenario.
type step struct {
	name   string
	method string
	path   string
	body   string
	status int
	code   fault.Code     // for errors
	check  func(b []byte) // for successes; nil checks the status only
}

func runSteps(t *testing.T, s *stack, bearer string, steps []step) {
	t.Helper()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var body *strings.Reader
			if st.body != "" {
				body = strings.NewReader(st.body)
			} else {
				body = strings.NewReader("")
			}
			r := s.send(t, request{method: st.method, path: st.path, bearer: bearer, contentType: "application/json", body: body})
			if st.code != "" {
				wantError(t, r, st.status, st.code)
				return
			}
			if r.status != st.status {
				t.Fatalf("status %d, want %d: %s", r.status, st.status, r)
			}
			if st.check != nil {
				st.check(r.body)
			}
		})
	}
}

func TestFleetProfileCRUD(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	fleetIs := func(t *testing.T, name, desc string) func([]byte) {
		return func(b []byte) {
			var f apitypes.Fleet
			if err := jsonUnmarshal(b, &f); err != nil || f.Name != name || f.Description != desc {
				t.Errorf("fleet %s (%v), want %s %q", b, err, name, desc)
			}
		}
	}
	profileIsGrace := func(t *testing.T, validity, window, grace string, keys, roles []string) func([]byte) {
		return func(b []byte) {
			var p apitypes.Profile
			if err := jsonUnmarshal(b, &p); err != nil || p.Validity != validity || p.RenewWindow != window ||
				p.SupersededGrace != grace || !slices.Equal(p.KeyTypes, keys) || !slices.Equal(p.Roles, roles) {
				t.Errorf("profile %s (%v), want validity %s window %s grace %s keys %v roles %v", b, err, validity, window, grace, keys, roles)
			}
		}
	}
	sleepyIs := func(t *testing.T, want string) func([]byte) {
		return func(b []byte) {
			var p apitypes.Profile
			if err := jsonUnmarshal(b, &p); err != nil || p.RenewAfterExpiry != want {
				t.Errorf("profile %s (%v), want renew_after_expiry %s", b, err, want)
			}
		}
	}
	estIs := func(t *testing.T, keygen bool, idFrom string) func([]byte) {
		return func(b []byte) {
			var p apitypes.Profile
			if err := jsonUnmarshal(b, &p); err != nil || p.ServerKeygen != keygen || p.DeviceIDFrom != idFrom {
				t.Errorf("profile %s (%v), want server_keygen %v, device_id_from %s", b, err, keygen, idFrom)
			}
		}
	}
	// The superseded grace is 1h unless a profile says otherwise.
	profileIs := func(t *testing.T, validity, window string, keys, roles []string) func([]byte) {
		return profileIsGrace(t, validity, window, "1h0m0s", keys, roles)
	}
	long := strings.Repeat("x", 65)
	steps := []step{
		{"create fleet", "POST", "/api/v1/fleets", `{"name":"plant-7","description":"Line 7"}`, 201, "", fleetIs(t, "plant-7", "Line 7")},
		{"duplicate fleet", "POST", "/api/v1/fleets", `{"name":"plant-7"}`, 409, fault.AlreadyExists, nil},
		{"fleet name with space", "POST", "/api/v1/fleets", `{"name":"plant 7"}`, 400, fault.InvalidArgument, nil},
		{"fleet name with colon", "POST", "/api/v1/fleets", `{"name":"a:b"}`, 400, fault.InvalidArgument, nil},
		{"fleet name empty", "POST", "/api/v1/fleets", `{"name":""}`, 400, fault.InvalidArgument, nil},
		{"fleet name too long", "POST", "/api/v1/fleets", `{"name":"` + long + `"}`, 400, fault.InvalidArgument, nil},
		{"fleet description too long", "POST", "/api/v1/fleets", `{"name":"d","description":"` + strings.Repeat("d", 1025) + `"}`,
			400, fault.InvalidArgument, nil},
		{"fleet unknown field", "POST", "/api/v1/fleets", `{"name":"u","owner":"x"}`, 400, fault.InvalidArgument, nil},
		{"get fleet", "GET", "/api/v1/fleets/plant-7", "", 200, "", fleetIs(t, "plant-7", "Line 7")},
		{"get missing fleet", "GET", "/api/v1/fleets/nope", "", 404, fault.NotFound, nil},
		{"patch fleet", "PATCH", "/api/v1/fleets/plant-7", `{"description":"Line seven"}`, 200, "", fleetIs(t, "plant-7", "Line seven")},
		{"patch fleet without fields keeps it", "PATCH", "/api/v1/fleets/plant-7", `{}`, 200, "", fleetIs(t, "plant-7", "Line seven")},
		{"patch missing fleet", "PATCH", "/api/v1/fleets/nope", `{"description":"x"}`, 404, fault.NotFound, nil},
		{"list fleets", "GET", "/api/v1/fleets", "", 200, "", func(b []byte) {
			if !bytes.Contains(b, []byte(`"name":"default"`)) || !bytes.Contains(b, []byte(`"name":"plant-7"`)) {
				t.Errorf("fleet list %s", b)
			}
		}},

		{"create profile", "POST", "/api/v1/profiles",
			`{"name":"sensor","key_types":["P-256","Ed25519"],"validity":"7d","renew_window":"48h","roles":["telemetry"]}`,
			201, "", profileIs(t, "168h0m0s", "48h0m0s", []string{"P-256", "Ed25519"}, []string{"telemetry"})},
		{"default renew window is a third", "POST", "/api/v1/profiles", `{"name":"thirds","key_types":["RSA"],"validity":"30d"}`,
			201, "", profileIs(t, "720h0m0s", "240h0m0s", []string{"RSA"}, []string{})},
		{"duplicate profile", "POST", "/api/v1/profiles", `{"name":"sensor","key_types":["P-256"],"validity":"1d"}`,
			409, fault.AlreadyExists, nil},
		{"profile bad name", "POST", "/api/v1/profiles", `{"name":"bad/name","key_types":["P-256"],"validity":"1d"}`,
			400, fault.InvalidArgument, nil},
		{"unknown key type", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-521"],"validity":"1d"}`,
			400, fault.InvalidArgument, nil},
		{"key type with bits", "POST", "/api/v1/profiles", `{"name":"p","key_types":["RSA-1024"],"validity":"1d"}`,
			400, fault.InvalidArgument, nil},
		{"no key types", "POST", "/api/v1/profiles", `{"name":"p","key_types":[],"validity":"1d"}`,
			400, fault.InvalidArgument, nil},
		{"validity abc", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"abc"}`,
			400, fault.InvalidArgument, nil},
		{"validity missing", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"]}`,
			400, fault.InvalidArgument, nil},
		{"validity 0d", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"0d"}`,
			400, fault.InvalidArgument, nil},
		{"validity negative", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"-5h"}`,
			400, fault.InvalidArgument, nil},
		{"validity under a minute", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"30s"}`,
			400, fault.InvalidArgument, nil},
		{"validity over 397d", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"398d"}`,
			400, fault.InvalidArgument, nil},
		{"validity days overflow", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"99999999999d"}`,
			400, fault.InvalidArgument, nil},
		{"renew window over validity", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","renew_window":"25h"}`,
			400, fault.InvalidArgument, nil},
		{"renew window abc", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","renew_window":"abc"}`,
			400, fault.InvalidArgument, nil},
		{"role without OID", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","roles":["root"]}`,
			400, fault.InvalidArgument, nil},
		{"rename refused", "PUT", "/api/v1/profiles/sensor", `{"name":"other","key_types":["P-256"],"validity":"1d"}`,
			400, fault.InvalidArgument, nil},
		{"update profile", "PUT", "/api/v1/profiles/sensor", `{"key_types":["P-384"],"validity":"14d","renew_window":"7d","roles":["command","firmware"]}`,
			200, "", profileIs(t, "336h0m0s", "168h0m0s", []string{"P-384"}, []string{"command", "firmware"})},
		{"grace 0 revokes at renewal", "POST", "/api/v1/profiles", `{"name":"at-once","key_types":["P-256"],"validity":"1d","superseded_grace":"0"}`,
			201, "", profileIsGrace(t, "24h0m0s", "8h0m0s", "0s", []string{"P-256"}, []string{})},
		{"update keeps an unset grace", "PUT", "/api/v1/profiles/at-once", `{"key_types":["P-256"],"validity":"2d"}`,
			200, "", profileIsGrace(t, "48h0m0s", "16h0m0s", "0s", []string{"P-256"}, []string{})},
		{"update sets the grace", "PUT", "/api/v1/profiles/at-once", `{"key_types":["P-256"],"validity":"2d","superseded_grace":"36h"}`,
			200, "", profileIsGrace(t, "48h0m0s", "16h0m0s", "36h0m0s", []string{"P-256"}, []string{})},
		{"grace negative", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","superseded_grace":"-1s"}`,
			400, fault.InvalidArgument, nil},
		{"grace over 30d", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","superseded_grace":"31d"}`,
			400, fault.InvalidArgument, nil},
		{"grace not whole seconds", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","superseded_grace":"500ms"}`,
			400, fault.InvalidArgument, nil},
		{"grace abc", "PUT", "/api/v1/profiles/at-once", `{"key_types":["P-256"],"validity":"1d","superseded_grace":"abc"}`,
			400, fault.InvalidArgument, nil},
		{"renew_after_expiry defaults to 0", "POST", "/api/v1/profiles", `{"name":"sleepy","key_types":["P-256"],"validity":"1d"}`,
			201, "", sleepyIs(t, "0s")},
		{"update sets renew_after_expiry", "PUT", "/api/v1/profiles/sleepy", `{"key_types":["P-256"],"validity":"1d","renew_after_expiry":"30d"}`,
			200, "", sleepyIs(t, "720h0m0s")},
		{"update keeps renew_after_expiry", "PUT", "/api/v1/profiles/sleepy", `{"key_types":["P-256"],"validity":"2d"}`,
			200, "", sleepyIs(t, "720h0m0s")},
		{"renew_after_expiry 365d", "POST", "/api/v1/profiles", `{"name":"year","key_types":["P-256"],"validity":"1d","renew_after_expiry":"365d"}`,
			201, "", sleepyIs(t, "8760h0m0s")},
		{"renew_after_expiry over 365d", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","renew_after_expiry":"366d"}`,
			400, fault.InvalidArgument, nil},
		{"renew_after_expiry negative", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","renew_after_expiry":"-1h"}`,
			400, fault.InvalidArgument, nil},
		{"renew_after_expiry not whole seconds", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","renew_after_expiry":"1.5s"}`,
			400, fault.InvalidArgument, nil},
		{"renew_after_expiry abc", "PUT", "/api/v1/profiles/sleepy", `{"key_types":["P-256"],"validity":"1d","renew_after_expiry":"abc"}`,
			400, fault.InvalidArgument, nil},
		{"EST options default off", "POST", "/api/v1/profiles", `{"name":"est","key_types":["P-256"],"validity":"1d"}`,
			201, "", estIs(t, false, "token")},
		{"get EST options", "GET", "/api/v1/profiles/est", "", 200, "", estIs(t, false, "token")},
		{"update sets EST options", "PUT", "/api/v1/profiles/est",
			`{"key_types":["P-256"],"validity":"1d","server_keygen":true,"device_id_from":"csr_serial_number"}`,
			200, "", estIs(t, true, "csr_serial_number")},
		{"update keeps EST options", "PUT", "/api/v1/profiles/est", `{"key_types":["P-256"],"validity":"2d"}`,
			200, "", estIs(t, true, "csr_serial_number")},
		{"get EST options after update", "GET", "/api/v1/profiles/est", "", 200, "", estIs(t, true, "csr_serial_number")},
		{"update clears server_keygen", "PUT", "/api/v1/profiles/est", `{"key_types":["P-256"],"validity":"2d","server_keygen":false,"device_id_from":"token"}`,
			200, "", estIs(t, false, "token")},
		{"create with EST options", "POST", "/api/v1/profiles",
			`{"name":"est2","key_types":["P-256"],"validity":"1d","server_keygen":true,"device_id_from":"csr_serial_number"}`,
			201, "", estIs(t, true, "csr_serial_number")},
		{"device_id_from unknown", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","device_id_from":"cn"}`,
			400, fault.InvalidArgument, nil},
		{"device_id_from unknown on update", "PUT", "/api/v1/profiles/est", `{"key_types":["P-256"],"validity":"1d","device_id_from":"CSR_SERIAL_NUMBER"}`,
			400, fault.InvalidArgument, nil},
		{"server_keygen not a bool", "POST", "/api/v1/profiles", `{"name":"p","key_types":["P-256"],"validity":"1d","server_keygen":"yes"}`,
			400, fault.InvalidArgument, nil},
		{"update profile invalid", "PUT", "/api/v1/profiles/sensor", `{"key_types":["P-384"],"validity":"abc"}`,
			400, fault.InvalidArgument, nil},
		{"update missing profile", "PUT", "/api/v1/profiles/nope", `{"key_types":["P-256"],"validity":"1d"}`,
			404, fault.NotFound, nil},
		{"get profile", "GET", "/api/v1/profiles/sensor", "", 200, "",
			profileIs(t, "336h0m0s", "168h0m0s", []string{"P-384"}, []string{"command", "firmware"})},

		{"batch unknown fleet", "POST", "/api/v1/token-batches", `{"fleet":"nope","profile":"sensor","count":1,"ttl":"1h"}`,
			404, fault.NotFound, nil},
		{"batch unknown profile", "POST", "/api/v1/token-batches", `{"fleet":"plant-7","profile":"nope","count":1,"ttl":"1h"}`,
			404, fault.NotFound, nil},
		{"batch ttl abc", "POST", "/api/v1/token-batches", `{"fleet":"plant-7","profile":"sensor","count":1,"ttl":"abc"}`,
			400, fault.InvalidArgument, nil},
		{"batch count 0", "POST", "/api/v1/token-batches", `{"fleet":"plant-7","profile":"sensor","count":0,"ttl":"1h"}`,
			400, fault.InvalidArgument, nil},
		{"batch uses fleet and profile", "POST", "/api/v1/token-batches", `{"fleet":"plant-7","profile":"sensor","count":1,"ttl":"1h"}`,
			201, "", nil},
		{"delete fleet in use", "DELETE", "/api/v1/fleets/plant-7", "", 409, fault.Conflict, nil},
		{"delete profile in use", "DELETE", "/api/v1/profiles/sensor", "", 409, fault.Conflict, nil},
		{"fleet still there", "GET", "/api/v1/fleets/plant-7", "", 200, "", fleetIs(t, "plant-7", "Line seven")},
		{"patch fleet to empty description", "PATCH", "/api/v1/fleets/plant-7", `{"description":""}`, 200, "", fleetIs(t, "plant-7", "")},
		{"patch fleet null body", "PATCH", "/api/v1/fleets/plant-7", `null`, 400, fault.InvalidArgument, nil},
		{"delete missing fleet", "DELETE", "/api/v1/fleets/nope", "", 404, fault.NotFound, nil},
		{"delete missing profile", "DELETE", "/api/v1/profiles/nope", "", 404, fault.NotFound, nil},
		{"create spare fleet", "POST", "/api/v1/fleets", `{"name":"spare"}`, 201, "", nil},
		{"delete spare fleet", "DELETE", "/api/v1/fleets/spare", "", 204, "", nil},
		{"spare fleet gone", "GET", "/api/v1/fleets/spare", "", 404, fault.NotFound, nil},
		{"delete unused profile", "DELETE", "/api/v1/profiles/thirds", "", 204, "", nil},
		{"profile gone", "GET", "/api/v1/profiles/thirds", "", 404, fault.NotFound, nil},
		{"audit trail", "GET", "/api/v1/audit?object_type=fleet&object_id=spare", "", 200, "", func(b []byte) {
			var ev apitypes.AuditEventList
			if err := jsonUnmarshal(b, &ev); err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, e := range ev.Events {
				if e.Actor != "token:admin" {
					t.Errorf("actor %q", e.Actor)
				}
				actions = append(actions, e.Action)
			}
			if !slices.Equal(actions, []string{"fleet.delete", "fleet.create"}) {
				t.Errorf("actions %v, want newest first [fleet.delete fleet.create]", actions)
			}
		}},
	}
	runSteps(t, s, s.admin, steps)
}

func TestRenew(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	ctx := context.Background()
	// Default profile: 30d validity, 10d window, so a fresh certificate is too young.
	young, youngKey, _ := s.enrollOK(t, s.token(t))

	s.call(t, http.MethodPost, "/api/v1/profiles", s.admin,
		map[string]any{"name": "eager", "key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
	eager := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": 1, "ttl": "1h"})
	first, key, firstCert := s.enrollOK(t, eager.Tokens[0].Token)

	// The same identity from another CA.
	otherCA := newCA(t, s.st, time.Now)
	foreign, err := otherCA.Issue(ctx, ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, key)), Fleet: "default",
		DeviceID: first.DeviceID, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM := string(ca.EncodePEM(foreign.Leaf))

	var second apitypes.EnrollResponse // filled by the successful renewal
	cases := []struct {
		name   string
		setup  func(t *testing.T)
		cert   func() string
		csr    func(t *testing.T) string
		status int
		code   fault.Code
	}{
		{"too early", nil, func() string { return young.Certificate },
			func(t *testing.T) string { return s.challengeCSR(t, young.Certificate, youngKey) }, 409, fault.RenewalTooEarly},
		{"no certificate", nil, func() string { return "" },
			func(t *testing.T) string { return testpki.CSRPEM(t, key) }, 401, fault.Unauthenticated},
		{"certificate not PEM", nil, func() string { return "MIIB" },
			func(t *testing.T) string { return testpki.CSRPEM(t, key) }, 401, fault.CertInvalid},
		{"CSR from another key", nil, func() string { return first.Certificate },
			func(t *testing.T) string { return testpki.CSRPEM(t, testpki.Key(t, "P-256")) }, 401, fault.Unauthenticated},
		{"certificate from another CA", nil, func() string { return foreignPEM },
			func(t *testing.T) string { return testpki.CSRPEM(t, key) }, 401, fault.CertInvalid},
		{"CSR invalid", nil, func() string { return first.Certificate },
			func(t *testing.T) string {
				return "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
			},
			400, fault.CSRInvalid},
		{"key type no longer allowed", func(t *testing.T) {
			s.call(t, http.MethodPut, "/api/v1/profiles/eager", s.admin,
				map[string]any{"key_types": []string{"P-384"}, "validity": "1h", "renew_window": "1h"}, http.StatusOK, nil)
			t.Cleanup(func() {
				s.call(t, http.MethodPut, "/api/v1/profiles/eager", s.admin,
					map[string]any{"key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusOK, nil)
			})
		}, func() string { return first.Certificate },
			func(t *testing.T) string { return s.challengeCSR(t, first.Certificate, key) }, 400, fault.KeyTypeNotAllowed},
		{"no challenge", nil, func() string { return first.Certificate },
			func(t *testing.T) string { return testpki.CSRPEM(t, key) }, 401, fault.ChallengeRequired},
		{"renews", nil, func() string { return first.Certificate },
			func(t *testing.T) string { return s.challengeCSR(t, first.Certificate, key) }, 201, ""},
		{"old certificate again", nil, func() string { return first.Certificate },
			func(t *testing.T) string { return testpki.CSRPEM(t, key) }, 401, fault.CertInvalid},
		{"expired certificate", func(t *testing.T) {
			s.clock.Advance(2 * time.Hour)
			t.Cleanup(func() { s.clock.Advance(-2 * time.Hour) })
		}, func() string { return second.Certificate },
			func(t *testing.T) string { return testpki.CSRPEM(t, key) }, 401, fault.CertInvalid},
		{"device suspended", func(t *testing.T) {
			d, err := s.st.GetDevice(ctx, first.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			d.Status = store.DeviceSuspended
			if _, err := s.st.UpdateDevice(ctx, d, nil); err != nil {
				t.Fatal(err)
			}
		}, func() string { return second.Certificate },
			func(t *testing.T) string { return s.challengeCSR(t, second.Certificate, key) }, 403, fault.DeviceNotActive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup(t)
			}
			r := s.send(t, request{method: http.MethodPost, path: "/api/v1/renew", contentType: "application/json",
				body: bytes.NewReader(mustJSON(t, apitypes.RenewRequest{Certificate: c.cert(), CSR: c.csr(t)}))})
			if c.code != "" {
				wantError(t, r, c.status, c.code)
				return
			}
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r)
			}
			if err := jsonUnmarshal(r.body, &second); err != nil {
				t.Fatal(err)
			}
			leaf, err := enroll.ParseCertificatePEM([]byte(second.Certificate))
			if err != nil {
				t.Fatal(err)
			}
			if second.DeviceID != first.DeviceID || second.Identity != first.Identity || second.Serial == first.Serial ||
				leaf.Subject.CommonName != first.DeviceID || !samePub(leaf.PublicKey, firstCert.PublicKey) {
				t.Fatalf("renewed %+v, from %+v", second, first)
			}
			var certs apitypes.CertificateList
			s.call(t, http.MethodGet, "/api/v1/devices/"+first.DeviceID+"/certificates", s.viewer, nil, http.StatusOK, &certs)
			status := map[string]string{}
			for _, c := range certs.Certificates {
				status[c.Serial] = c.Status
			}
			if len(status) != 2 || status[first.Serial] != "superseded" || status[second.Serial] != "active" {
				t.Fatalf("certificate states %v, want old superseded and new active", status)
			}
		})
	}
}

// TestEnrollRace spends one token from 100 concurrent requests, each with its
// own key: exactly one wins, on every backend.
func TestEnrollRace(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newStack(t, testdb.DSN(t, backend))
			b := s.batch(t, map[string]any{"fleet": "default", "profile": "default", "count": 1, "ttl": "1h"})
			const n = 100
			bodies := make([][]byte, n)
			for i := range bodies {
				bodies[i] = mustJSON(t, apitypes.EnrollRequest{Token: b.Tokens[0].Token, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
			}
			type outcome struct {
				status int
				code   fault.Code
				device string
				err    error
			}
			out := make([]outcome, n)
			testrace.Run(n, func(i int) {
				resp, err := s.srv.Client().Post(s.srv.URL+"/api/v1/enroll", "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					out[i].err = err
					return
				}
				defer resp.Body.Close()
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(resp.Body)
				out[i].status = resp.StatusCode
				// An error or an enrollment: one decode reads either.
				var e struct {
					apitypes.ErrorBody
					apitypes.EnrollResponse
				}
				if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
					out[i].err = fmt.Errorf("reply %q: %w", buf.String(), err)
				}
				out[i].code, out[i].device = e.Error.Code, e.DeviceID
			})
			tally := map[string]int{}
			var winner string
			for _, o := range out {
				if o.err != nil {
					t.Fatalf("request failed: %v", o.err)
				}
				tally[fmt.Sprintf("%d %s", o.status, o.code)]++
				if o.status == http.StatusCreated {
					winner = o.device
				}
			}
			if tally["201 "] != 1 || tally["409 token_used"] != n-1 || len(tally) != 2 {
				t.Fatalf("outcomes %v, want exactly one 201 and %d × 409 token_used", tally, n-1)
			}

			var batch apitypes.TokenBatch
			s.call(t, http.MethodGet, "/api/v1/token-batches/"+b.Batch.ID, s.viewer, nil, http.StatusOK, &batch)
			if batch.Used != 1 {
				t.Errorf("batch used %d, want 1", batch.Used)
			}
			var devs apitypes.DeviceList
			s.call(t, http.MethodGet, "/api/v1/devices?limit=1000", s.viewer, nil, http.StatusOK, &devs)
			if len(devs.Devices) != 1 || devs.Devices[0].ID != winner || devs.Devices[0].Status != "active" {
				t.Fatalf("devices %+v, want only the winner %s", devs.Devices, winner)
			}
			var certs apitypes.CertificateList
			s.call(t, http.MethodGet, "/api/v1/devices/"+url.PathEscape(winner)+"/certificates", s.viewer, nil, http.StatusOK, &certs)
			if len(certs.Certificates) != 1 {
				t.Fatalf("%d certificates for the winner, want 1", len(certs.Certificates))
			}
			var events apitypes.AuditEventList
			s.call(t, http.MethodGet, "/api/v1/audit?object_type=device&limit=1000", s.viewer, nil, http.StatusOK, &events)
			if len(events.Events) != 1 || events.Events[0].Action != "device.enroll" || events.Events[0].ObjectID != winner {
				t.Fatalf("device audit events %+v, want one enrollment of %s", events.Events, winner)
			}
		})
	}
}

// TestRenewMutualTLS: a client certificate from the TLS handshake proves
// possession of its key, so the CSR may carry a new one; the same request
// with the certificate only in the body may not.
func TestRenewMutualTLS(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), withTLS())
	s.call(t, http.MethodPost, "/api/v1/profiles", s.admin,
		map[string]any{"name": "eager", "key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": 2, "ttl": "1h"})
	first, oldKey, oldCert := s.enrollOK(t, b.Tokens[0].Token)
	stranger, strangerKey, strangerCert := s.enrollOK(t, b.Tokens[1].Token)

	withClientCert := func(cert *x509.Certificate, key crypto.Signer) *http.Client {
		c := s.srv.Client()
		tr := c.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
		return &http.Client{Transport: tr}
	}
	newKey := testpki.Key(t, "P-256")
	cases := []struct {
		name    string
		client  *http.Client
		body    apitypes.RenewRequest
		status  int
		code    fault.Code
		renewed string // device the new certificate names
	}{
		{"new key, certificate only in body", s.srv.Client(),
			apitypes.RenewRequest{Certificate: first.Certificate, CSR: testpki.CSRPEM(t, newKey)}, 401, fault.Unauthenticated, ""},
		{"TLS certificate wins over body", withClientCert(strangerCert, strangerKey),
			apitypes.RenewRequest{Certificate: first.Certificate, CSR: testpki.CSRPEM(t, newKey)}, 201, "", stranger.DeviceID},
		{"new key over mutual TLS", withClientCert(oldCert, oldKey),
			apitypes.RenewRequest{CSR: testpki.CSRPEM(t, newKey)}, 201, "", first.DeviceID},
		{"superseded TLS certificate", withClientCert(oldCert, oldKey),
			apitypes.RenewRequest{CSR: testpki.CSRPEM(t, newKey)}, 401, fault.CertInvalid, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := c.client.Post(s.srv.URL+"/api/v1/renew", "application/json", bytes.NewReader(mustJSON(t, c.body)))
			if err != nil {
				t.Fatal(err)
			}
			r := readReply(resp)
			if c.code != "" {
				wantError(t, r, c.status, c.code)
				return
			}
			var got apitypes.EnrollResponse
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r)
			}
			if err := jsonUnmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			leaf, err := enroll.ParseCertificatePEM([]byte(got.Certificate))
			if err != nil {
				t.Fatal(err)
			}
			if got.DeviceID != c.renewed || leaf.Subject.CommonName != c.renewed || !samePub(leaf.PublicKey, newKey.Public()) {
				t.Fatalf("renewed %s (CN %s), want %s with the CSR's new key (key matches: %v)", got.DeviceID,
					leaf.Subject.CommonName, c.renewed, samePub(leaf.PublicKey, newKey.Public()))
			}
		})
	}
}
