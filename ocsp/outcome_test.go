package ocsp

import (
	"context"
	"crypto"
	"math/big"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestOutcome: each answer names one outcome for metrics: a successful
// answer the worst status among its certificates (revoked over unknown over
// good), a refused request "malformed", a responder that could not answer
// "error"; on both databases.
func TestOutcome(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, dsnFor(t, backend))
			other, otherSerial := e.enroll(t, "dev-2")
			inter := e.ca.Intermediate()
			if err := e.st.RevokeCertificate(ctx, otherSerial, 1, e.clock.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			ghost := big.NewInt(0x7eadbeef)
			down, err := New(Config{Certs: failingCerts{}, Signer: e.signer, Issuer: inter})
			if err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name string
				r    *Responder
				der  []byte
				want string
			}{
				{"good", e.r, request(t, inter, crypto.SHA256, nil, e.leaf.SerialNumber), "good"},
				{"good and unknown", e.r, request(t, inter, crypto.SHA256, nil, e.leaf.SerialNumber, ghost), "unknown"},
				{"revoked first", e.r, request(t, inter, crypto.SHA256, nil, other.SerialNumber, e.leaf.SerialNumber), "revoked"},
				{"revoked among all", e.r, request(t, inter, crypto.SHA1, nil, e.leaf.SerialNumber, ghost, other.SerialNumber), "revoked"},
				{"not DER", e.r, []byte("hello"), "malformed"},
				{"empty", e.r, nil, "malformed"},
				{"another issuer", e.r, request(t, otherIssuer(t), crypto.SHA256, nil, e.leaf.SerialNumber), "malformed"},
				{"store down", down, request(t, inter, crypto.SHA256, nil, e.leaf.SerialNumber), "error"},
			}
			for _, c := range cases {
				if got := c.r.Respond(ctx, c.der).Outcome(); got != c.want {
					t.Errorf("%s: outcome %q, want %q", c.name, got, c.want)
				}
			}
		})
	}
}

func TestOutcomeOfEveryStatus(t *testing.T) {
	for _, c := range []struct {
		a    Answer
		want string
	}{
		{Answer{Status: Successful, CertStatus: Good}, "good"},
		{Answer{Status: Successful, CertStatus: Revoked}, "revoked"},
		{Answer{Status: Successful, CertStatus: Unknown}, "unknown"},
		{Answer{Status: MalformedRequest}, "malformed"},
		{Answer{Status: Unauthorized}, "malformed"},
		{Answer{Status: SigRequired}, "malformed"},
		{Answer{Status: InternalError}, "error"},
		{Answer{Status: TryLater}, "error"},
		{Answer{Status: ResponseStatus(4)}, "error"},
	} {
		if got := c.a.Outcome(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.a, got, c.want)
		}
	}
}
