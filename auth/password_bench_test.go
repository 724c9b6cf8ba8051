package auth_test

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/auth"
)

// BenchmarkHashPassword is the cost of one login (verify costs the same).
func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := auth.HashPassword("correct horse battery staple", auth.DefaultParams); err != nil {
			b.Fatal(err)
		}
	}
}
