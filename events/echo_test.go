package events

import (
	"testing"
	"time"
)

// drain returns the names and frames queued for s so far.
func drain(s *Subscription) []string {
	var got []string
	for {
		select {
		case ev := <-s.Events():
			got = append(got, string(ev.Frame()))
		default:
			return got
		}
	}
}

func TestEchoes(t *testing.T) {
	now := time.Unix(1000, 0)
	h := NewHub(Config{Echo: []time.Duration{2 * time.Second, 31 * time.Second}, Now: func() time.Time { return now }})
	s, err := h.Subscribe("mosquitto")
	if err != nil {
		t.Fatal(err)
	}
	dev := string(Device("d1").Frame())
	h.DeviceChanged("d1")
	h.DeviceChanged("d1")
	h.Send("mosquitto", Kick("k", "d1", "device.revoke")) // kicks are never echoed
	if got := drain(s); len(got) != 3 {
		t.Fatalf("first announcements: %q", got)
	}
	for _, c := range []struct {
		at   time.Duration
		want []string
	}{
		{1900 * time.Millisecond, nil},
		{2 * time.Second, []string{dev}}, // two changes due together: one echo
		{30 * time.Second, nil},
		{31 * time.Second, []string{dev}},
		{120 * time.Second, nil}, // echoes are not echoed again
	} {
		now = time.Unix(1000, 0).Add(c.at)
		h.flushEchoes(now)
		got := drain(s)
		if len(got) != len(c.want) || (len(got) == 1 && got[0] != c.want[0]) {
			t.Fatalf("at +%v: got %q, want %q", c.at, got, c.want)
		}
	}
	if n := h.pendingEchoes(); n != 0 {
		t.Fatalf("%d echoes pending at the end", n)
	}

	// A reset due with device echoes is sent instead of them.
	h.DeviceChanged("d2")
	h.Reset()
	drain(s)
	now = now.Add(2 * time.Second)
	h.flushEchoes(now)
	if got := drain(s); len(got) != 1 || got[0] != string(Reset().Frame()) {
		t.Fatalf("reset echo: %q", got)
	}
}

// Without subscribers nothing is queued; an overflowing queue becomes one
// reset echo, so memory stays bounded.
func TestEchoesBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	h := NewHub(Config{Echo: []time.Duration{time.Second}, Buffer: maxEchoQueue * 2, Now: func() time.Time { return now }})
	h.DeviceChanged("nobody-listens")
	if n := h.pendingEchoes(); n != 0 {
		t.Fatalf("%d echoes queued without subscribers", n)
	}
	s, err := h.Subscribe("mosquitto")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= maxEchoQueue; i++ {
		h.Broadcast(Device("d"))
		<-s.Events()
	}
	if n := h.pendingEchoes(); n != 1 {
		t.Fatalf("%d echoes pending after overflow, want 1 (a reset)", n)
	}
	now = now.Add(time.Second)
	h.flushEchoes(now)
	if got := drain(s); len(got) != 1 || got[0] != string(Reset().Frame()) {
		t.Fatalf("overflow echo: %q", got)
	}
}
