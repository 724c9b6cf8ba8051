package hooks_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// streamFixture is a core announcing its changes to a hub, served by a
// real HTTP server with a settable clock for the core's staleness.
type streamFixture struct {
	core  *authz.Authorizer
	hub   *events.Hub
	srv   *httptest.Server
	clock atomic.Int64
	acks  *ackRecorder
}

type ackRecorder struct{ got chan hooks.KickAck }

func (a *ackRecorder) AckKick(broker, id string, ok bool, errText string, sessions int) error {
	if id != "known" {
		return fault.New(fault.NotFound, "no kick %q", id)
	}
	a.got <- hooks.KickAck{ID: id, Broker: broker, OK: ok, Error: errText, Sessions: sessions}
	return nil
}

func newStreamFixture(t *testing.T, buffer int) *streamFixture {
	t.Helper()
	f := &streamFixture{hub: events.NewHub(events.Config{Buffer: buffer}), acks: &ackRecorder{got: make(chan hooks.KickAck, 1)}}
	f.clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, f.clock.Load()) }
	f.core = authz.New(authz.Config{Now: now, MaxStaleness: 30 * time.Second, Changes: f.hub})
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	f.core.SetPolicy(p, 1)
	f.core.UpsertDevice(authz.Device{ID: "dev1", Fleet: "plant", Active: true, Status: "active", CertSerial: "a1", CertNotAfter: now().Add(time.Hour)})
	f.synced()
	h, err := hooks.New(hooks.Config{Authorizer: f.core, Secret: secret, Events: f.hub, Fresh: f.core, KickAcks: f.acks,
		EventHeartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *streamFixture) synced() {
	now := time.Unix(0, f.clock.Load())
	f.core.DevicesSynced(now)
	f.core.PolicySynced(now)
}

// stream is one open event stream, read event by event by a background
// reader, so waiting for an event that does not come consumes nothing.
type stream struct {
	t      *testing.T
	resp   *http.Response
	frames chan string
	err    chan error
}

func newStream(t *testing.T, resp *http.Response) *stream {
	s := &stream{t: t, resp: resp, frames: make(chan string, 1024), err: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(resp.Body)
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				s.err <- err
				return
			}
			if line == "\n" {
				s.frames <- b.String()
				b.Reset()
			}
		}
	}()
	return s
}

func (f *streamFixture) open(t *testing.T, query string) *stream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/hooks/v1/events"+query, nil)
	req.Header.Set("X-Gatehouse-Hook-Secret", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	return newStream(t, resp)
}

// next returns the next event's frame, skipping heartbeats unless asked.
func (s *stream) next(heartbeats bool) string {
	s.t.Helper()
	for {
		frame, err := s.frame(5 * time.Second)
		if err != nil {
			s.t.Fatalf("reading the stream: %v", err)
		}
		if heartbeats || !strings.HasPrefix(frame, "event: heartbeat\n") {
			return frame
		}
	}
}

// frame returns the next event within d.
func (s *stream) frame(d time.Duration) (string, error) {
	select {
	case f := <-s.frames:
		return f, nil
	case err := <-s.err:
		s.err <- err
		return "", err
	case <-time.After(d):
		return "", errTimeout
	}
}

// ended waits for the stream to end and returns how (io.EOF: cleanly).
func (s *stream) ended(d time.Duration) error {
	deadline := time.After(d)
	for {
		select {
		case <-s.frames:
		case err := <-s.err:
			return err
		case <-deadline:
			return errTimeout
		}
	}
}

var errTimeout = errors.New("timed out")

var atMS = regexp.MustCompile(`"at_ms":\d{13}`)

