// Package mqttbench measures an MQTT broker under load with many
// certificate-authenticated clients: a CONNECT storm (every client connects
// at once, publishes once, and the broker's decision on each CONNECT is
// checked against what it should have been) and publish throughput.
package mqttbench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/mqttc"
)

// Client is one connection the load tool makes.
type Client struct {
	// Name is the device whose certificate the client presents.
	Name string
	// ClientID is the MQTT client id it sends: the device's own id, or
	// another device's for a spoof.
	ClientID string
	Cert     tls.Certificate
	// Topic the client publishes to once connected (empty: none).
	Topic string
	// ExpectAllow is the right decision: a device with its own client id
	// and a current certificate is allowed; a spoof or a revoked device is
	// refused.
	ExpectAllow bool
	// Kind labels the client in the report: "device", "spoof", "revoked".
	Kind string
}

// Outcome of one CONNECT.
const (
	OutAccepted = "accepted"    // CONNACK 0
	OutRefused  = "refused"     // CONNACK ≠ 0
	OutTLS      = "tls-refused" // a TLS alert: the broker refused the certificate
	OutClosed   = "closed"      // the broker closed the connection before a CONNACK, without an alert
	OutTimeout  = "timeout"     // no CONNACK within the timeout
	OutError    = "error"       // TCP connect failed, or a protocol error
)

// StormConfig describes a CONNECT storm.
type StormConfig struct {
	Addr string
	// TLS is the base client configuration (RootCAs, ServerName); each
	// client adds its own certificate.
	TLS *tls.Config
	// Clients connect all at once (bounded by MaxInflight); Late clients
	// (spoofs) connect once every Client is done, so their effect on live
	// sessions shows in the session check that follows.
	Clients, Late []Client
	// MaxInflight bounds concurrent connection attempts; 0 means all at once.
	MaxInflight int
	Timeout     time.Duration // per CONNECT, TCP to CONNACK (default 30s)
	QoS         byte          // of the single publish (1: waits for the PUBACK)
	KeepAlive   uint16
}

// Result is one client's CONNECT.
type Result struct {
	Client    *Client
	Outcome   string
	Code      byte          // CONNACK code when Outcome is accepted or refused
	Latency   time.Duration // dial start to CONNACK (or failure)
	Done      time.Duration // since the storm started
	Published bool          // the publish went out (and was acknowledged at QoS 1)
	Err       error
	conn      *mqttc.Conn
}

// Wrong reports whether the broker's decision contradicts ExpectAllow.
// Timeouts, TCP errors and connections closed without a CONNACK or a TLS
// alert are not decisions (an overloaded broker drops handshakes too);
// they count as errors.
func (r *Result) Wrong() bool {
	switch r.Outcome {
	case OutAccepted:
		return !r.Client.ExpectAllow
	case OutRefused, OutTLS:
		return r.Client.ExpectAllow
	}
	return false
}

// IsError reports an outcome that is no decision.
func (r *Result) IsError() bool {
	return r.Outcome == OutTimeout || r.Outcome == OutError || r.Outcome == OutClosed
}

// StormReport summarises a storm.
type StormReport struct {
	N            int            `json:"n"` // clients of Kind "device"
	Spoofs       int            `json:"spoofs"`
	Revoked      int            `json:"revoked"`
	AllConnected time.Duration  `json:"all_connected_ns"` // until the last expected-allowed CONNACK 0; 0 if some never came
	Wall         time.Duration  `json:"wall_ns"`          // until every client of the first wave finished
	Accepted     int            `json:"accepted"`         // of the expected-allowed clients
	P50          time.Duration  `json:"p50_ns"`
	P99          time.Duration  `json:"p99_ns"`
	Max          time.Duration  `json:"max_ns"`
	Outcomes     map[string]int `json:"outcomes"`      // "accepted", "refused(5)", "tls-refused", …
	Codes        map[byte]int   `json:"connack_codes"` // CONNACK code histogram, all clients
	Published    int            `json:"published"`
	Wrong        int            `json:"wrong_decisions"`
	WrongDetail  []string       `json:"wrong_detail,omitempty"` // first few
	Errors       int            `json:"errors"`
	ErrorDetail  []string       `json:"error_detail,omitempty"` // first few
	// Errors are outcomes that are no decision: timeouts, TCP errors,
	// connections closed without CONNACK or TLS alert.
	// SessionsLost counts first-wave clients accepted whose connection did
	// not answer a PINGREQ after the late wave: a spoof took the session over.
	SessionsLost int         `json:"sessions_lost"`
	Procs        []ProcUsage `json:"procs,omitempty"`
}

