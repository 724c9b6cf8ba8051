package mqttbench

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/mqttc"
)

// ThroughputConfig describes a publish throughput run: Publishers publish
// as fast as the broker takes it to their own topics for Duration while
// one Subscriber, subscribed to SubFilter, counts what is delivered.
type ThroughputConfig struct {
	Addr       string
	TLS        *tls.Config
	Publishers []Client
	Subscriber Client
	SubFilter  string
	QoS        byte
	Duration   time.Duration
	Payload    int // bytes per message
	// Window is the number of unacknowledged QoS 1 messages per publisher
	// (default 16). QoS 0 is paced by PINGREQs instead (qos0Window).
	Window int
	// Drain is how long the subscriber may keep receiving after the
	// publishers stopped (default 5s; it stops earlier once all arrived).
	Drain time.Duration
}

// ThroughputReport summarises a run.
type ThroughputReport struct {
	Publishers int           `json:"publishers"`
	QoS        byte          `json:"qos"`
	Duration   time.Duration `json:"duration_ns"`
	Sent       int64         `json:"sent"`
	// Acked counts QoS 1 PUBACKs, and for QoS 0 the messages before each
	// answered PINGREQ: what the broker has processed.
	Acked    int64 `json:"acked"`
	Received int64 `json:"received"`
	// SentPerSec is Sent over Duration; DeliveredPerSec is Received over
	// the time from the start to the last delivery.
	SentPerSec      float64     `json:"sent_per_s"`
	DeliveredPerSec float64     `json:"delivered_per_s"`
	Procs           []ProcUsage `json:"procs,omitempty"`
}

