package events_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/events"
)

func TestFrames(t *testing.T) {
	for _, tc := range []struct {
		ev   events.Event
		want string
	}{
		{events.Device("dev-1"), "event: device\ndata: {\"device\":\"dev-1\"}\n\n"},
		{events.Reset(), "event: reset\ndata: {}\n\n"},
		{events.Kick("k1", "dev-1", "device.revoke"), "event: kick\ndata: {\"id\":\"k1\",\"device\":\"dev-1\",\"reason\":\"device.revoke\"}\n\n"},
		// A newline in data is escaped: the frame stays one data line.
		{events.New("x", map[string]string{"a": "b\nc"}), "event: x\ndata: {\"a\":\"b\\nc\"}\n\n"},
	} {
		if got := string(tc.ev.Frame()); got != tc.want {
			t.Errorf("frame %q, want %q", got, tc.want)
		}
	}
}

func TestFanOutAndRouting(t *testing.T) {
	h := events.NewHub(events.Config{Buffer: 8})
	a, _ := h.Subscribe("mosquitto")
	b, _ := h.Subscribe("mosquitto")
	c, _ := h.Subscribe("other")
	if n := h.Broadcast(events.Reset()); n != 3 {
		t.Fatalf("broadcast reached %d, want 3", n)
	}
	if n := h.Send("mosquitto", events.Kick("1", "d", "r")); n != 2 {
		t.Fatalf("send reached %d, want 2", n)
	}
	for i, s := range []*events.Subscription{a, b, c} {
		want := []string{"reset", "kick"}
		if i == 2 {
			want = want[:1]
		}
		for _, w := range want {
			select {
			case ev := <-s.Events():
				if ev.Name() != w {
					t.Errorf("subscriber %d got %s, want %s", i, ev.Name(), w)
				}
			default:
				t.Errorf("subscriber %d: no %s event", i, w)
			}
		}
		select {
		case ev := <-s.Events():
			t.Errorf("subscriber %d: unexpected %s", i, ev.Name())
		default:
		}
	}
	a.Close()
	a.Close() // idempotent
	if n := h.Subscribers("mosquitto"); n != 1 {
		t.Errorf("%d mosquitto subscribers after Close, want 1", n)
	}
	if a.Err() != nil {
		t.Errorf("Err after Close: %v", a.Err())
	}
}

// A subscriber that never reads is dropped when its buffer fills; the
// publisher never blocks and the other subscriber gets everything.
func TestSlowSubscriberDropped(t *testing.T) {
	h := events.NewHub(events.Config{Buffer: 4})
	slow, _ := h.Subscribe("mosquitto")
	fast, _ := h.Subscribe("mosquitto")
	var got sync.WaitGroup
	got.Add(1)
	received := 0
	go func() {
		defer got.Done()
		for range 100 {
			<-fast.Events()
			received++
		}
	}()
	done := make(chan struct{})
	go func() {
		for i := range 100 {
			h.DeviceChanged(fmt.Sprintf("d%d", i))
			for len(fast.Events()) == cap(fast.Events()) { // let the fast one drain
				time.Sleep(time.Millisecond)
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publishing blocked on a slow subscriber")
	}
	got.Wait()
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow subscriber not dropped")
	}
	if !errors.Is(slow.Err(), events.ErrSlow) {
		t.Errorf("slow Err = %v", slow.Err())
	}
	if received != 100 {
		t.Errorf("fast subscriber got %d events, want 100", received)
	}
	if h.Dropped() != 1 || h.Subscribers("") != 1 {
		t.Errorf("dropped %d, subscribers %d; want 1, 1", h.Dropped(), h.Subscribers(""))
	}
	if len(slow.Events()) != 4 {
		t.Errorf("slow buffer holds %d, want its cap 4 (no growth)", len(slow.Events()))
	}
}

func TestRunClosesHub(t *testing.T) {
	h := events.NewHub(events.Config{})
	s, _ := h.Subscribe("mosquitto")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- h.Run(ctx) }()
	cancel()
	<-ran
	select {
	case <-s.Done():
	case <-time.After(time.Second):
		t.Fatal("subscription still open after the hub closed")
	}
	if !errors.Is(s.Err(), events.ErrClosed) {
		t.Errorf("Err = %v", s.Err())
	}
	if _, err := h.Subscribe("mosquitto"); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Subscribe after close: %v", err)
	}
}
