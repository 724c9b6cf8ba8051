package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// sseStream is a broker plugin's side of GET /hooks/v1/events, read by a
// background goroutine: frames arrive on a channel.
type sseStream struct {
	resp   *http.Response
	frames chan sseEvent
	ended  chan error
}

type sseEvent struct {
	name string
	data map[string]any
	at   time.Time
}

func openEvents(t *testing.T, hooksAddr, secret, broker string) *sseStream {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+hooksAddr+"/hooks/v1/events?broker="+broker, nil)
	if secret != "" {
		req.Header.Set("X-Gatehouse-Hook-Secret", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	s := &sseStream{resp: resp, frames: make(chan sseEvent, 4096), ended: make(chan error, 1)}
	if resp.StatusCode != http.StatusOK {
		return s
	}
	go func() {
		r := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				s.ended <- err
				return
			}
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimSpace(line[len("event: "):])
			case strings.HasPrefix(line, "data: "):
				ev.data = map[string]any{}
				if err := json.Unmarshal([]byte(line[len("data: "):]), &ev.data); err != nil {
					s.ended <- err
					return
				}
			case line == "\n":
				ev.at = time.Now()
				s.frames <- ev
				ev = sseEvent{}
			}
		}
	}()
	return s
}

// waitFor returns the first event named name (for which match holds, if
// given) within d, skipping others.
func (s *sseStream) waitFor(t *testing.T, d time.Duration, name string, match func(map[string]any) bool) sseEvent {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-s.frames:
			if ev.name == name && (match == nil || match(ev.data)) {
				return ev
			}
		case err := <-s.ended:
			t.Fatalf("event stream ended waiting for %s: %v", name, err)
		case <-deadline:
			t.Fatalf("no %s event within %s", name, d)
		}
	}
}

func deviceIs(id string) func(map[string]any) bool {
	return func(d map[string]any) bool { return d["device"] == id }
}

// ackKick posts the plugin's acknowledgement and returns the status.
func ackKick(t *testing.T, hooksAddr, secret string, body map[string]any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+hooksAddr+"/hooks/v1/kicks/ack", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gatehouse-Hook-Secret", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

type mosqKicks struct {
	Kicks []struct {
		Broker    string `json:"broker"`
		Status    string `json:"status"`
		Reason    string `json:"reason"`
		Attempts  int    `json:"attempts"`
		LastError string `json:"last_error"`
	} `json:"kicks"`
}

// TestMosqEventStream drives the Gatehouse side of the gatehouse-mosquitto
// protocol through the real binary, on SQLite and (when configured)
// PostgreSQL: the stream refuses a caller without the secret; a revoke
// through the API is a device event within 1 s and a kick event, whose ack
// finishes the kick (shown under broker mosquitto in the device's
// sessions); a policy activation is a reset; with no stream open a kick
// fails, is retried, and is delivered once the plugin is back.
func TestMosqEventStream(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			var env []string
			if backend == "postgres" {
				env = append(env, "GATEHOUSE_DATABASE_DSN="+testdb.Postgres(t))
			}
			testMosqEventStream(t, env)
		})
	}
}