// Throughput runs one publish throughput measurement. The processes in pids
// (name → pid; 0 skips) are measured from the first publish until the
// subscriber is done.
func Throughput(ctx context.Context, cfg ThroughputConfig, pids map[string]int) (ThroughputReport, error) {
	if cfg.Window <= 0 {
		cfg.Window = 16
	}
	if cfg.Drain == 0 {
		cfg.Drain = 5 * time.Second
	}
	rep := ThroughputReport{Publishers: len(cfg.Publishers), QoS: cfg.QoS, Duration: cfg.Duration}
	dial := func(c Client) (*mqttc.Conn, error) {
		tc := cfg.TLS.Clone()
		tc.Certificates = []tls.Certificate{c.Cert}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		conn, err := mqttc.Dial(dctx, cfg.Addr, tc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		p, err := conn.Connect(mqttc.ConnectOptions{ClientID: c.ClientID, CleanSession: true}, 30*time.Second)
		if err == nil && p.ReturnCode != mqttc.Accepted {
			err = fmt.Errorf("CONNACK %d", p.ReturnCode)
		}
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		return conn, nil
	}

	sub, err := dial(cfg.Subscriber)
	if err != nil {
		return rep, fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(10*time.Second, mqttc.Subscription{Filter: cfg.SubFilter, QoS: cfg.QoS}); err != nil {
		return rep, fmt.Errorf("subscribe: %w", err)
	}
	_ = sub.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	sa, err := sub.ReadPacket()
	_ = sub.NetConn().SetReadDeadline(time.Time{})
	if err != nil || sa.Type != mqttc.SUBACK || len(sa.ReturnCodes) != 1 || sa.ReturnCodes[0] == mqttc.SubackFailure {
		return rep, fmt.Errorf("subscription to %q refused or not acknowledged: %+v %v", cfg.SubFilter, sa, err)
	}

	pubs := make([]*mqttc.Conn, len(cfg.Publishers))
	for i, c := range cfg.Publishers {
		if pubs[i], err = dial(c); err != nil {
			for _, p := range pubs[:i] {
				_ = p.Close()
			}
			return rep, fmt.Errorf("publisher: %w", err)
		}
	}

	var received atomic.Int64
	var lastRecv atomic.Int64 // ns since start
	subDone := make(chan error, 1)
	start := time.Now()
	go func() {
		for {
			p, err := sub.ReadPacket()
			if err != nil {
				subDone <- err
				return
			}
			if p.Type != mqttc.PUBLISH {
				continue
			}
			received.Add(1)
			lastRecv.Store(int64(time.Since(start)))
			if p.QoS == 1 {
				// Only this goroutine writes to sub.
				// Acknowledgements of a burst go out in one write.
				err := sub.Puback(p.PacketID)
				if err == nil && sub.Buffered() == 0 {
					err = sub.Flush()
				}
				if err != nil {
					subDone <- err
					return
				}
			}
		}
	}()

	w := WatchProcs(pids)
	payload := make([]byte, cfg.Payload)
	stop := make(chan struct{})
	var sent, acked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(pubs))
	for i, c := range pubs {
		wg.Add(1)
		go func(c *mqttc.Conn, topic string) {
			defer wg.Done()
			if err := publishLoop(c, topic, payload, cfg.QoS, cfg.Window, stop, &sent, &acked); err != nil {
				errs <- fmt.Errorf("%s: %w", topic, err)
			}
		}(c, cfg.Publishers[i].Topic)
	}
	time.Sleep(cfg.Duration)
	close(stop)
	wg.Wait()
	rep.Sent, rep.Acked = sent.Load(), acked.Load()
	// Let the subscriber catch up, but not forever: QoS 0 messages the
	// broker dropped never arrive.
	deadline := time.Now().Add(cfg.Drain)
	for received.Load() < rep.Sent && time.Now().Before(deadline) {
		prev := received.Load()
		time.Sleep(200 * time.Millisecond)
		if received.Load() == prev && time.Since(start) > cfg.Duration+time.Second {
			break
		}
	}
	rep.Procs = w.Done()
	rep.Received = received.Load()
	rep.SentPerSec = float64(rep.Sent) / cfg.Duration.Seconds()
	if lr := time.Duration(lastRecv.Load()); lr > 0 {
		rep.DeliveredPerSec = float64(rep.Received) / lr.Seconds()
	}
	for _, p := range pubs {
		_ = p.Disconnect(2 * time.Second)
	}
	_ = sub.Disconnect(2 * time.Second)
	select {
	case err := <-errs:
		return rep, err
	default:
	}
	return rep, nil
}

// qos0Batch and qos0Window pace QoS 0 publishers: a PINGREQ follows every
// batch and at most qos0Window batches may be unanswered. The broker
// handles a connection's packets in order, so a PINGRESP means it has
// processed the batch before it; without this pacing "sent" would count
// messages sitting in socket buffers, which the broker then chews on long
// after the run (and through the next one).
const (
	qos0Batch  = 64
	qos0Window = 4
)

func publishLoop(c *mqttc.Conn, topic string, payload []byte, qos byte, window int, stop <-chan struct{}, sent, acked *atomic.Int64) error {
	if qos == 0 {
		window = qos0Window
	}
	credits := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		credits <- struct{}{}
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			p, err := c.ReadPacket()
			if err != nil {
				readErr <- err
				return
			}
			switch {
			case p.Type == mqttc.PUBACK && qos == 1:
				acked.Add(1)
				credits <- struct{}{}
			case p.Type == mqttc.PINGRESP && qos == 0:
				acked.Add(qos0Batch)
				credits <- struct{}{}
			}
		}
	}()
	for {
		select {
		case <-stop:
			return c.Flush()
		case err := <-readErr:
			return err
		case <-credits:
		}
		if qos == 0 {
			for i := 0; i < qos0Batch; i++ {
				if _, err := c.Publish(topic, payload, 0, false); err != nil {
					return err
				}
			}
			sent.Add(qos0Batch)
			if err := c.Ping(0); err != nil {
				return err
			}
			continue
		}
		if _, err := c.Publish(topic, payload, 1, false); err != nil {
			return err
		}
		sent.Add(1)
		// Flush only when no credit is waiting: a burst of credits goes
		// out as one write.
		if len(credits) == 0 {
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
}
