package authz_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/policy"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newAuthorizer(t testing.TB) *authz.Authorizer {
	t.Helper()
	return newAuthorizerWith(t, authz.Config{Now: func() time.Time { return now }})
}

func newAuthorizerWith(t testing.TB, cfg authz.Config) *authz.Authorizer {
	t.Helper()
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := authz.New(cfg)
	a.SetPolicy(p, 1)
	for _, d := range []authz.Device{
		{ID: "temp-1", Fleet: "plant", Profile: "sensor", Roles: []string{"telemetry"}},
		{ID: "temp-2", Fleet: "plant", Profile: "sensor", Roles: []string{"telemetry"}},
		{ID: "ctl-1", Fleet: "plant", Profile: "controller", Roles: []string{"command"}},
	} {
		d.Active, d.Status, d.CertNotAfter = true, "active", now.Add(24*time.Hour)
		a.UpsertDevice(d)
	}
	a.UpsertDevice(authz.Device{ID: "old-1", Fleet: "plant", Active: true, Status: "active", CertNotAfter: now.Add(-time.Second)})
	a.UpsertDevice(authz.Device{ID: "susp-1", Fleet: "plant", Active: false, Status: "suspended", CertNotAfter: now.Add(time.Hour)})
	a.UpsertDevice(authz.Device{ID: "new-1", Fleet: "plant", Active: true, Status: "active"})
	return a
}

func req(action authz.Action, id, topic string) authz.Request {
	return authz.Request{Action: action, Identity: id, ClientID: id, Topic: topic}
}

