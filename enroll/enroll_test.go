package enroll_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestCreateBatch(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2031, time.January, 2, 3, 4, 5, 0, time.UTC)
	clk := testclock.New(start)
	e := newEnv(t, t.TempDir(), clk.Now)
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "dev-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		}
		return out
	}
	ok := enroll.BatchRequest{Fleet: "default", Profile: "default", Count: 1, TTL: time.Hour, Actor: "tester"}
	with := func(f func(*enroll.BatchRequest)) enroll.BatchRequest { r := ok; f(&r); return r }
	cases := []struct {
		name    string
		req     enroll.BatchRequest
		code    fault.Code // "" for success
		devices []string   // device ids the tokens must carry, in order
		count   int
	}{
		{"count 0", with(func(r *enroll.BatchRequest) { r.Count = 0 }), fault.InvalidArgument, nil, 0},
		{"count negative", with(func(r *enroll.BatchRequest) { r.Count = -1 }), fault.InvalidArgument, nil, 0},
		{"count 100001", with(func(r *enroll.BatchRequest) { r.Count = 100001 }), fault.InvalidArgument, nil, 0},
		{"ttl 0", with(func(r *enroll.BatchRequest) { r.TTL = 0 }), fault.InvalidArgument, nil, 0},
		{"ttl negative", with(func(r *enroll.BatchRequest) { r.TTL = -time.Hour }), fault.InvalidArgument, nil, 0},
		{"ttl over a year", with(func(r *enroll.BatchRequest) { r.TTL = 365*24*time.Hour + time.Second }), fault.InvalidArgument, nil, 0},
		{"duplicate device ids", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{"a", "b", "a"} }),
			fault.InvalidArgument, nil, 0},
		{"device id with space", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{"ok", "a b"} }),
			fault.InvalidArgument, nil, 0},
		{"device id dot-dot", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{".."} }),
			fault.InvalidArgument, nil, 0},
		{"device id with slash", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{"../etc"} }),
			fault.InvalidArgument, nil, 0},
		{"device id empty", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{""} }),
			fault.InvalidArgument, nil, 0},
		{"device id 65 chars", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{strings.Repeat("d", 65)} }),
			fault.InvalidArgument, nil, 0},
		{"count differs from device ids", with(func(r *enroll.BatchRequest) { r.Count = 3; r.DeviceIDs = []string{"a", "b"} }),
			fault.InvalidArgument, nil, 0},
		{"unknown fleet", with(func(r *enroll.BatchRequest) { r.Fleet = "nope" }), fault.NotFound, nil, 0},
		{"unknown profile", with(func(r *enroll.BatchRequest) { r.Profile = "nope" }), fault.NotFound, nil, 0},
		{"empty fleet", with(func(r *enroll.BatchRequest) { r.Fleet = "" }), fault.NotFound, nil, 0},

		{"one token", ok, "", []string{""}, 1},
		{"ttl exactly a year", with(func(r *enroll.BatchRequest) { r.TTL = 365 * 24 * time.Hour }), "", []string{""}, 1},
		{"device ids", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{"gw-1", "gw.2", "GW_3", "mac:00:11"} }),
			"", []string{"gw-1", "gw.2", "GW_3", "mac:00:11"}, 4},
		{"device ids with matching count", with(func(r *enroll.BatchRequest) { r.Count = 2; r.DeviceIDs = []string{"m-1", "m-2"} }),
			"", []string{"m-1", "m-2"}, 2},
		{"device id 64 chars", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = []string{strings.Repeat("d", 64)} }),
			"", []string{strings.Repeat("d", 64)}, 1},
		{"many device ids", with(func(r *enroll.BatchRequest) { r.Count = 0; r.DeviceIDs = ids(500) }), "", ids(500), 500},
		{"2500 tokens (several insert chunks)", with(func(r *enroll.BatchRequest) { r.Count = 2500 }), "", nil, 2500},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := e.st.ListTokenBatches(ctx, 1000)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.svc.CreateBatch(ctx, c.req)
			after, lerr := e.st.ListTokenBatches(ctx, 1000)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if c.code != "" {
				if got := fault.CodeOf(err); got != c.code {
					t.Fatalf("code %q (%v), want %q", got, err, c.code)
				}
				if len(after) != len(before) || b.ID != "" || b.Tokens != nil {
					t.Fatalf("a refused request left a batch behind: %d → %d batches, %+v", len(before), len(after), b.TokenBatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before)+1 {
				t.Fatalf("%d → %d batches", len(before), len(after))
			}
			if b.Count != c.count || len(b.Tokens) != c.count || b.Fleet != c.req.Fleet || b.Profile != c.req.Profile ||
				b.CreatedBy != "tester" || !b.ExpiresAt.Equal(start.Add(c.req.TTL)) {
				t.Fatalf("batch %+v with %d tokens", b.TokenBatch, len(b.Tokens))
			}
			stored, err := e.st.GetTokenBatch(ctx, b.ID)
			if err != nil || stored.Count != c.count || stored.Used != 0 || !stored.ExpiresAt.Equal(b.ExpiresAt) {
				t.Fatalf("stored batch %+v, %v", stored, err)
			}
			seen := make(map[string]bool, len(b.Tokens))
			for i, tk := range b.Tokens {
				if !strings.HasPrefix(tk.Token, enroll.BootstrapPrefix) || len(tk.Token) != len(enroll.BootstrapPrefix)+43 || seen[tk.Token] {
					t.Fatalf("token %d %q is malformed or repeated", i, tk.Token)
				}
				seen[tk.Token] = true
				want := ""
				if c.devices != nil {
					want = c.devices[i]
				}
				if tk.DeviceID != want {
					t.Fatalf("token %d device %q, want %q", i, tk.DeviceID, want)
				}
				// Spot-check storage: only the hash is kept, and it finds the token.
				if i%97 == 0 || i == len(b.Tokens)-1 {
					bt, err := e.st.GetBootstrapToken(ctx, secret.Hash(tk.Token))
					if err != nil || bt.BatchID != b.ID || bt.DeviceID != want || bt.Fleet != "default" || bt.UsedAt != nil ||
						!bt.ExpiresAt.Equal(b.ExpiresAt) || strings.Contains(bt.Hash, tk.Token) {
						t.Fatalf("stored token %+v, %v", bt, err)
					}
				}
			}
			events, err := e.st.ListAudit(ctx, store.AuditFilter{ObjectType: "token_batch", ObjectID: b.ID})
			if err != nil || len(events) != 1 || events[0].Action != "token_batch.create" || events[0].Actor != "tester" {
				t.Fatalf("audit %+v, %v", events, err)
			}
		})
	}
}

