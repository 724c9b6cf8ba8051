package main

import (
	"testing"
	"time"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestCRLValidity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration // 0: refused
	}{
		{"24h", 24 * time.Hour},
		{"10m", 10 * time.Minute},
		{"744h", 744 * time.Hour},
		{"9m", 0},
		{"745h", 0},
		{"-1h", 0},
		{"", 0},
		{"1d", 0},
		{"soon", 0},
	} {
		v := viper.New()
		v.Set(keyCRLValidity, tc.in)
		got, err := crlValidity(v)
		if tc.want == 0 {
			if !fault.Is(err, fault.InvalidArgument) {
				t.Errorf("%q: got %s, %v; want invalid_argument", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