// TestEventStreamGolden pins the wire format: headers, hello, heartbeat,
// and each event the core and the kicker produce, byte for byte.
func TestEventStreamGolden(t *testing.T) {
	f := newStreamFixture(t, 0)
	s := f.open(t, "")
	if ct, cc := s.resp.Header.Get("Content-Type"), s.resp.Header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	var got strings.Builder
	got.WriteString(s.next(true)) // hello
	got.WriteString(atMS.ReplaceAllString(s.next(true), `"at_ms":<unix ms>`))
	d, _ := f.core.Device("dev1")
	d.Active, d.Status = false, "suspended"
	f.core.UpsertDevice(d)
	got.WriteString(s.next(false))
	p, _ := policy.Compile(context.Background(), policy.Default())
	f.core.SetPolicy(p, 2)
	got.WriteString(s.next(false))
	if n := f.hub.Send("mosquitto", events.Kick("k-1", "dev1", "device.suspend")); n != 1 {
		t.Fatalf("kick reached %d streams", n)
	}
	got.WriteString(s.next(false))
	golden := "testdata/events.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("stream:\n%s\nwant:\n%s", got.String(), want)
	}
	// The hello announces the heartbeat period and a liveness window of
	// three periods, not the core's bound: heartbeats already stop once the
	// core is max_staleness behind.
	if !strings.Contains(string(want), `"max_staleness_ms":60,"heartbeat_ms":20}`) {
		t.Errorf("golden hello does not announce three heartbeat periods")
	}
}

