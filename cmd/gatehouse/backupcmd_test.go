package main

import (
	"math"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestRestoreFloor(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	big := int64(math.MaxInt64 / 4)
	for _, tc := range []struct {
		name     string
		base     int64
		backupAt time.Time
		want     int64
		err      bool
	}{
		{"wall clock above a small number", 7, now.Add(-time.Hour), now.UnixMilli(), false},
		{"large number: gap and elapsed time", big, now.Add(-time.Second), big + crlRestoreGap + 1000, false},
		{"backup from the future: no elapsed time", big, now.Add(time.Hour), big + crlRestoreGap, false},
		{"later restore of the same backup goes higher", big, now.Add(-2 * time.Second), big + crlRestoreGap + 2000, false},
		{"tampered number overflows", math.MaxInt64 - 5, now, 0, true},
		{"beyond half the range", math.MaxInt64/2 + 1, now, 0, true},
		{"elapsed time overflows", math.MaxInt64/2 - crlRestoreGap, time.Unix(-1<<40, 0), 0, true},
		{"negative number", -1, now, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := restoreFloor(tc.base, tc.backupAt, now)
			if tc.err {
				if !fault.Is(err, fault.InvalidArgument) {
					t.Fatalf("got %d, %v; want invalid_argument", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
