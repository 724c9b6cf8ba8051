package kick_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

// kickEvent is the data of a kick event as the plugin reads it.
type kickEvent struct {
	ID     string `json:"id"`
	Device string `json:"device"`
	Reason string `json:"reason"`
}

// nextKick reads the next event of sub, which must be a kick.
func nextKick(t *testing.T, sub *events.Subscription) kickEvent {
	t.Helper()
	select {
	case ev := <-sub.Events():
		f := string(ev.Frame())
		data, ok := strings.CutPrefix(f, "event: kick\ndata: ")
		if !ok {
			t.Fatalf("event %q, want a kick", f)
		}
		var k kickEvent
		if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &k); err != nil {
			t.Fatal(err)
		}
		return k
	case <-time.After(5 * time.Second):
		t.Fatal("no kick event")
	}
	return kickEvent{}
}

func newMosquitto(t *testing.T, hub *events.Hub, ackTimeout time.Duration) *kick.Mosquitto {
	t.Helper()
	m, err := kick.NewMosquitto(kick.MosquittoConfig{Streams: hub, AckTimeout: ackTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMosquittoDisconnect(t *testing.T) {
	ctx := context.Background()
	req := kick.Request{Device: "d1", Reason: "device.revoke"}
	run := func(m *kick.Mosquitto) chan error {
		out := make(chan error, 1)
		go func() { out <- m.Disconnect(ctx, req) }()
		return out
	}
	t.Run("ok ack", func(t *testing.T) {
		hub := events.NewHub(events.Config{})
		m := newMosquitto(t, hub, 5*time.Second)
		sub, _ := hub.Subscribe("mosquitto")
		other, _ := hub.Subscribe("other-broker")
		res := run(m)
		k := nextKick(t, sub)
		if k.Device != "d1" || k.Reason != "device.revoke" || len(k.ID) != 32 {
			t.Errorf("kick event %+v", k)
		}
		if err := m.AckKick("other-broker", k.ID, true, "", 1); !fault.Is(err, fault.NotFound) {
			t.Errorf("ack under another broker name: %v, want not found", err)
		}
		if err := m.AckKick("mosquitto", k.ID, true, "", 1); err != nil {
			t.Fatal(err)
		}
		if err := <-res; err != nil {
			t.Errorf("Disconnect: %v", err)
		}
		if len(other.Events()) != 0 {
			t.Error("a kick reached another broker's stream")
		}
		// Finished: a late ack is unknown.
		if err := m.AckKick("mosquitto", k.ID, true, "", 1); !fault.Is(err, fault.NotFound) {
			t.Errorf("late ack: %v, want not found", err)
		}
	})
	// Two brokers under one name: the one without the device's session
	// answers ok first; the kick is done only when the other did too, and
	// failed when the other could not kick.
	t.Run("every stream must answer ok", func(t *testing.T) {
		for _, second := range []bool{true, false} {
			hub := events.NewHub(events.Config{})
			m := newMosquitto(t, hub, 5*time.Second)
			a, _ := hub.Subscribe("mosquitto")
			b, _ := hub.Subscribe("mosquitto")
			res := run(m)
			k := nextKick(t, a)
			if kb := nextKick(t, b); kb != k {
				t.Fatalf("streams got different kicks %+v %+v", k, kb)
			}
			_ = m.AckKick("mosquitto", k.ID, true, "", 0)
			select {
			case err := <-res:
				t.Fatalf("decided after one ok of two streams: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			_ = m.AckKick("mosquitto", k.ID, second, "kick api failed", 1)
			err := <-res
			if second && err != nil {
				t.Errorf("both ok: Disconnect: %v", err)
			}
			if !second && (err == nil || !strings.Contains(err.Error(), "kick api failed")) {
				t.Errorf("second failed: Disconnect: %v, want the plugin's error", err)
			}
		}
	})
	t.Run("all streams fail", func(t *testing.T) {
		hub := events.NewHub(events.Config{})
		m := newMosquitto(t, hub, 5*time.Second)
		sub, _ := hub.Subscribe("mosquitto")
		res := run(m)
		k := nextKick(t, sub)
		_ = m.AckKick("mosquitto", k.ID, false, "kick api failed", 0)
		if err := <-res; err == nil || !strings.Contains(err.Error(), "kick api failed") {
			t.Errorf("Disconnect: %v, want the plugin's error", err)
		}
	})
	t.Run("no stream", func(t *testing.T) {
		m := newMosquitto(t, events.NewHub(events.Config{}), 5*time.Second)
		if err := m.Disconnect(ctx, req); err == nil || !strings.Contains(err.Error(), "not connected") {
			t.Errorf("Disconnect without a stream: %v", err)
		}
	})
	t.Run("no ack", func(t *testing.T) {
		hub := events.NewHub(events.Config{})
		m := newMosquitto(t, hub, 50*time.Millisecond)
		_, _ = hub.Subscribe("mosquitto")
		if err := m.Disconnect(ctx, req); err == nil || !strings.Contains(err.Error(), "0 of 1 event streams of broker \"mosquitto\" acknowledged within 50ms") {
			t.Errorf("Disconnect without an ack: %v", err)
		}
	})
	t.Run("bad name", func(t *testing.T) {
		if _, err := kick.NewMosquitto(kick.MosquittoConfig{Name: "a/b", Streams: events.NewHub(events.Config{})}); !fault.Is(err, fault.InvalidArgument) {
			t.Errorf("name a/b: %v", err)
		}
	})
}

// Through the durable queue on both databases: a kick without a plugin
// stream is left for a replica that has one, then, Elsewhere later, tried,
// failed and retried; with a stream, the event goes out, the ack finishes
// the row.
func TestMosquittoKickService(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			st := openStore(t, backend)
			clk := testclock.New(base)
			hub := events.NewHub(events.Config{})
			m := newMosquitto(t, hub, 5*time.Second)
			svc := newService(t, st, clk, m)
			ctx := context.Background()
			if err := svc.Kick(ctx, "d1", "device.revoke"); err != nil {
				t.Fatal(err)
			}
			if n := svc.DeliverDue(ctx); n != 0 {
				t.Fatalf("without a stream, at once: delivered %d, want 0 (left to a replica with the stream)", n)
			}
			clk.Add(5 * time.Second)
			if n := svc.DeliverDue(ctx); n != 1 {
				t.Fatalf("delivered %d, want 1", n)
			}
			k := statusOf(t, st, "d1")["mosquitto"]
			if k.Status != store.KickPending || k.Attempts != 1 || !strings.Contains(k.LastError, "not connected") {
				t.Fatalf("without a stream: %+v", k)
			}

			sub, _ := hub.Subscribe("mosquitto")
			// The plugin: acks the kick it reads (no t.Fatal off the test goroutine).
			got := make(chan string, 1)
			go func() {
				ev := <-sub.Events()
				var k kickEvent
				data, _ := strings.CutPrefix(string(ev.Frame()), "event: kick\ndata: ")
				_ = json.Unmarshal([]byte(data), &k)
				got <- k.Device
				_ = m.AckKick("mosquitto", k.ID, true, "", 1)
			}()
			clk.Add(time.Second)
			if n := svc.DeliverDue(ctx); n != 1 {
				t.Fatalf("retry delivered %d, want 1", n)
			}
			if dev := <-got; dev != "d1" {
				t.Errorf("kick event for %q, want d1", dev)
			}
			k = statusOf(t, st, "d1")["mosquitto"]
			if k.Status != store.KickDone || k.Attempts != 2 || k.DoneAt == nil {
				t.Fatalf("after the ack: %+v", k)
			}
		})
	}
}

// ackAll plays the plugin on sub: it acknowledges every kick it reads, ok,
// until the subscription ends, and counts them per device.
func ackAll(sub *events.Subscription, m *kick.Mosquitto, counts *sync.Map) {
	for {
		select {
		case ev := <-sub.Events():
			var k kickEvent
			data, _ := strings.CutPrefix(string(ev.Frame()), "event: kick\ndata: ")
			if json.Unmarshal([]byte(data), &k) != nil {
				continue
			}
			n, _ := counts.LoadOrStore(k.Device, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			_ = m.AckKick("mosquitto", k.ID, true, "", 1)
		case <-sub.Done():
			return
		}
	}
}

// TestMosquittoKickTwoReplicas: two replicas share one database (both
// databases); the plugin streams to replica B only. Kicks recorded through
// A, with both workers draining the queue at the same time, are all
// delivered by B on its first attempt: A leaves them alone instead of
// failing them and burning their retries. With the plugin streaming to
// neither, the kick is still tried (after Elsewhere), retried, and ends
// failed: leaving rows to another replica is bounded.
func TestMosquittoKickTwoReplicas(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			// Each replica has its own connection pool to the one database.
			dsn := testdb.DSN(t, backend)
			st, stB := openDSN(t, dsn), openDSN(t, dsn)
			clk := testclock.New(base)
			hubA, hubB := events.NewHub(events.Config{}), events.NewHub(events.Config{})
			mA, mB := newMosquitto(t, hubA, 5*time.Second), newMosquitto(t, hubB, 5*time.Second)
			svcA, svcB := newService(t, st, clk, mA), newService(t, stB, clk, mB)
			ctx := context.Background()
			sub, _ := hubB.Subscribe("mosquitto")
			var counts sync.Map
			plugin := make(chan struct{})
			go func() { ackAll(sub, mB, &counts); close(plugin) }()

			const n = 20
			for i := range n {
				if err := svcA.Kick(ctx, fmt.Sprintf("d%02d", i), "device.revoke"); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			var deliveredA, deliveredB atomic.Int64
			deliveredA.Add(int64(svcA.DeliverDue(ctx))) // A first: it must leave them
			for range 4 {
				wg.Add(2)
				go func() { defer wg.Done(); deliveredA.Add(int64(svcA.DeliverDue(ctx))) }()
				go func() { defer wg.Done(); deliveredB.Add(int64(svcB.DeliverDue(ctx))) }()
			}
			wg.Wait()
			if deliveredA.Load() != 0 || deliveredB.Load() != n {
				t.Errorf("deliveries: A (no stream) %d, B (stream) %d; want 0 and %d", deliveredA.Load(), deliveredB.Load(), n)
			}
			for i := range n {
				dev := fmt.Sprintf("d%02d", i)
				k := statusOf(t, st, dev)["mosquitto"]
				if k.Status != store.KickDone || k.Attempts != 1 || k.LastError != "" {
					t.Errorf("%s: %+v, want done on the first attempt", dev, k)
				}
				if c, ok := counts.Load(dev); !ok || c.(*atomic.Int32).Load() != 1 {
					t.Errorf("%s: the plugin saw %v kick events, want 1", dev, c)
				}
			}

			// The plugin goes away: nobody holds a stream.
			sub.Close()
			<-plugin
			if err := svcA.Kick(ctx, "lost", "device.revoke"); err != nil {
				t.Fatal(err)
			}
			if a, b := svcA.DeliverDue(ctx), svcB.DeliverDue(ctx); a+b != 0 {
				t.Fatalf("no stream anywhere, at once: delivered %d+%d, want 0", a, b)
			}
			for range 10 {
				clk.Add(10 * time.Second)
				svcA.DeliverDue(ctx)
				svcB.DeliverDue(ctx)
			}
			k := statusOf(t, st, "lost")["mosquitto"]
			if k.Status != store.KickFailed || k.Attempts < 4 || !strings.Contains(k.LastError, "not connected") {
				t.Errorf("no stream anywhere, later: %+v, want failed after its fast retries", k)
			}
		})
	}
}
