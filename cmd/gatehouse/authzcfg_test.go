package main

import (
	"testing"
	"time"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestMaxStalenessConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"0", 0, true},
		{"0s", 0, true},
		{"5s", 5 * time.Second, true},
		{"10m", 10 * time.Minute, true},
		{"4s", 0, false},
		{"1ns", 0, false},
		{"-30s", 0, false},
		{"", 0, false},
		{"30", 0, false},
		{"soon", 0, false},
	} {
		v := viper.New()
		v.Set(keyMaxStaleness, tc.in)
		got, err := maxStaleness(v)
		if !tc.ok {
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
