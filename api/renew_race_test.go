package api_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"testing"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// revocationStack is the API with everything a revocation reaches, as the
// server binary wires it: decision core, revoke service, CRL publisher and
// OCSP responder.
type revocationStack struct {
	*stack
	core *authz.Authorizer
	sync *authzsync.Syncer
	crl  *crl.Publisher
}

func newRevocationStack(t testing.TB, dsn string) *revocationStack {
	rs := &revocationStack{}
	rs.stack = newStack(t, dsn, func(c *stackCfg) {
		c.build = func(t testing.TB, st *store.Store, theCA *ca.CA, rec *audit.Recorder, cfg *api.Config) {
			ctx := context.Background()
			az := authz.New(authz.Config{})
			svc, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: az})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.EnsureActive(ctx); err != nil {
				t.Fatal(err)
			}
			syncer, err := authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: az})
			if err != nil {
				t.Fatal(err)
			}
			pub, err := crl.New(crl.Config{Generator: theCA, Numbers: st, Issuer: theCA.Intermediate()})
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Ensure(ctx); err != nil {
				t.Fatal(err)
			}
			rev, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: syncer, CRL: pub})
			if err != nil {
				t.Fatal(err)
			}
			signer, err := theCA.NewOCSPSigner(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ocsp.New(ocsp.Config{Certs: st, Signer: signer, Issuer: theCA.Intermediate()})
			if err != nil {
				t.Fatal(err)
			}
			// Renewals on a profile with superseded_grace 0 republish the CRL.
			enr, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Claims: st, Audit: rec, Issuer: theCA, CRL: pub})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Enroll = enr
			cfg.Policies, cfg.PolicyVersions, cfg.Decisions, cfg.Revoke, cfg.OCSP, cfg.CRL = svc, st, az, rev, resp, pub
			rs.core, rs.sync, rs.crl = az, syncer, pub
		}
	})
	return rs
}

// renewable is an enrolled device whose certificate may be renewed at once.
type renewable struct {
	id, serial string
	key        crypto.Signer
	cert       string
}

// enrollRenewable enrolls n devices on profile "eager" (renewal window =
// validity, so a renewal is allowed right away).
func (s *revocationStack) enrollRenewable(t *testing.T, n int) []renewable {
	t.Helper()
	s.call(t, http.MethodPost, "/api/v1/profiles", s.admin,
		map[string]any{"name": "eager", "key_types": []string{"P-256"}, "validity": "1h", "renew_window": "1h"}, http.StatusCreated, nil)
	b := s.batch(t, map[string]any{"fleet": "default", "profile": "eager", "count": n, "ttl": "1h"})
	out := make([]renewable, n)
	for i := range out {
		enr, key, _ := s.enrollOK(t, b.Tokens[i].Token)
		out[i] = renewable{id: enr.DeviceID, serial: enr.Serial, key: key, cert: enr.Certificate}
	}
	return out
}

// post sends a JSON body and returns status and error code; it is safe to
// call from many goroutines (it never calls t.Fatal).
func (s *revocationStack) post(path, bearer string, body []byte) (int, fault.Code, error) {
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		return 0, "", err
	}
	r := readReply(resp)
	var e struct{ Error struct{ Code fault.Code } }
	_ = json.Unmarshal(r.body, &e)
	return r.status, e.Error.Code, nil
}

// ocspStatus asks the stack's OCSP responder about serial and returns the
// verified answer.
func (s *revocationStack) ocspStatus(t *testing.T, serial string) *xocsp.Response {
	t.Helper()
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		t.Fatalf("serial %q is not hex", serial)
	}
	issuer := s.ca.Intermediate()
	// CreateRequest reads only the serial of the leaf.
	der, err := xocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, issuer, &xocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	r := s.send(t, request{method: http.MethodPost, path: "/ocsp", contentType: "application/ocsp-request", body: bytes.NewReader(der)})
	if r.status != http.StatusOK {
		t.Fatalf("OCSP %s: HTTP %d", serial, r.status)
	}
	resp, err := xocsp.ParseResponse(r.body, issuer)
	if err != nil {
		t.Fatalf("OCSP %s: %v", serial, err)
	}
	if resp.SerialNumber.Cmp(n) != 0 {
		t.Fatalf("OCSP answered for %x, asked %s", resp.SerialNumber, serial)
	}
	return resp
}

// crlSerials fetches GET /crl, checks its signature and returns its entries
// by serial (lowercase hex, as the API names certificates).
func (s *revocationStack) crlSerials(t *testing.T) map[string]x509.RevocationListEntry {
	t.Helper()
	r := s.send(t, request{method: http.MethodGet, path: "/crl"})
	if r.status != http.StatusOK {
		t.Fatalf("GET /crl: %d %s", r.status, r)
	}
	list, err := x509.ParseRevocationList(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.CheckSignatureFrom(s.ca.Intermediate()); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]x509.RevocationListEntry, len(list.RevokedCertificateEntries))
	for _, e := range list.RevokedCertificateEntries {
		out[ca.SerialHex(e.SerialNumber)] = e
	}
	return out
}

