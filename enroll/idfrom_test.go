package enroll_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

// subjectCSR is a PEM CSR for key whose subject has CN "whatever" and one
// serialNumber attribute per serials entry.
func subjectCSR(t *testing.T, key crypto.Signer, serials ...string) []byte {
	t.Helper()
	subj := pkix.Name{CommonName: "whatever"}
	for _, s := range serials {
		subj.ExtraNames = append(subj.ExtraNames, pkix.AttributeTypeAndValue{Type: oidSerialNumber, Value: s})
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSRSubject(t, key, subj)})
}

// TestEnrollDeviceIDFromCSR: a profile with device_id_from
// csr_serial_number names the device after the CSR subject's serialNumber,
// which must be there, once, in the device id grammar, and agree with the
// token's fixed id and the request's device_id. A refusal spends nothing:
// the same token then enrolls. On both databases.
func TestEnrollDeviceIDFromCSR(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			for _, p := range []store.Profile{
				{Name: "serial", KeyTypes: []string{"P-256"}, Validity: time.Hour, DeviceIDFrom: store.DeviceIDFromCSRSerial},
				{Name: "bytoken", KeyTypes: []string{"P-256"}, Validity: time.Hour},
			} {
				if _, err := e.db.Real().CreateProfile(ctx, p, nil); err != nil {
					t.Fatal(err)
				}
			}
			token := func(t *testing.T, profile, fixed string) string {
				t.Helper()
				req := enroll.BatchRequest{Fleet: "default", Profile: profile, Count: 1, TTL: time.Hour}
				if fixed != "" {
					req.DeviceIDs = []string{fixed}
				}
				b, err := e.svc.CreateBatch(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				return b.Tokens[0].Token
			}
			i := 0
			for _, tc := range []struct {
				name, profile, fixed, reqID string
				serials                     []string
				want                        string     // the device id
				code                        fault.Code // or the refusal
			}{
				{"serialNumber names the device", "serial", "", "", []string{"cam-1"}, "cam-1", ""},
				{"a MAC address", "serial", "", "", []string{"mac:00:11:22"}, "mac:00:11:22", ""},
				{"token's fixed id agrees", "serial", "fix-1", "", []string{"fix-1"}, "fix-1", ""},
				{"request's device_id agrees", "serial", "", "cam-2", []string{"cam-2"}, "cam-2", ""},
				{"no serialNumber", "serial", "", "", nil, "", fault.CSRInvalid},
				{"no serialNumber, fixed token", "serial", "fix-2", "", nil, "", fault.CSRInvalid},
				{"two serialNumbers", "serial", "", "", []string{"cam-3", "cam-4"}, "", fault.CSRInvalid},
				{"serialNumber with a space", "serial", "", "", []string{"cam 5"}, "", fault.InvalidArgument},
				{"serialNumber dot-dot", "serial", "", "", []string{"a..b"}, "", fault.InvalidArgument},
				{"serialNumber with a slash", "serial", "", "", []string{"../etc"}, "", fault.InvalidArgument},
				{"serialNumber of 65 characters", "serial", "", "", []string{strings.Repeat("s", 65)}, "", fault.InvalidArgument},
				{"empty serialNumber", "serial", "", "", []string{""}, "", fault.InvalidArgument},
				{"token fixed to another id", "serial", "fix-3", "", []string{"cam-6"}, "", fault.InvalidArgument},
				{"request names another id", "serial", "", "cam-7", []string{"cam-8"}, "", fault.InvalidArgument},
				{"request and token disagree", "serial", "fix-4", "cam-9", []string{"fix-4"}, "", fault.InvalidArgument},
				{"by token: serialNumber ignored", "bytoken", "", "tok-1", []string{"cam-10"}, "tok-1", ""},
				{"by token: no serialNumber needed", "bytoken", "fix-5", "", nil, "fix-5", ""},
			} {
				i++
				t.Run(tc.name, func(t *testing.T) {
					tok := token(t, tc.profile, tc.fixed)
					key := testpki.Key(t, "P-256")
					res, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: subjectCSR(t, key, tc.serials...), DeviceID: tc.reqID})
					if tc.code != "" {
						if fault.CodeOf(err) != tc.code {
							t.Fatalf("err %v, want %s", err, tc.code)
						}
						// Refused before the token was claimed: it still enrolls.
						again := tc.fixed
						if again == "" {
							again = fmt.Sprintf("again-%d", i)
						}
						if _, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: subjectCSR(t, key, again)}); err != nil {
							t.Fatalf("the token after a refusal: %v", err)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if res.Device.ID != tc.want || res.Certificate.Subject.CommonName != tc.want {
						t.Fatalf("device %q, certificate CN %q, want %q", res.Device.ID, res.Certificate.Subject.CommonName, tc.want)
					}
					// A retry (same token, same key) gets the same certificate;
					// a new key is token_used, as for any profile.
					again, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: subjectCSR(t, key, tc.serials...)})
					if err != nil || !again.Repeated || again.Serial != res.Serial {
						t.Fatalf("retry: %+v %v, want the same certificate", again, err)
					}
					_, err = e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: subjectCSR(t, testpki.Key(t, "P-256"), tc.serials...)})
					if fault.CodeOf(err) != fault.TokenUsed {
						t.Fatalf("retry with another key: %v, want token_used", err)
					}
				})
			}
			// The id a serialNumber names is the device's once: another
			// token cannot take it over.
			_, err := e.svc.Enroll(ctx, enroll.Request{Token: token(t, "serial", ""), CSR: subjectCSR(t, testpki.Key(t, "P-256"), "cam-1")})
			if fault.CodeOf(err) != fault.AlreadyExists {
				t.Fatalf("a second token for cam-1: %v, want already_exists", err)
			}
		})
	}
}

