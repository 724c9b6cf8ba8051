package crl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func testIssuer(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func testList(t testing.TB, issuer *x509.Certificate, key *ecdsa.PrivateKey, n *big.Int, entries int, next time.Time) []byte {
	t.Helper()
	rl := &x509.RevocationList{Number: n, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next}
	for i := range entries {
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: big.NewInt(int64(i + 1)), RevocationTime: time.Now(), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestReadHeader: number and nextUpdate of our issuer's lists, refused for
// another issuer (same name, other key), a number beyond int64, garbage.
func TestReadHeader(t *testing.T) {
	ours, key := testIssuer(t, "Gatehouse Intermediate")
	twin, twinKey := testIssuer(t, "Gatehouse Intermediate") // same name, other key
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	huge, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	for _, tc := range []struct {
		name   string
		der    []byte
		issuer *x509.Certificate
		want   int64 // -1: not ok
	}{
		{"empty list", testList(t, ours, key, big.NewInt(42), 0, next), ours, 42},
		{"with entries", testList(t, ours, key, big.NewInt(7), 3, next), ours, 7},
		{"any issuer", testList(t, twin, twinKey, big.NewInt(9), 1, next), nil, 9},
		{"twin issuer", testList(t, twin, twinKey, big.NewInt(9), 1, next), ours, -1},
		{"number beyond int64", testList(t, ours, key, huge, 0, next), ours, -1},
		{"garbage", []byte("not a list"), ours, -1},
		{"empty", nil, ours, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := readHeader(tc.der, tc.issuer)
			if tc.want < 0 {
				if ok {
					t.Fatalf("accepted: %+v", h)
				}
				return
			}
			if !ok || h.number != tc.want || !h.nextUpdate.Equal(next) {
				t.Fatalf("got %+v ok=%v, want number %d next %v", h, ok, tc.want, next)
			}
		})
	}
}

// FuzzReadHeader: readHeader never panics, and whenever crypto/x509 also
// parses the input, both read the same number and nextUpdate.
func FuzzReadHeader(f *testing.F) {
	iss, key := testIssuer(f, "fuzz")
	f.Add(testList(f, iss, key, big.NewInt(1), 0, time.Now().Add(time.Hour)))
	f.Add(testList(f, iss, key, big.NewInt(300), 2, time.Now().Add(time.Hour)))
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		h, ok := readHeader(der, nil)
		rl, err := x509.ParseRevocationList(der)
		if !ok || err != nil || rl.Number == nil || !rl.Number.IsInt64() {
			return
		}
		if h.number != rl.Number.Int64() || !h.nextUpdate.Equal(rl.NextUpdate) {
			t.Fatalf("readHeader %+v, crypto/x509 number %v next %v", h, rl.Number, rl.NextUpdate)
		}
	})
}