// certificates lists a device's certificates through the API.
func (s *revocationStack) certificates(t *testing.T, id string) []apitypes.Certificate {
	t.Helper()
	var out apitypes.CertificateList
	s.call(t, http.MethodGet, "/api/v1/devices/"+id+"/certificates", s.viewer, nil, http.StatusOK, &out)
	return out.Certificates
}

// TestRenewRevokeRace races a renewal against a revocation of the same
// device, for 60 devices at once, through the API handlers. Whatever the
// interleaving, a revoked device holds no certificate that is not revoked,
// and every certificate it ever held answers revoked over OCSP and is on the
// CRL. On PostgreSQL the renewal used to read the device without a lock:
// the revocation's certificate statement did not see a renewal committed
// meanwhile, and the renewed certificate stayed good.
func TestRenewRevokeRace(t *testing.T) {
	const pairs = 60
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			s := newRevocationStack(t, testdb.DSN(t, backend))
			devs := s.enrollRenewable(t, pairs)
			renewBodies := make([][]byte, pairs)
			for i, d := range devs {
				renewBodies[i] = mustJSON(t, apitypes.RenewRequest{Certificate: d.cert, CSR: s.challengeCSR(t, d.cert, d.key)})
			}
			revokeBody := mustJSON(t, map[string]any{"reason": "keyCompromise"})
			// Each goroutine writes only its own fields: the renewal and the
			// revocation of a pair run at once.
			type outcome struct {
				renew, revoke         int
				renewCode, revokeCode fault.Code
				renewErr, revokeErr   error
			}
			out := make([]outcome, pairs)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, d := range devs {
				wg.Add(2)
				go func() {
					defer wg.Done()
					<-start
					out[i].renew, out[i].renewCode, out[i].renewErr = s.post("/api/v1/renew", "", renewBodies[i])
				}()
				go func() {
					defer wg.Done()
					<-start
					out[i].revoke, out[i].revokeCode, out[i].revokeErr = s.post("/api/v1/devices/"+d.id+"/revoke", s.admin, revokeBody)
				}()
			}
			close(start)
			wg.Wait()

			tally := map[string]int{}
			for i, o := range out {
				if o.renewErr != nil || o.revokeErr != nil {
					t.Fatalf("device %s: renew %v, revoke %v", devs[i].id, o.renewErr, o.revokeErr)
				}
				tally[fmt.Sprintf("renew %d %s", o.renew, o.renewCode)]++
				if o.revoke != http.StatusOK {
					t.Errorf("revoke %s: %d %s", devs[i].id, o.revoke, o.revokeCode)
				}
				// A renewal that lost the race is refused with a 4xx that
				// names why, never a 5xx.
				switch {
				case o.renew == http.StatusCreated:
				case o.renew == http.StatusForbidden && o.renewCode == fault.DeviceNotActive:
				case o.renew == http.StatusUnauthorized && o.renewCode == fault.CertInvalid:
				default:
					t.Errorf("renew %s: %d %s", devs[i].id, o.renew, o.renewCode)
				}
			}
			t.Logf("outcomes: %v", tally)

			onCRL := s.crlSerials(t)
			leaking, checked := 0, 0
			for i, d := range devs {
				var dev apitypes.Device
				s.call(t, http.MethodGet, "/api/v1/devices/"+d.id, s.viewer, nil, http.StatusOK, &dev)
				if dev.Status != "revoked" {
					t.Errorf("device %s is %s after its revocation", d.id, dev.Status)
					continue
				}
				certs := s.certificates(t, d.id)
				// Exactly one certificate was issued by a renewal that
				// succeeded, none by one that was refused. A refused one
				// may have signed and discarded one: listed as discarded,
				// and checked below, revoked everywhere, with the rest.
				want, issued := 1, 0
				if out[i].renew == http.StatusCreated {
					want = 2
				}
				for _, c := range certs {
					if !c.Discarded {
						issued++
					}
				}
				if issued != want {
					t.Errorf("device %s (renew %d %s) holds %d certificates, want %d", d.id, out[i].renew, out[i].renewCode, issued, want)
				}
				leak := false
				for _, c := range certs {
					checked++
					if c.Status != "revoked" {
						leak = true
						t.Errorf("revoked device %s holds %s certificate %s", d.id, c.Status, c.Serial)
					}
					if resp := s.ocspStatus(t, c.Serial); resp.Status != xocsp.Revoked {
						leak = true
						t.Errorf("OCSP says %d (0 good) for %s of revoked device %s", resp.Status, c.Serial, d.id)
					}
					if _, ok := onCRL[c.Serial]; !ok {
						leak = true
						t.Errorf("certificate %s of revoked device %s is not on the CRL", c.Serial, d.id)
					}
				}
				if leak {
					leaking++
				}
			}
			t.Logf("%s: %d of %d revoked devices hold a certificate that is not revoked everywhere (%d certificates checked)",
				backend, leaking, pairs, checked)
			if leaking != 0 {
				t.Fatalf("%d of %d revoked devices hold a live certificate", leaking, pairs)
			}
		})
	}
}