// TestEnrollServerKey: an enrollment whose key the server generated (EST
// serverkeygen) needs a profile with server_keygen, checked on the profile
// read with the token; it is audited as such.
func TestEnrollServerKey(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			if _, err := e.db.Real().CreateProfile(ctx, store.Profile{Name: "keygen", KeyTypes: []string{"P-256"},
				Validity: time.Hour, ServerKeygen: new(true)}, nil); err != nil {
				t.Fatal(err)
			}
			_, off := oneToken(t, e.svc) // profile "eager": server_keygen off
			key := testpki.Key(t, "P-256")
			_, err := e.svc.Enroll(ctx, enroll.Request{Token: off, CSR: subjectCSR(t, key), ServerKey: true})
			if fault.CodeOf(err) != fault.PermissionDenied || !strings.Contains(err.Error(), "serverkeygen is off for profile eager") {
				t.Fatalf("server key on a profile without server_keygen: %v, want permission_denied", err)
			}
			b, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "keygen", Count: 1, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.svc.Enroll(ctx, enroll.Request{Token: b.Tokens[0].Token, CSR: subjectCSR(t, key), ServerKey: true})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := e.db.Real().ListAudit(ctx, store.AuditFilter{Action: "device.enroll", ObjectID: res.Device.ID})
			if err != nil || len(ev) != 1 || !strings.Contains(ev[0].Detail, "key=server-generated") {
				t.Fatalf("audit %+v %v, want one device.enroll with key=server-generated", ev, err)
			}
			// The client never held the first key: its retry, with a new one,
			// is token_used.
			_, err = e.svc.Enroll(ctx, enroll.Request{Token: b.Tokens[0].Token, CSR: subjectCSR(t, testpki.Key(t, "P-256")), ServerKey: true})
			if fault.CodeOf(err) != fault.TokenUsed {
				t.Fatalf("retry: %v, want token_used", err)
			}
		})
	}
}