func TestEventStreamRefusals(t *testing.T) {
	f := newStreamFixture(t, 0)
	for _, tc := range []struct {
		name, method, query, secret string
		want                        int
	}{
		{"no secret", "GET", "", "", http.StatusForbidden},
		{"wrong secret", "GET", "", "wrong-secret-of-length", http.StatusForbidden},
		{"no secret, bad broker", "GET", "?broker=a/b", "", http.StatusForbidden},
		{"bad broker", "GET", "?broker=a/b", secret, http.StatusBadRequest},
		{"broker too long", "GET", "?broker=" + strings.Repeat("a", 65), secret, http.StatusBadRequest},
		{"POST", "POST", "", secret, http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, f.srv.URL+"/hooks/v1/events"+tc.query, nil)
			if tc.secret != "" {
				req.Header.Set("X-Gatehouse-Hook-Secret", tc.secret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if strings.Contains(string(body), "event:") || resp.Header.Get("Content-Type") == "text/event-stream" {
				t.Errorf("refused request got a stream: %q", body)
			}
		})
	}
	if n := f.hub.Subscribers(""); n != 0 {
		t.Errorf("%d subscriptions after refusals, want 0", n)
	}
	// Basic auth carries the secret too; the broker name is echoed.
	req, _ := http.NewRequest("GET", f.srv.URL+"/hooks/v1/events?broker=edge-1", nil)
	req.SetBasicAuth("mosquitto", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := newStream(t, resp)
	if hello := s.next(true); !strings.Contains(hello, `"broker":"edge-1"`) {
		t.Errorf("hello %q", hello)
	}
}

// A stale core sends no heartbeats; fresh again, it sends a reset and then
// heartbeats.
func TestEventStreamHeartbeatsStopWhenStale(t *testing.T) {
	f := newStreamFixture(t, 0)
	s := f.open(t, "")
	s.next(true) // hello
	for range 3 {
		if h := s.next(true); !strings.HasPrefix(h, "event: heartbeat\n") {
			t.Fatalf("fresh: %q, want heartbeats", h)
		}
	}
	f.clock.Add(int64(31 * time.Second))
	// A heartbeat already on its way may still arrive (a few at most,
	// bounded so that heartbeats that never stop fail here, not at the
	// test binary's timeout); then silence.
	for i := 0; ; i++ {
		if _, err := s.frame(100 * time.Millisecond); err != nil {
			break
		}
		if i == 5 {
			t.Fatal("stale core: heartbeats keep coming")
		}
	}
	if fr, err := s.frame(300 * time.Millisecond); err == nil {
		t.Fatalf("stale core: got %q within 15 heartbeat periods, want nothing", fr)
	}
	s2 := f.open(t, "")
	s2.next(true) // hello
	if fr, err := s2.frame(300 * time.Millisecond); err == nil {
		t.Fatalf("stale core: got %q within 15 heartbeat periods, want nothing", fr)
	}
	f.synced()
	if fr := s.next(true); fr != "event: reset\ndata: {}\n\n" {
		t.Errorf("fresh again: %q, want a reset first", fr)
	}
	if fr := s.next(true); !strings.HasPrefix(fr, "event: heartbeat\n") {
		t.Errorf("fresh again: %q, want heartbeats", fr)
	}
}

// A stream whose reader stops is dropped when its buffer fills; the core
// publishing changes never waits for it.
func TestEventStreamSlowSubscriberDropped(t *testing.T) {
	f := newStreamFixture(t, 4)
	// Never read until the end: the raw body, not the reader above.
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/hooks/v1/events", nil)
	req.Header.Set("X-Gatehouse-Hook-Secret", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for f.hub.Subscribers("") == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	const n = 200000
	for i := range n {
		f.hub.DeviceChanged("dev-" + string(rune('a'+i%26)))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("publishing %d events took %s: blocked on the slow stream", n, took)
	}
	if f.hub.Dropped() != 1 {
		t.Fatalf("dropped %d subscribers, want 1", f.hub.Dropped())
	}
	s := newStream(t, resp)
	// The dropped stream ends: the reader sees EOF after what was sent.
	if err := s.ended(10 * time.Second); err != io.EOF {
		t.Fatalf("dropped stream: %v, want EOF", err)
	}
	if n := f.hub.Subscribers(""); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

// The stream ends with the request: the subscription is released.
func TestEventStreamEndsWithRequest(t *testing.T) {
	f := newStreamFixture(t, 0)
	s := f.open(t, "")
	s.next(true)
	_ = s.resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for f.hub.Subscribers("") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscription still open after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// And with the hub (server stopping).
	s = f.open(t, "")
	s.next(true)
	f.hub.Close()
	if err := s.ended(5 * time.Second); err != io.EOF {
		t.Errorf("stream after hub close: %v, want EOF", err)
	}
}

func TestKickAckEndpoint(t *testing.T) {
	f := newStreamFixture(t, 0)
	for _, tc := range []struct {
		name, body, secret string
		want               int
	}{
		{"known", `{"id":"known","broker":"mosquitto","ok":true,"sessions":2}`, secret, http.StatusNoContent},
		{"known, failed", `{"id":"known","broker":"edge-1","ok":false,"error":"kick\nfailed"}`, secret, http.StatusNoContent},
		{"unknown", `{"id":"other","broker":"mosquitto","ok":true}`, secret, http.StatusNotFound},
		{"no secret", `{"id":"known","broker":"mosquitto","ok":true}`, "", http.StatusForbidden},
		{"no ok", `{"id":"known","broker":"mosquitto"}`, secret, http.StatusBadRequest},
		{"not json", `id=known`, secret, http.StatusBadRequest},
		{"bad broker", `{"id":"known","broker":"a b","ok":true}`, secret, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/hooks/v1/kicks/ack", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.secret != "" {
				req.Header.Set("X-Gatehouse-Hook-Secret", tc.secret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			select {
			case got := <-f.acks.got:
				if tc.want != http.StatusNoContent {
					t.Errorf("refused ack reached the kicker: %+v", got)
				}
				if tc.name == "known" && (got.Broker != "mosquitto" || !got.OK || got.Sessions != 2) {
					t.Errorf("ack %+v", got)
				}
				if tc.name == "known, failed" && (got.Broker != "edge-1" || got.OK || got.Error != "kick failed") {
					t.Errorf("ack %+v", got)
				}
			default:
				if tc.want == http.StatusNoContent {
					t.Error("ack did not reach the kicker")
				}
			}
		})
	}
}

func FuzzKickAck(f *testing.F) {
	for _, s := range []string{
		`{"id":"k","broker":"mosquitto","ok":true,"sessions":1}`,
		`{"id":"k","ok":false,"error":"` + strings.Repeat("é", 400) + `"}`,
		`{"id":"k","ok":true,"sessions":-1}`,
		`{"id":"","ok":true}`, `{"id":"a b","ok":true}`, `[]`, `null`, `{"ok":true}`,
		`{"id":"k","ok":true,"broker":"..","extra":[1,2]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ack, err := hooks.ParseKickAck(b)
		if err != nil {
			return
		}
		if ack.ID == "" || len(ack.ID) > 128 || strings.ContainsAny(ack.ID, " \n\r\t\x00") {
			t.Errorf("accepted id %q", ack.ID)
		}
		if ack.Broker == "" || ack.Sessions < 0 {
			t.Errorf("accepted %+v", ack)
		}
		if len(ack.Error) > 512+len("…") || !utf8.ValidString(ack.Error) || strings.ContainsAny(ack.Error, "\n\r\x00") {
			t.Errorf("error text %q", ack.Error)
		}
	})
}

// The stream outlives the listener's read and write timeouts (serve sets
// 30 s and 60 s): a stream cut by them would make the plugin reconnect and
// drop its cache every minute.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	f := newStreamFixture(t, 0)
	srv := httptest.NewUnstartedServer(f.srv.Config.Handler)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close) // after the stream's own cleanup closed the body
	f.srv = srv
	s := f.open(t, "")
	s.next(true)
	end := time.Now().Add(600 * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		if fr := s.next(true); !strings.HasPrefix(fr, "event: heartbeat\n") {
			t.Fatalf("got %q", fr)
		}
		n++
	}
	if n < 10 {
		t.Errorf("%d heartbeats in 600ms at 20ms", n)
	}
}

// The plugin's delivery check goes to the native endpoint as action read.
func TestNativeRead(t *testing.T) {
	h := newHandler(t, hooks.MosquittoStatus)
	for _, tc := range []struct {
		topic string
		allow bool
	}{
		{"fleets/plant/devices/dev1/cmd/reboot", true},
		{"fleets/plant/broadcast/fw", true},
		{"fleets/plant/devices/dev2/cmd/reboot", false},
		{"fleets/plant/devices/dev1/cmd/#", false},
	} {
		body := `{"action":"read","client_id":"dev1","identity":"dev1","topic":"` + tc.topic + `","qos":1,"retain":true}`
		req := httptest.NewRequest("POST", "/hooks/v1/authorize", strings.NewReader(body))
		req.Header.Set("X-Gatehouse-Hook-Secret", secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		want := `{"allow":false}`
		if tc.allow {
			want = `{"allow":true}`
		}
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
			t.Errorf("read %s: %d %s, want %s", tc.topic, rec.Code, rec.Body.String(), want)
		}
	}
}

// The event stream and kick acknowledgements need real credentials even
// when hooks.allow_unauthenticated serves anonymous decisions: a stream
// tells which devices change, and a forged ok ack would mark a kick done
// that no broker made.
func TestEventsNeedCredentialsWhenHooksAreOpen(t *testing.T) {
	hub := events.NewHub(events.Config{})
	core := authz.New(authz.Config{MaxStaleness: 30 * time.Second, Changes: hub})
	acks := &ackRecorder{got: make(chan hooks.KickAck, 1)}
	for _, withSecret := range []bool{true, false} {
		cfg := hooks.Config{Authorizer: core, Events: hub, Fresh: core, KickAcks: acks, AllowUnauthenticated: true}
		if withSecret {
			cfg.Secret = secret
		}
		h, err := hooks.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/hooks/v1/events", ""},
			{"POST", "/hooks/v1/kicks/ack", `{"id":"x","broker":"mosquitto","ok":true}`},
		} {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("secret configured %v: anonymous %s %s → %d, want 403", withSecret, c.method, c.path, resp.StatusCode)
			}
		}
		// The anonymous decision itself is still served (the opt-in).
		resp, err := http.Post(srv.URL+"/hooks/v1/authorize", "application/json",
			strings.NewReader(`{"action":"publish","client_id":"dev1","identity":"dev1","topic":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("secret configured %v: anonymous authorize → %d, want 200", withSecret, resp.StatusCode)
		}
		srv.Close()
	}
	if n := hub.Subscribers(""); n != 0 {
		t.Errorf("%d anonymous subscriptions, want 0", n)
	}
	select {
	case a := <-acks.got:
		t.Errorf("anonymous ack reached the kicker: %+v", a)
	default:
	}
}