func TestAuthorize(t *testing.T) {
	a := newAuthorizer(t)
	cases := []struct {
		name   string
		req    authz.Request
		allow  bool
		reason string
	}{
		{"connect", req(authz.Connect, "temp-1", ""), true, "device active"},
		{"connect with spoofed client id", authz.Request{Action: authz.Connect, Identity: "temp-1", ClientID: "temp-2"}, false, "client id does not match the certificate"},
		{"connect without client id", authz.Request{Action: authz.Connect, Identity: "temp-1"}, false, "client id does not match the certificate"},
		{"publish with spoofed client id", authz.Request{Action: authz.Publish, Identity: "temp-1", ClientID: "temp-2", Topic: "fleets/plant/devices/temp-2/telemetry/t"}, false, "client id does not match the certificate"},
		{"no certificate identity", authz.Request{Action: authz.Connect, ClientID: "temp-1"}, false, "no certificate identity"},
		{"unknown device", req(authz.Connect, "ghost", ""), false, "unknown device"},
		{"suspended", req(authz.Connect, "susp-1", ""), false, "device is suspended"},
		{"expired certificate", req(authz.Connect, "old-1", ""), false, "certificate has expired"},
		{"no certificate yet", req(authz.Connect, "new-1", ""), false, "device has no current certificate"},
		{"own telemetry", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/celsius"), true, "granted"},
		{"own telemetry root", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry"), true, "granted"},
		{"other device's telemetry", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-2/telemetry/celsius"), false, "no grant matches"},
		{"sensor sends a command", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-2/cmd/reboot"), false, "no grant matches"},
		{"sensor commands itself", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/cmd/reboot"), false, "no grant matches"},
		{"controller sends a command", authz.Request{Action: authz.Publish, Identity: "ctl-1", ClientID: "ctl-1", Topic: "fleets/plant/devices/temp-1/cmd/reboot", QoS: 1}, true, "granted"},
		{"controller qos 2 above max", authz.Request{Action: authz.Publish, Identity: "ctl-1", ClientID: "ctl-1", Topic: "fleets/plant/devices/temp-1/cmd/reboot", QoS: 2}, false, "qos above the grant's maximum"},
		{"controller retained command", authz.Request{Action: authz.Publish, Identity: "ctl-1", ClientID: "ctl-1", Topic: "fleets/plant/devices/temp-1/cmd/reboot", Retain: true}, false, "retain not allowed by the grant"},
		{"publish wildcard", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/#"), false, "invalid topic name"},
		{"publish NUL", req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/\x00"), false, "invalid topic name"},
		{"subscribe own commands", req(authz.Subscribe, "temp-1", "fleets/plant/devices/temp-1/cmd/#"), true, "granted"},
		{"subscribe one own command", req(authz.Subscribe, "temp-1", "fleets/plant/devices/temp-1/cmd/+"), true, "granted"},
		{"subscribe everything", req(authz.Subscribe, "temp-1", "#"), false, "no grant matches"},
		{"subscribe all commands", req(authz.Subscribe, "temp-1", "fleets/plant/devices/+/cmd/#"), false, "no grant matches"},
		{"subscribe other's commands", req(authz.Subscribe, "temp-1", "fleets/plant/devices/temp-2/cmd/#"), false, "no grant matches"},
		{"subscribe $SYS", req(authz.Subscribe, "temp-1", "$SYS/#"), false, "no grant matches"},
		{"subscribe fleet broadcast", req(authz.Subscribe, "temp-1", "fleets/plant/broadcast/#"), true, "granted"},
		{"subscribe other fleet broadcast", req(authz.Subscribe, "temp-1", "fleets/other/broadcast/#"), false, "no grant matches"},
		{"shared subscription on own commands", req(authz.Subscribe, "temp-1", "$share/g1/fleets/plant/devices/temp-1/cmd/#"), true, "granted"},
		{"shared subscription on everything", req(authz.Subscribe, "temp-1", "$share/g1/#"), false, "no grant matches"},
		{"malformed filter", req(authz.Subscribe, "temp-1", "fleets/plant/devices/#/cmd"), false, "invalid topic filter"},
		{"bad qos", authz.Request{Action: authz.Publish, Identity: "temp-1", ClientID: "temp-1", Topic: "fleets/plant/devices/temp-1/telemetry/x", QoS: 3}, false, "invalid qos"},
		{"unknown action", req("delete", "temp-1", "x"), false, "unknown action"},
		// Deliveries (Mosquitto's read check): a topic name, decided by the
		// subscribe grants.
		{"read own command", req(authz.Read, "temp-1", "fleets/plant/devices/temp-1/cmd/reboot"), true, "granted"},
		{"read fleet broadcast", req(authz.Read, "temp-1", "fleets/plant/broadcast/fw"), true, "granted"},
		{"read retained own command", authz.Request{Action: authz.Read, Identity: "temp-1", ClientID: "temp-1", Topic: "fleets/plant/devices/temp-1/cmd/x", Retain: true}, true, "granted"},
		{"read other's command", req(authz.Read, "temp-1", "fleets/plant/devices/temp-2/cmd/reboot"), false, "no grant matches"},
		{"read own telemetry (publish grant only)", req(authz.Read, "temp-1", "fleets/plant/devices/temp-1/telemetry/t"), false, "no grant matches"},
		{"read $SYS", req(authz.Read, "temp-1", "$SYS/broker/uptime"), false, "no grant matches"},
		{"read a filter", req(authz.Read, "temp-1", "fleets/plant/devices/temp-1/cmd/#"), false, "invalid topic name"},
		{"read suspended", req(authz.Read, "susp-1", "fleets/plant/devices/susp-1/cmd/x"), false, "device is suspended"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the second answer comes from the cache and must agree.
			for i := 0; i < 2; i++ {
				d, err := a.Authorize(context.Background(), tc.req)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allow != tc.allow || d.Reason != tc.reason {
					t.Fatalf("pass %d: %+v, want allow=%v reason=%q", i, d, tc.allow, tc.reason)
				}
			}
		})
	}
}

func TestNoPolicyFailsClosed(t *testing.T) {
	a := authz.New(authz.Config{})
	a.UpsertDevice(authz.Device{ID: "d", Active: true, CertNotAfter: time.Now().Add(time.Hour)})
	d, err := a.Authorize(context.Background(), req(authz.Connect, "d", ""))
	if err == nil || d.Allow {
		t.Fatalf("decision %+v, err %v: want an error and no allow", d, err)
	}
}

func TestInvalidation(t *testing.T) {
	a := newAuthorizer(t)
	ctx := context.Background()
	pub := req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/x")
	mustAllow := func(want bool, what string) {
		t.Helper()
		d, err := a.Authorize(ctx, pub)
		if err != nil || d.Allow != want {
			t.Fatalf("%s: %+v %v, want allow=%v", what, d, err, want)
		}
	}
	mustAllow(true, "warm")
	// Suspension takes effect on the very next request, cached or not.
	a.UpsertDevice(authz.Device{ID: "temp-1", Fleet: "plant", Active: false, Status: "suspended", CertNotAfter: now.Add(time.Hour)})
	mustAllow(false, "after suspend")
	a.UpsertDevice(authz.Device{ID: "temp-1", Fleet: "plant", Active: true, Status: "active", CertNotAfter: now.Add(time.Hour)})
	mustAllow(true, "after reinstate")
	// A new policy version that grants nothing replaces cached allows at once.
	p, err := policy.Compile(ctx, policy.Source{Policy: "package gatehouse.authz\n\ngrants contains {\"action\": \"subscribe\", \"filter\": \"x\"}\n"})
	if err != nil {
		t.Fatal(err)
	}
	a.SetPolicy(p, 2)
	d, err := a.Authorize(ctx, pub)
	if err != nil || d.Allow || d.PolicyVersion != 2 {
		t.Fatalf("after policy change: %+v %v", d, err)
	}
	a.RemoveDevice("temp-1")
	if d, _ := a.Authorize(ctx, pub); d.Allow || d.Reason != "unknown device" {
		t.Fatalf("after remove: %+v", d)
	}
}

// benchDevices loads n devices. Its evaluation bound is generous: the
// benchmarks measure decisions, and on a starved machine one of 100k
// evaluations can pass 100ms, which under the fixed clock would deny that
// device for good (policy_timeout; TestRunawayPolicyIsATimeoutDeny).
func benchDevices(b *testing.B, n int) *authz.Authorizer {
	a := newAuthorizerWith(b, authz.Config{Now: func() time.Time { return now }, EvalTimeout: time.Minute})
	for i := 0; i < n; i++ {
		a.UpsertDevice(authz.Device{ID: fmt.Sprintf("dev-%06d", i), Fleet: "plant", Active: true, Status: "active",
			Roles: []string{"telemetry"}, CertNotAfter: now.Add(time.Hour)})
	}
	return a
}

const benchDeviceCount = 100000

// BenchmarkAuthorize measures, in one run over 100k devices:
//   - opa_per_request: the baseline, evaluating the prepared policy for
//     every request and matching its grants (what a naive core does);
//   - uncached: every request a decision-cache miss (a new topic each time),
//     grants already computed for the device;
//   - cached: the same request repeated.
func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	a := benchDevices(b, benchDeviceCount)
	p, err := policy.Compile(ctx, policy.Default())
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, benchDeviceCount)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%06d", i)
		// Warm each device's grants so "uncached" measures decision misses.
		if d, err := a.Authorize(ctx, req(authz.Publish, ids[i], "fleets/plant/devices/"+ids[i]+"/telemetry/warm")); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
	b.Run("opa_per_request", func(b *testing.B) {
		i := 0
		for b.Loop() {
			id := ids[i%len(ids)]
			gs, err := p.Grants(ctx, policy.Device{ID: id, Fleet: "plant", Roles: []string{"telemetry"}})
			if err != nil || len(gs) == 0 {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("uncached", func(b *testing.B) {
		topics := make([]string, 1024)
		for i := range topics {
			topics[i] = fmt.Sprintf("telemetry/t%d", i)
		}
		i := 0
		for b.Loop() {
			id := ids[i%len(ids)]
			d, err := a.Authorize(ctx, req(authz.Publish, id, "fleets/plant/devices/"+id+"/"+topics[(i/len(ids))%len(topics)]))
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
			i++
		}
	})
	b.Run("cached", func(b *testing.B) {
		r := req(authz.Publish, ids[42], "fleets/plant/devices/"+ids[42]+"/telemetry/warm")
		for b.Loop() {
			if d, err := a.Authorize(ctx, r); err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
}

// changes records what the core announces.
type changes struct{ log []string }

func (c *changes) DeviceChanged(id string) { c.log = append(c.log, "device:"+id) }
func (c *changes) Reset()                  { c.log = append(c.log, "reset") }

// The core announces real changes only: a re-upsert of the same state (the
// sync's overlap re-reads it every poll) is silent.
func TestChangesAnnounced(t *testing.T) {
	ch := &changes{}
	a := newAuthorizerWith(t, authz.Config{Now: func() time.Time { return now }, Changes: ch})
	ch.log = nil
	d, _ := a.Device("temp-1")
	same := d
	same.Labels = map[string]string{} // nil and empty labels decide alike
	a.UpsertDevice(same)
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"same state", func() { a.UpsertDevice(d) }, ""},
		{"suspended", func() { d.Active, d.Status = false, "suspended"; a.UpsertDevice(d) }, "device:temp-1"},
		{"new certificate", func() { d.CertSerial = "02"; a.UpsertDevice(d) }, "device:temp-1"},
		{"label", func() { d.Labels = map[string]string{"a": "b"}; a.UpsertDevice(d) }, "device:temp-1"},
		{"roles", func() { d.Roles = []string{"command"}; a.UpsertDevice(d) }, "device:temp-1"},
		{"same again", func() { a.UpsertDevice(d) }, ""},
		{"new device", func() { a.UpsertDevice(authz.Device{ID: "fresh-1"}) }, "device:fresh-1"},
		{"removed", func() { a.RemoveDevice("fresh-1") }, "device:fresh-1"},
		{"removed unknown", func() { a.RemoveDevice("fresh-1") }, ""},
		{"policy", func() { p, _ := policy.Compile(context.Background(), policy.Default()); a.SetPolicy(p, 2) }, "reset"},
	}
	for _, st := range steps {
		ch.log = nil
		st.do()
		got := ""
		if len(ch.log) > 0 {
			got = fmt.Sprint(ch.log)
			got = got[1 : len(got)-1]
		}
		if got != st.want {
			t.Errorf("%s: announced %q, want %q", st.name, got, st.want)
		}
	}
}

// syncChanges is changes for a core whose Run announces from its own
// goroutine.
type syncChanges struct {
	mu  sync.Mutex
	log []string
}

func (c *syncChanges) DeviceChanged(id string) {
	c.mu.Lock()
	c.log = append(c.log, "device:"+id)
	c.mu.Unlock()
}
func (c *syncChanges) Reset() { c.mu.Lock(); c.log = append(c.log, "reset"); c.mu.Unlock() }
func (c *syncChanges) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.log
	c.log = nil
	return l
}

// A certificate expiring is a change of decisions no write announces: a
// broker caching decisions (the Mosquitto plugin) would keep allowing a
// device whose certificate expired. Run announces each expiry; a wave of
// them (a fleet enrolled together) is one reset.
func TestExpiryAnnounced(t *testing.T) {
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	at := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	ch := &syncChanges{}
	a := newAuthorizerWith(t, authz.Config{Now: at, Changes: ch, WarmEvery: 5 * time.Millisecond})
	for i := range 300 {
		a.UpsertDevice(authz.Device{ID: fmt.Sprintf("wave-%d", i), Fleet: "plant", Active: true, Status: "active", CertNotAfter: now.Add(48 * time.Hour)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		var got []string
		for time.Now().Before(deadline) {
			got = append(got, ch.take()...)
			if slices.Contains(got, want) {
				if len(got) != 1 {
					t.Errorf("announced %q, want only %q", got, want)
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("announced %q, want %q", got, want)
	}
	time.Sleep(30 * time.Millisecond)
	ch.take()
	if d, _ := a.Authorize(ctx, req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/t")); !d.Allow {
		t.Fatalf("temp-1 denied before its certificate expired: %+v", d)
	}
	clock.Store(now.Add(24 * time.Hour).UnixNano()) // temp-1, temp-2, ctl-1 and susp-1 expire
	got := []string{}
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		got = append(got, ch.take()...)
		time.Sleep(5 * time.Millisecond)
	}
	slices.Sort(got)
	if want := []string{"device:ctl-1", "device:susp-1", "device:temp-1", "device:temp-2"}; !slices.Equal(got, want) {
		t.Fatalf("at the certificates' expiry announced %q, want %q", got, want)
	}
	if d, _ := a.Authorize(ctx, req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/t")); d.Allow {
		t.Fatalf("temp-1 allowed after its certificate expired")
	}
	clock.Store(now.Add(48 * time.Hour).UnixNano()) // 300 at once
	wait("reset")
}
