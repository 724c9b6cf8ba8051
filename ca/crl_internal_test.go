package ca

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"testing"
)

// FuzzSerialBytes: for any hex string serialBytes accepts, its bytes are
// the DER INTEGER content encoding/asn1 produces for the same number.
func FuzzSerialBytes(f *testing.F) {
	for _, s := range []string{"1", "80", "00ff", "abc", "7f", "ff", "0", "", "xyz", "0000", "123456789abcdef0123456789abcdef012345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := serialBytes(nil, s)
		n, ok := new(big.Int).SetString(s, 16)
		valid := ok && n.Sign() > 0 && len(s) <= 64 && s[0] != '+' && s[0] != '-' && !bytes.ContainsAny([]byte(s), "_xX")
		if err != nil {
			if valid {
				t.Fatalf("serialBytes(%q) refused a valid serial: %v", s, err)
			}
			return
		}
		if !ok || n.Sign() <= 0 {
			t.Fatalf("serialBytes(%q) accepted an invalid serial", s)
		}
		der, _ := asn1.Marshal(n)
		if !bytes.Equal(der[2:], got) {
			t.Fatalf("serialBytes(%q) = %x, want %x", s, got, der[2:])
		}
	})
}