func TestCSRSerialNumberNotAString(t *testing.T) {
	csr := &x509.CertificateRequest{Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidSerialNumber, Value: 42}}}}
	if _, err := enroll.CSRSerialNumber(csr); fault.CodeOf(err) != fault.CSRInvalid {
		t.Fatalf("err %v, want csr_invalid", err)
	}
}

// FuzzCSRSerialNumber: any serialNumber value is the device id exactly when
// it is a valid one; otherwise a client error, never a panic.
func FuzzCSRSerialNumber(f *testing.F) {
	for _, s := range []string{"cam-1", "", "..", "a b", "mac:00:11", strings.Repeat("x", 65), "é"} {
		f.Add(s, false)
	}
	f.Add("cam-1", true)
	f.Fuzz(func(t *testing.T, s string, twice bool) {
		names := []pkix.AttributeTypeAndValue{{Type: oidSerialNumber, Value: s}}
		if twice {
			names = append(names, names[0])
		}
		id, err := enroll.CSRSerialNumber(&x509.CertificateRequest{Subject: pkix.Name{Names: names}})
		switch code := fault.CodeOf(err); {
		case err == nil:
			if id != s || twice {
				t.Fatalf("%q (twice %v) gave id %q", s, twice, id)
			}
		case code != fault.InvalidArgument && code != fault.CSRInvalid:
			t.Fatalf("%q: code %s", s, code)
		}
	})
}

// TestEnrollSerialNumberRace: many tokens whose CSRs all name one device
// by serialNumber, at once: one wins, the others are refused with a client
// code and anything they signed is revoked. Then many server-key
// enrollments with one token: one wins and the CA signs once. On both
// databases.
func TestEnrollSerialNumberRace(t *testing.T) {
	caDir := newCADir(t)
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newClaimEnv(t, backend, caDir, nil)
			if _, err := e.db.Real().CreateProfile(ctx, store.Profile{Name: "serial", KeyTypes: []string{"P-256"}, Validity: time.Hour,
				DeviceIDFrom: store.DeviceIDFromCSRSerial, ServerKeygen: new(true)}, nil); err != nil {
				t.Fatal(err)
			}
			b, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "serial", Count: racers + 1, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			csrs := make([][]byte, racers)
			for i := range csrs {
				csrs[i] = subjectCSR(t, testpki.Key(t, "P-256"), "contested")
			}
			before := len(e.iss.serials())
			won, codes := race(t, racers, func(i int) (enroll.Result, error) {
				return e.svc.Enroll(ctx, enroll.Request{Token: b.Tokens[i].Token, CSR: csrs[i]})
			})
			wantOnly(t, codes, fault.AlreadyExists, fault.Conflict, fault.Unavailable)
			if won.Device.ID != "contested" {
				t.Fatalf("winner %q", won.Device.ID)
			}
			// The claim is on each token, not on the id, so a loser may have
			// signed before its commit failed: whatever it signed is
			// discarded, revoked and on the CRL, never a second identity.
			crl := e.onCRL(t)
			for _, serial := range e.iss.serials()[before:] {
				if serial == won.Serial {
					continue
				}
				if c, err := e.db.Real().GetCertificate(ctx, serial); err != nil || c.Status != store.CertRevoked || !crl[serial] {
					t.Fatalf("a loser's certificate %s: %s %v, on the CRL %v: want revoked", serial, c.Status, err, crl[serial])
				}
			}
			if c, err := e.db.Real().GetCertificate(ctx, won.Serial); err != nil || c.Status != store.CertActive {
				t.Fatalf("winner's certificate: %s %v", c.Status, err)
			}

			// One token, many server-generated keys at once.
			tok := b.Tokens[racers].Token
			before = len(e.iss.serials())
			won, codes = race(t, racers, func(i int) (enroll.Result, error) {
				return e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: subjectCSR(t, testpki.Key(t, "P-256"), "keyed"), ServerKey: true})
			})
			wantOnly(t, codes, fault.TokenUsed, fault.Unavailable)
			e.checkOneSigned(t, before, won.Serial)
		})
	}
}
