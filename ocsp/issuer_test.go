package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestIssuerMustHaveIssuedSerial: after ca rotate, each generation's
// responder answers for its own leaves only. A request naming one
// intermediate for a serial the other issued names a certificate that does
// not exist: "unknown", never "good" (and never the other's "revoked"),
// alone or beside a certificate of the named issuer. On both databases.
func TestIssuerMustHaveIssuedSerial(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, dsnFor(t, backend))
			gen1 := e.ca.Intermediate()
			old := e.leaf
			oldRevoked, oldRevokedSerial := e.enroll(t, "dev-revoked")
			if err := e.st.RevokeCertificate(ctx, oldRevokedSerial, 1, e.clock.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Rotate(ca.RotateRequest{Dir: e.dir, Passphrase: pass}); err != nil {
				t.Fatal(err)
			}
			c2, err := ca.New(ca.Config{Dir: e.dir, Passphrase: pass, Store: e.st, Now: e.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			e.ca = c2
			gen2 := c2.Intermediate()
			fresh, _ := e.enroll(t, "dev-gen2")
			if fresh.CheckSignatureFrom(gen2) != nil || old.CheckSignatureFrom(gen1) != nil {
				t.Fatal("the leaves are not from the generations the test means")
			}
			m := multi(t, e, c2)
			for _, tc := range []struct {
				name   string
				issuer *x509.Certificate
				serial []*big.Int
				want   []Status
			}{
				{"gen 1 leaf, gen 1 named", gen1, []*big.Int{old.SerialNumber}, []Status{Good}},
				{"gen 2 leaf, gen 2 named", gen2, []*big.Int{fresh.SerialNumber}, []Status{Good}},
				{"gen 1 leaf, gen 2 named", gen2, []*big.Int{old.SerialNumber}, []Status{Unknown}},
				{"gen 2 leaf, gen 1 named", gen1, []*big.Int{fresh.SerialNumber}, []Status{Unknown}},
				{"revoked gen 1 leaf, gen 1 named", gen1, []*big.Int{oldRevoked.SerialNumber}, []Status{Revoked}},
				{"revoked gen 1 leaf, gen 2 named", gen2, []*big.Int{oldRevoked.SerialNumber}, []Status{Unknown}},
				{"mixed, gen 2 named", gen2, []*big.Int{fresh.SerialNumber, old.SerialNumber}, []Status{Good, Unknown}},
			} {
				a := m.Respond(ctx, request(t, tc.issuer, crypto.SHA256, nil, tc.serial...))
				rep := readReply(t, a.DER, tc.issuer)
				if rep.status != Successful || len(rep.singles) != len(tc.want) {
					t.Fatalf("%s: %+v", tc.name, rep)
				}
				for i, s := range rep.singles {
					if s.status != tc.want[i] {
						t.Errorf("%s: certificate %d is %v, want %v", tc.name, i, s.status, tc.want[i])
					}
				}
			}
		})
	}
}

// multi is the responder set serve builds (cmd/gatehouse newOCSP): the
// current intermediate's, then each retired one's.
func multi(t *testing.T, e *env, c *ca.CA) Multi {
	t.Helper()
	ctx := context.Background()
	cur, err := c.NewOCSPSigner(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	retired, err := c.RetiredOCSPSigners(ctx, 0)
	if err != nil || len(retired) != 1 {
		t.Fatalf("retired signers: %d %v", len(retired), err)
	}
	var m Multi
	for _, s := range append([]*ca.OCSPSigner{cur}, retired...) {
		r, err := New(Config{Certs: e.st, Signer: s, Issuer: s.Issuer(), Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		m = append(m, r)
	}
	return m
}

// TestRestoredRevocation: a serial revoked only in restored_revocations (a
// restore learnt it from the last CRL; the certificate was issued after
// the backup) is answered revoked, with the recorded time and reason, not
// unknown. On both databases.
func TestRestoredRevocation(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, dsnFor(t, backend))
			inter := e.ca.Intermediate()
			at := e.clock.Now().Add(-3 * time.Hour).UTC()
			serial := big.NewInt(0x5e5a1)
			if got, err := e.st.RecordRestoredRevocations(ctx, []store.RevokedCert{
				{Serial: ca.SerialHex(serial), RevokedAt: at, Reason: 4, NotAfter: e.clock.Now().Add(24 * time.Hour)},
			}); err != nil || got.Unknown != 1 {
				t.Fatalf("record: %+v %v", got, err)
			}
			rep := readReply(t, e.r.Respond(ctx, request(t, inter, crypto.SHA1, nil, serial, big.NewInt(0x5e5a2), e.leaf.SerialNumber)).DER, inter)
			want := []Status{Revoked, Unknown, Good}
			if rep.status != Successful || len(rep.singles) != len(want) {
				t.Fatalf("%+v", rep)
			}
			for i, s := range rep.singles {
				if s.status != want[i] {
					t.Errorf("certificate %d is %v, want %v", i, s.status, want[i])
				}
			}
			if s := rep.singles[0]; !s.revokedAt.Equal(at) || s.reason != 4 {
				t.Errorf("revoked at %v reason %d, want %v reason 4", s.revokedAt, s.reason, at)
			}
		})
	}
}

// restoredDown: the certificates answer not found and the restored
// revocations cannot be read: tryLater, never "unknown".
type restoredDown struct{ notFound }

func (restoredDown) RestoredRevocation(context.Context, string) (store.RevokedCert, error) {
	return store.RevokedCert{}, errors.New("connection refused")
}

func TestRestoredRevocationStoreDown(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	r, err := New(Config{Certs: restoredDown{}, Signer: e.signer, Issuer: e.ca.Intermediate(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Respond(context.Background(), request(t, e.ca.Intermediate(), crypto.SHA256, nil, big.NewInt(7))); a.Status != TryLater {
		t.Fatalf("status %v, want tryLater", a.Status)
	}
}