// TestEnrollClock: a token expires at created + ttl by the service clock,
// and an expired or spent token issues nothing.
func TestEnrollClock(t *testing.T) {
	ctx := context.Background()
	clk := testclock.New(time.Now())
	e := newEnv(t, t.TempDir(), clk.Now)
	b, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "default", Count: 3, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	key := testpki.Key(t, "P-256")
	csr := []byte(testpki.CSRPEM(t, key))
	created := clk.Now()
	cases := []struct {
		name  string
		at    time.Time
		token int
		code  fault.Code
	}{
		{"just before expiry", created.Add(time.Hour - time.Millisecond), 0, ""},
		// The same key again is a retry and gets the same certificate (see
		// TestEnrollRetry); only within the token's TTL.
		{"spent, retried after expiry", created.Add(time.Hour), 0, fault.TokenUsed},
		{"at expiry", created.Add(time.Hour), 1, fault.TokenExpired},
		{"after expiry", created.Add(48 * time.Hour), 2, fault.TokenExpired},
		{"unknown", created, -1, fault.TokenInvalid},
		{"empty", created, -2, fault.TokenInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk.Set(c.at)
			tok := "ghb_never-issued"
			switch {
			case c.token >= 0:
				tok = b.Tokens[c.token].Token
			case c.token == -2:
				tok = ""
			}
			res, err := e.svc.Enroll(ctx, enroll.Request{Token: tok, CSR: csr})
			if got := fault.CodeOf(err); got != c.code {
				t.Fatalf("code %q (%v), want %q", got, err, c.code)
			}
			if (err == nil) != (res.Certificate != nil) {
				t.Fatalf("result %+v with error %v", res, err)
			}
		})
	}
	stored, err := e.st.GetTokenBatch(ctx, b.ID)
	if err != nil || stored.Used != 1 {
		t.Fatalf("batch used %d (%v), want 1", stored.Used, err)
	}
}