func testMosqEventStream(t *testing.T, env []string) {
	g := newGatehouse(t, env...)
	g.serve(t, "GATEHOUSE_KICK_MOSQUITTO_ENABLED=true")
	for _, id := range []string{"victim", "suspendee"} {
		g.enroll(t, g.tokens(t, "default", 1)[0], id)
	}

	// Nothing is streamed to a caller without the secret.
	if s := openEvents(t, g.hooksAddr, "", "mosquitto"); s.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("stream without the secret: %s", s.resp.Status)
	}
	s := openEvents(t, g.hooksAddr, g.hookSecret, "mosquitto")
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %s", s.resp.Status, s.resp.Header.Get("Content-Type"))
	}
	hello := s.waitFor(t, 5*time.Second, "hello", nil)
	if hello.data["v"] != 1.0 || hello.data["broker"] != "mosquitto" || hello.data["max_staleness_ms"] != 3000.0 || hello.data["heartbeat_ms"] != 1000.0 {
		t.Errorf("hello %v", hello.data)
	}
	s.waitFor(t, 3*time.Second, "heartbeat", nil)

	// Revoke: a device event within 1 s of the call, and a kick.
	start := time.Now()
	g.api(t, "POST", "/api/v1/devices/victim/revoke", map[string]any{"reason": "keyCompromise"}, http.StatusOK, nil)
	dev := s.waitFor(t, 5*time.Second, "device", deviceIs("victim"))
	if lag := dev.at.Sub(start); lag > time.Second {
		t.Errorf("device event %s after the revoke call began, want <= 1s", lag)
	}
	kick := s.waitFor(t, 5*time.Second, "kick", deviceIs("victim"))
	id, _ := kick.data["id"].(string)
	if kick.data["reason"] != "device.revoke" || id == "" {
		t.Fatalf("kick %v", kick.data)
	}
	if code := ackKick(t, g.hooksAddr, g.hookSecret, map[string]any{"id": "not-" + id, "broker": "mosquitto", "ok": true}); code != http.StatusNotFound {
		t.Errorf("ack of an unknown id: %d, want 404", code)
	}
	if code := ackKick(t, g.hooksAddr, g.hookSecret, map[string]any{"id": id, "broker": "mosquitto", "ok": true, "sessions": 1}); code != http.StatusNoContent {
		t.Fatalf("ack: %d, want 204", code)
	}
	waitKick := func(dev, status string, check func(k mosqKicks) bool) mosqKicks {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var st mosqKicks
			g.api(t, "GET", "/api/v1/devices/"+dev+"/sessions", nil, http.StatusOK, &st)
			if len(st.Kicks) == 1 && st.Kicks[0].Broker == "mosquitto" && st.Kicks[0].Status == status && (check == nil || check(st)) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's kicks: %+v, want one mosquitto kick %s", dev, st, status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitKick("victim", "done", func(k mosqKicks) bool { return k.Kicks[0].Reason == "device.revoke" && k.Kicks[0].Attempts == 1 })

	// A policy activation voids every cached decision.
	src := policy.Default()
	var created struct {
		Version int64 `json:"version"`
	}
	g.api(t, "POST", "/api/v1/policies", map[string]any{"policy": src.Policy + "\n# e2e\n", "tests": src.Tests}, http.StatusCreated, &created)
	g.api(t, "POST", "/api/v1/policies/"+itoa(created.Version)+"/activate", nil, http.StatusOK, nil)
	s.waitFor(t, 5*time.Second, "reset", nil)

	// The plugin goes away: the kick of a suspension fails and is retried.
	// Until the hub notices the closed stream the attempt goes to it and
	// times out unacknowledged; once it has, the replica leaves the kick
	// to one with a stream for kick.Elsewhere (5 s), then fails it as not
	// connected. Either is a failed attempt, kept pending.
	_ = s.resp.Body.Close()
	g.api(t, "POST", "/api/v1/devices/suspendee/suspend", map[string]any{"note": "e2e"}, http.StatusOK, nil)
	waitKick("suspendee", "pending", func(k mosqKicks) bool {
		e := k.Kicks[0].LastError
		return k.Kicks[0].Attempts >= 1 && (strings.Contains(e, "not connected") || strings.Contains(e, "acknowledged within"))
	})
	// Back: the retry reaches the new stream and its ack finishes the kick.
	s = openEvents(t, g.hooksAddr, g.hookSecret, "mosquitto")
	kick = s.waitFor(t, 10*time.Second, "kick", deviceIs("suspendee"))
	if kick.data["reason"] != "device.suspend" {
		t.Errorf("kick %v", kick.data)
	}
	if code := ackKick(t, g.hooksAddr, g.hookSecret, map[string]any{"id": kick.data["id"], "broker": "mosquitto", "ok": true}); code != http.StatusNoContent {
		t.Fatalf("ack: %d", code)
	}
	waitKick("suspendee", "done", nil)
	g.logs.waitLine(t, `msg="session kick delivered"`, "device=suspendee", "broker=mosquitto")

	// The server stops promptly with a stream open (the hub ends it).
	stopped := time.Now()
	g.stop()
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("serve took %s to stop with an event stream open", d)
	}
	select {
	case err := <-s.ended:
		if err == nil || errors.Is(err, http.ErrBodyReadAfterClose) {
			t.Errorf("stream end: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the event stream outlived the server")
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestMosqEventStreamReplicas: two replicas share a PostgreSQL database; a
// revoke and a policy activation made through replica A reach the event
// stream of replica B (after B's sync), so a plugin connected to any
// replica drops what changed.
func TestMosqEventStreamReplicas(t *testing.T) {
	dsn := testdb.Postgres(t)
	a := newGatehouse(t, "GATEHOUSE_DATABASE_DSN="+dsn)
	a.serve(t)
	b := *a
	b.apiAddr, b.hooksAddr, b.diagAddr, b.logs = freeAddr(t), freeAddr(t), freeAddr(t), &logBuffer{}
	b.serve(t)
	a.enroll(t, a.tokens(t, "default", 1)[0], "far-1")

	s := openEvents(t, b.hooksAddr, b.hookSecret, "mosquitto")
	s.waitFor(t, 5*time.Second, "hello", nil)
	start := time.Now()
	a.api(t, "POST", "/api/v1/devices/far-1/revoke", map[string]any{"reason": "keyCompromise"}, http.StatusOK, nil)
	dev := s.waitFor(t, 5*time.Second, "device", deviceIs("far-1"))
	t.Logf("device event on replica B %s after the revoke call on A began", dev.at.Sub(start).Round(time.Millisecond))

	src := policy.Default()
	var created struct {
		Version int64 `json:"version"`
	}
	a.api(t, "POST", "/api/v1/policies", map[string]any{"policy": src.Policy + "\n# replica\n", "tests": src.Tests}, http.StatusCreated, &created)
	start = time.Now()
	a.api(t, "POST", "/api/v1/policies/"+itoa(created.Version)+"/activate", nil, http.StatusOK, nil)
	reset := s.waitFor(t, 10*time.Second, "reset", nil)
	t.Logf("reset on replica B %s after the activation on A began", reset.at.Sub(start).Round(time.Millisecond))
}
