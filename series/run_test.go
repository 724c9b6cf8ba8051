package series

import (
	"testing"
	"time"
)

func TestUntilSample(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		now  time.Duration // past 12:00
		lead time.Duration
		want time.Duration
	}{
		{0, time.Second, 59 * time.Second},
		{30 * time.Second, time.Second, 29 * time.Second},
		{58*time.Second + 500*time.Millisecond, time.Second, 500 * time.Millisecond},
		{59 * time.Second, time.Second, time.Minute}, // at the point: the next minute's
		{59*time.Second + 500*time.Millisecond, time.Second, 59*time.Second + 500*time.Millisecond},
		{10 * time.Second, 5 * time.Second, 45 * time.Second},
	} {
		if got := untilSample(base.Add(tc.now), tc.lead); got != tc.want {
			t.Errorf("at 12:00+%s lead %s: %s, want %s", tc.now, tc.lead, got, tc.want)
		}
	}
}