// rsaCSR builds, in raw ASN.1, a CSR for a random RSA modulus of the given
// size with an all-zero signature: no real key needed, and it must be refused
// before any signature check for oversize keys.
func rsaCSR(t testing.TB, bits int) []byte {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
	spki, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	subject, err := asn1.Marshal(pkix.Name{CommonName: "x"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	tbs, err := asn1.Marshal(struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes asn1.RawValue
	}{0, asn1.RawValue{FullBytes: subject}, asn1.RawValue{FullBytes: spki}, asn1.RawValue{FullBytes: []byte{0xa0, 0x00}}})
	if err != nil {
		t.Fatal(err)
	}
	sha256WithRSA := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11},
		Parameters: asn1.NullRawValue}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, sha256WithRSA, asn1.BitString{Bytes: make([]byte, bits/8), BitLength: bits / 8 * 8}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("hand-built CSR does not parse: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestParseCSR(t *testing.T) {
	p256 := testpki.Key(t, "P-256")
	good := []byte(testpki.CSRPEM(t, p256))
	der := testpki.CSR(t, p256)
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tampered := bytes.Clone(der)
	tampered[bytes.Index(tampered, []byte("evil-admin"))] = 'E'
	cases := []struct {
		name string
		in   []byte
		code fault.Code // "" accepts
		key  string     // key type of an accepted CSR
	}{
		{"P-256", good, "", "P-256"},
		{"P-384", []byte(testpki.CSRPEM(t, testpki.Key(t, "P-384"))), "", "P-384"},
		{"Ed25519", []byte(testpki.CSRPEM(t, testpki.Key(t, "Ed25519"))), "", "Ed25519"},
		{"RSA-2048", []byte(testpki.CSRPEM(t, testpki.Key(t, "RSA-2048"))), "", "RSA-2048"},
		{"RSA-1024 parses (profiles refuse it)", []byte(testpki.CSRPEM(t, testpki.Key(t, "RSA-1024"))), "", "RSA-1024"},
		{"NEW CERTIFICATE REQUEST", block("NEW CERTIFICATE REQUEST", der), "", "P-256"},
		{"trailing whitespace", append(bytes.Clone(good), "\n\n \t"...), "", "P-256"},
		{"text before the block", append([]byte("Certificate Request:\n    Data: ...\n"), good...), "", "P-256"},
		{"nil", nil, fault.CSRInvalid, ""},
		{"empty", []byte{}, fault.CSRInvalid, ""},
		{"garbage", []byte("hello world"), fault.CSRInvalid, ""},
		{"DER without PEM", der, fault.CSRInvalid, ""},
		{"truncated PEM", good[:len(good)/2], fault.CSRInvalid, ""},
		{"no END line", bytes.TrimSuffix(bytes.TrimSpace(good), []byte("-----END CERTIFICATE REQUEST-----")), fault.CSRInvalid, ""},
		{"CERTIFICATE block", block("CERTIFICATE", der), fault.CSRInvalid, ""},
		{"empty block", block("CERTIFICATE REQUEST", nil), fault.CSRInvalid, ""},
		{"DER garbage", block("CERTIFICATE REQUEST", []byte("\x30\x03\x02\x01\x01")), fault.CSRInvalid, ""},
		{"truncated DER", block("CERTIFICATE REQUEST", der[:len(der)-1]), fault.CSRInvalid, ""},
		{"DER with trailing bytes", block("CERTIFICATE REQUEST", append(bytes.Clone(der), 0)), fault.CSRInvalid, ""},
		{"tampered subject", block("CERTIFICATE REQUEST", tampered), fault.CSRInvalid, ""},
		{"trailing data", append(bytes.Clone(good), "x"...), fault.CSRInvalid, ""},
		{"two CSRs", append(bytes.Clone(good), good...), fault.CSRInvalid, ""},
		{"over 16 KiB", append(bytes.Clone(good), bytes.Repeat([]byte(" "), enroll.MaxCSRBytes)...), fault.CSRInvalid, ""},
		{"RSA over 8192 bits", rsaCSR(t, 8200), fault.KeyTypeNotAllowed, ""},
		{"RSA 8192 bits, bad signature", rsaCSR(t, 8192), fault.CSRInvalid, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			csr, err := enroll.ParseCSR(c.in)
			if got := fault.CodeOf(err); got != c.code {
				t.Fatalf("code %q (%v), want %q", got, err, c.code)
			}
			if c.code != "" {
				if csr != nil {
					t.Fatal("refused CSR returned anyway")
				}
				return
			}
			if kt := ca.KeyType(csr.PublicKey); kt != c.key {
				t.Fatalf("key %s, want %s", kt, c.key)
			}
		})
	}
}