// Storm runs a CONNECT storm. The connections stay open until every
// client is done and the sessions were checked, then all disconnect.
func Storm(ctx context.Context, cfg StormConfig) (StormReport, []*Result) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	rep := StormReport{Outcomes: map[string]int{}, Codes: map[byte]int{}}
	for _, c := range append(append([]Client(nil), cfg.Clients...), cfg.Late...) {
		switch c.Kind {
		case "device":
			rep.N++
		case "spoof":
			rep.Spoofs++
		case "revoked":
			rep.Revoked++
		}
	}
	start := time.Now()
	first := runWave(ctx, cfg, cfg.Clients, start)
	rep.Wall = time.Since(start)
	late := runWave(ctx, cfg, cfg.Late, start)
	// Sessions of the first wave that a late spoof took over are closed by
	// now; one PINGREQ round trip on each tells.
	rep.SessionsLost = checkSessions(first, cfg.Timeout)
	all := append(first, late...)
	var lat []time.Duration
	allIn := true
	for _, r := range all {
		key := r.Outcome
		if r.Outcome == OutAccepted || r.Outcome == OutRefused {
			rep.Codes[r.Code]++
			if r.Outcome == OutRefused {
				key = fmt.Sprintf("refused(%d)", r.Code)
			}
		}
		rep.Outcomes[r.Client.Kind+" "+key]++
		if r.Published {
			rep.Published++
		}
		if r.Wrong() {
			rep.Wrong++
			if len(rep.WrongDetail) < 10 {
				rep.WrongDetail = append(rep.WrongDetail, fmt.Sprintf("%s %s (client id %s): %s, expected %s",
					r.Client.Kind, r.Client.Name, r.Client.ClientID, key, map[bool]string{true: "allow", false: "refuse"}[r.Client.ExpectAllow]))
			}
		}
		if r.IsError() {
			rep.Errors++
			if len(rep.ErrorDetail) < 10 {
				rep.ErrorDetail = append(rep.ErrorDetail, fmt.Sprintf("%s %s: %s: %v", r.Client.Kind, r.Client.Name, r.Outcome, r.Err))
			}
		}
		if !r.Client.ExpectAllow {
			continue
		}
		if r.Outcome == OutAccepted {
			rep.Accepted++
			lat = append(lat, r.Latency)
			if r.Done > rep.AllConnected {
				rep.AllConnected = r.Done
			}
		} else {
			allIn = false
		}
	}
	if !allIn {
		rep.AllConnected = 0
	}
	rep.P50, rep.P99, rep.Max = Percentile(lat, 50), Percentile(lat, 99), Percentile(lat, 100)
	disconnectAll(all)
	return rep, all
}

func runWave(ctx context.Context, cfg StormConfig, clients []Client, start time.Time) []*Result {
	res := make([]*Result, len(clients))
	var wg sync.WaitGroup
	var sem chan struct{}
	if cfg.MaxInflight > 0 {
		sem = make(chan struct{}, cfg.MaxInflight)
	}
	gate := make(chan struct{})
	for i := range clients {
		res[i] = &Result{Client: &clients[i]}
		wg.Add(1)
		go func(r *Result) {
			defer wg.Done()
			<-gate
			if sem != nil {
				sem <- struct{}{}
				defer func() { <-sem }()
			}
			connectOne(ctx, cfg, r, start)
		}(res[i])
	}
	// Every goroutine exists before the first dial: the storm starts at
	// once instead of at the speed goroutines are created.
	close(gate)
	wg.Wait()
	return res
}

