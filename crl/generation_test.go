package crl_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestForGeneration: /crl is the first intermediate's list while it is
// retired but valid, else the current one; /crl/<n> is generation n's.
func TestForGeneration(t *testing.T) {
	g1, g2, g3 := []byte("g1"), []byte("g2"), []byte("g3")
	rotated := &crl.Current{CRL: store.CRL{DER: g3, Others: []store.IssuerCRL{{Generation: 2, DER: g2}, {Generation: 1, DER: g1}}}, Generation: 3}
	firstGone := &crl.Current{CRL: store.CRL{DER: g3, Others: []store.IssuerCRL{{Generation: 2, DER: g2}}}, Generation: 3}
	never := &crl.Current{CRL: store.CRL{DER: g1}, Generation: 1}
	for _, c := range []struct {
		name string
		cur  *crl.Current
		gen  int
		want []byte
	}{
		{"legacy URL after rotation", rotated, 0, g1},
		{"legacy URL, first intermediate expired", firstGone, 0, g3},
		{"legacy URL, no rotation", never, 0, g1},
		{"generation 1", rotated, 1, g1},
		{"retired generation", rotated, 2, g2},
		{"current generation", rotated, 3, g3},
		{"unknown generation", rotated, 4, nil},
		{"expired generation", firstGone, 1, nil},
	} {
		if got := c.cur.ForGeneration(c.gen); string(got) != string(c.want) {
			t.Errorf("%s: ForGeneration(%d) = %q, want %q", c.name, c.gen, got, c.want)
		}
	}
}