// FuzzParseCSR: whatever the bytes, ParseCSR returns, never panics, and
// every refusal carries a client-facing code.
func FuzzParseCSR(f *testing.F) {
	good := []byte(testpki.CSRPEM(f, testpki.Key(f, "P-256")))
	f.Add(good)
	f.Add([]byte("garbage"))
	f.Add(good[:len(good)/2])
	f.Add(good[:len(good)-40])
	f.Add([]byte{})
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add(bytes.Replace(good, []byte("CERTIFICATE REQUEST"), []byte("NEW CERTIFICATE REQUEST"), 2))
	f.Add([]byte(testpki.CSRPEM(f, testpki.Key(f, "Ed25519"))))
	f.Fuzz(func(t *testing.T, in []byte) {
		csr, err := enroll.ParseCSR(in)
		if err != nil {
			var fe *fault.Error
			if code := fault.CodeOf(err); code == fault.Internal || !errors.As(err, &fe) ||
				(code != fault.CSRInvalid && code != fault.KeyTypeNotAllowed) {
				t.Fatalf("error without a client code: %q (%v)", code, err)
			}
			if csr != nil {
				t.Fatal("CSR returned with an error")
			}
			return
		}
		if csr == nil || len(in) > enroll.MaxCSRBytes {
			t.Fatalf("accepted %d bytes, csr %v", len(in), csr)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
	})
}

// TestEnrollDeviceClaims: which device a token may enroll. A pre-registered
// (pending) device is claimed only with a token fixed to its id; a token
// that names no device creates new ones and claims nothing.
func TestEnrollDeviceClaims(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), nil)
	if _, err := e.st.CreateFleet(ctx, store.Fleet{Name: "other"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range []store.Device{
		{ID: "pending-1", Fleet: "default", Profile: "default", Status: store.DevicePending},
		{ID: "pending-2", Fleet: "default", Profile: "default", Status: store.DevicePending},
	} {
		if _, err := e.st.CreateDevice(ctx, d, nil); err != nil {
			t.Fatal(err)
		}
	}
	fixed, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "default",
		DeviceIDs: []string{"pending-1", "elsewhere", "fresh-fixed"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Registering it in another fleet after the batch is refused, as a batch
	// refuses an id pending in another fleet: the token could never claim it.
	if _, err := e.st.CreateDevice(ctx, store.Device{ID: "elsewhere", Fleet: "other", Profile: "default",
		Status: store.DevicePending}, nil); fault.CodeOf(err) != fault.DeviceIDReserved {
		t.Fatalf("registering a reserved id in another fleet: %v, want device_id_reserved", err)
	}
	generic, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "default", Count: 3, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tok := map[string]string{"fixed:pending-1": fixed.Tokens[0].Token, "fixed:elsewhere": fixed.Tokens[1].Token,
		"fixed:fresh-fixed": fixed.Tokens[2].Token, "generic:0": generic.Tokens[0].Token,
		"generic:1": generic.Tokens[1].Token, "generic:2": generic.Tokens[2].Token}
	cases := []struct {
		name   string
		token  string
		asked  string
		code   fault.Code
		device string // enrolled device, "" for a generated id
	}{
		// Both ids are fixed to live tokens, so reserved before anything else.
		{"generic token cannot hijack a pending device", "generic:0", "pending-1", fault.DeviceIDReserved, ""},
		{"generic token cannot take another token's id", "generic:0", "elsewhere", fault.DeviceIDReserved, ""},
		{"fixed token claims its pending device", "fixed:pending-1", "", "", "pending-1"},
		{"generic token cannot take an active device", "generic:0", "pending-1", fault.AlreadyExists, ""},
		{"fixed token enrolls the id registration could not take", "fixed:elsewhere", "", "", "elsewhere"},
		{"fixed token creates a new device", "fixed:fresh-fixed", "fresh-fixed", "", "fresh-fixed"},
		{"generic token names a new device", "generic:0", "brand-new", "", "brand-new"},
		{"generic token, generated id", "generic:1", "", "", ""},
		{"pending device still claimable only by its token", "generic:2", "pending-2", fault.AlreadyExists, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.svc.Enroll(ctx, enroll.Request{Token: tok[c.token], DeviceID: c.asked,
				CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))})
			if got := fault.CodeOf(err); got != c.code {
				t.Fatalf("code %q (%v), want %q", got, err, c.code)
			}
			if err != nil {
				return
			}
			if c.device != "" && res.Device.ID != c.device || c.device == "" && !strings.HasPrefix(res.Device.ID, "dev-") {
				t.Fatalf("enrolled %q, want %q", res.Device.ID, c.device)
			}
			if res.Device.Status != store.DeviceActive || res.Certificate.Subject.CommonName != res.Device.ID {
				t.Fatalf("device %+v, CN %q", res.Device, res.Certificate.Subject.CommonName)
			}
		})
	}
	// pending-2 was never claimed, and the refusals spent no token.
	if d, err := e.st.GetDevice(ctx, "pending-2"); err != nil || d.Status != store.DevicePending {
		t.Fatalf("pending-2: %+v %v", d, err)
	}
	if b, err := e.st.GetTokenBatch(ctx, generic.ID); err != nil || b.Used != 2 {
		t.Fatalf("generic batch used %d (%v), want 2", b.Used, err)
	}
}

// TestBatchReservedIDs: a batch that fixes an id already fixed to a live
// token is refused whole, wherever the id sits among thousands (the check
// runs in chunks); once the other batch has expired, the id is free again.
func TestBatchReservedIDs(t *testing.T) {
	ctx := context.Background()
	clk := testclock.New(time.Now())
	e := newEnv(t, t.TempDir(), clk.Now)
	ids := make([]string, 1200)
	for i := range ids {
		ids[i] = fmt.Sprintf("unit-%04d", i)
	}
	first, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "default", DeviceIDs: ids, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, clash := range []string{"unit-0000", "unit-0499", "unit-0500", "unit-1199"} {
		_, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "default",
			DeviceIDs: []string{"fresh-1", clash, "fresh-2"}, TTL: time.Hour})
		if !fault.Is(err, fault.DeviceIDReserved) {
			t.Fatalf("batch fixing %s again: %v, want device_id_reserved", clash, err)
		}
	}
	clk.Set(clk.Now().Add(time.Hour))
	if _, err := e.svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "default",
		DeviceIDs: []string{"unit-0500"}, TTL: time.Hour}); err != nil {
		t.Fatalf("id of an expired batch (%s): %v", first.ID, err)
	}
}