func connectOne(ctx context.Context, cfg StormConfig, r *Result, start time.Time) {
	tc := cfg.TLS.Clone()
	tc.Certificates = []tls.Certificate{r.Client.Cert}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	marked := false
	defer func() {
		if !marked {
			r.Latency, r.Done = time.Since(t0), time.Since(start)
		}
	}()
	c, err := mqttc.Dial(cctx, cfg.Addr, tc)
	if err != nil {
		r.Outcome, r.Err = classify(err), err
		return
	}
	left := cfg.Timeout - time.Since(t0)
	if left <= 0 {
		left = time.Millisecond
	}
	p, err := c.Connect(mqttc.ConnectOptions{ClientID: r.Client.ClientID, CleanSession: true, KeepAlive: cfg.KeepAlive}, left)
	if err != nil {
		// With TLS 1.3 the server checks the client certificate after
		// the client's handshake finished: a refusal shows on first read.
		r.Outcome, r.Err = classify(err), err
		_ = c.Close()
		return
	}
	r.Code = p.ReturnCode
	if p.ReturnCode != mqttc.Accepted {
		r.Outcome = OutRefused
		_ = c.Close()
		return
	}
	r.Outcome, r.conn = OutAccepted, c
	// The CONNACK is the latency mark; the publish happens after it.
	r.Latency, r.Done, marked = time.Since(t0), time.Since(start), true
	if r.Client.Topic == "" {
		return
	}
	if err := publishOnce(c, r.Client.Topic, cfg.QoS, cfg.Timeout); err != nil {
		r.Err = fmt.Errorf("publish: %w", err)
		return
	}
	r.Published = true
}

func publishOnce(c *mqttc.Conn, topic string, qos byte, timeout time.Duration) error {
	id, err := c.Publish(topic, []byte("storm"), qos, false)
	if err != nil {
		return err
	}
	_ = c.NetConn().SetDeadline(time.Now().Add(timeout))
	defer c.NetConn().SetDeadline(time.Time{})
	if err := c.Flush(); err != nil {
		return err
	}
	if qos == 0 {
		return nil
	}
	for {
		p, err := c.ReadPacket()
		if err != nil {
			return err
		}
		if p.Type == mqttc.PUBACK && p.PacketID == id {
			return nil
		}
	}
}

// classify names a failure before the CONNACK.
func classify(err error) string {
	var ne net.Error
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &alert), errors.As(err, &rec), errors.As(err, &cve):
		return OutTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return OutTimeout
	case errors.Is(err, mqttc.ErrMalformed):
		return OutError
	case isReset(err):
		return OutClosed
	}
	return OutError
}

func isReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "broken pipe")
}

func checkSessions(rs []*Result, timeout time.Duration) int {
	var lost atomic.Int64
	eachConn(rs, func(c *mqttc.Conn) {
		if !alive(c, timeout) {
			lost.Add(1)
		}
	})
	return int(lost.Load())
}

// eachConn runs fn on every open connection of rs, 256 at a time, and
// waits for all.
func eachConn(rs []*Result, fn func(c *mqttc.Conn)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, r := range rs {
		if r.conn == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(c *mqttc.Conn) {
			defer wg.Done()
			defer func() { <-sem }()
			fn(c)
		}(r.conn)
	}
	wg.Wait()
}

func alive(c *mqttc.Conn, timeout time.Duration) bool {
	if err := c.Ping(timeout); err != nil {
		return false
	}
	_ = c.NetConn().SetReadDeadline(time.Now().Add(timeout))
	defer c.NetConn().SetReadDeadline(time.Time{})
	for {
		p, err := c.ReadPacket()
		if err != nil {
			return false
		}
		if p.Type == mqttc.PINGRESP {
			return true
		}
	}
}

func disconnectAll(rs []*Result) {
	eachConn(rs, func(c *mqttc.Conn) { _ = c.Disconnect(2 * time.Second) })
	for _, r := range rs {
		r.conn = nil
	}
}

// Percentile is the p-th percentile (nearest rank) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(s) {
		rank = len(s) - 1
	}
	return s[rank]
}
