package authz_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// perDeviceTwin adds to a policy a rule that never grants (no id has a
// '#') but looks at the id, so the twin is evaluated per device and must
// decide every request exactly as the shared original.
const perDeviceTwin = "\ngrants contains {\"action\": \"publish\", \"filter\": \"never\", \"rule\": \"never\"} if input.device.id == \"#\"\n"

var sharedPolicies = map[string]string{
	"default+extra": policy.Default().Policy + scaleExtra,
	"sprintf and rule names": `package gatehouse.authz

grants contains {"action": "publish", "filter": sprintf("fleets/%s/devices/%s/#", [input.device.fleet, input.device.id]), "max_qos": 1, "rule": concat("-", ["own", input.device.id])}

grants contains {"action": "subscribe", "filter": concat("/", [input.device.id, "+", "cmd"]), "retain": false, "rule": "cmd"} if "command" in input.device.roles

grants contains {"action": "subscribe", "filter": concat("/", ["fleets", input.device.fleet, "#"]), "max_qos": 0, "rule": "fleet-wide"} if input.device.profile == "gateway"

grants contains {"action": "publish", "filter": concat("/", ["x", input.device.labels.site, "d1", "#"]), "retain": false, "rule": "shared-d1"}

grants contains {"action": "publish", "filter": concat("/", ["x", input.device.labels.site, input.device.id, "#"]), "max_qos": 0, "rule": "own-site"}
`,
}

// TestSharedDecidesAsPerDevice: for random devices and requests, a core on
// a shared policy and a core on its per-device twin give the same
// decisions (allow, reason, rule), including ids that are not shared.
func TestSharedDecidesAsPerDevice(t *testing.T) {
	ctx := context.Background()
	for name, src := range sharedPolicies {
		t.Run(name, func(t *testing.T) {
			shared, err := policy.Compile(ctx, policy.Source{Policy: src})
			if err != nil {
				t.Fatal(err)
			}
			twin, err := policy.Compile(ctx, policy.Source{Policy: src + perDeviceTwin})
			if err != nil {
				t.Fatal(err)
			}
			if !shared.Analyze(ctx) || twin.Analyze(ctx) {
				t.Fatalf("Shared() = %v / twin %v: want true / false", shared.Shared(), twin.Shared())
			}
			rng := rand.New(rand.NewPCG(5, 8))
			clock := authz.Config{Now: func() time.Time { return now }, EvalTimeout: time.Minute} // no timeout flakes on a busy machine
			cores := [2]*authz.Authorizer{authz.New(clock), authz.New(clock)}
			cores[0].SetPolicy(shared, 3)
			cores[1].SetPolicy(twin, 3)
			var devs []authz.Device
			for i := range 60 {
				d := randomDevice(rng, i)
				devs = append(devs, d)
				cores[0].UpsertDevice(d)
				cores[1].UpsertDevice(d)
			}
			// One core warmed ahead, the other on demand. Ids with a '+'
			// or '/' make invalid grants: warming reports it, and their
			// requests fail alike on both cores.
			_, _ = cores[rng.IntN(2)].WarmGrants(ctx)
			allowed := 0
			for range 4000 {
				d := devs[rng.IntN(len(devs))]
				r := randomRequest(rng, d, devs)
				got, err0 := cores[0].Authorize(ctx, r)
				want, err1 := cores[1].Authorize(ctx, r)
				if (err0 == nil) != (err1 == nil) || got != want {
					t.Fatalf("request %+v:\nshared     %+v %v\nper-device %+v %v", r, got, err0, want, err1)
				}
				if got.Allow {
					allowed++
				}
			}
			if allowed < 40 || allowed > 3960 {
				t.Fatalf("%d of 4000 requests allowed: the generator does not exercise both outcomes", allowed)
			}
		})
	}
}

var (
	randIDs    = []string{"d1", "dev-2", "x", "gw.7", "S:1", "a+b", "a/b", "", "d1d1", "verylongid-0123456789012345678901234567890123456789012345678901234"}
	randFleets = []string{"f1", "f2", "d1"}
)

func randomDevice(rng *rand.Rand, i int) authz.Device {
	id := randIDs[rng.IntN(len(randIDs))]
	if id != "" && rng.IntN(3) > 0 {
		id = fmt.Sprintf("%s-%d", id, i)
	}
	d := authz.Device{ID: id, Fleet: randFleets[rng.IntN(len(randFleets))], Profile: []string{"sensor", "gateway"}[rng.IntN(2)],
		Active: true, Status: "active", Labels: map[string]string{"site": []string{"s1", "s2"}[rng.IntN(2)], "hw": []string{"rev-a", "rev-b"}[rng.IntN(2)]},
		Roles: []string{"telemetry"}, CertSerial: "01", CertNotAfter: now.Add(time.Hour)}
	if rng.IntN(3) == 0 {
		d.Roles = append(d.Roles, "command")
	}
	return d
}

// randomRequest asks about d's own topics, its fleet's, another device's,
// with wildcards, QoS and retain at random.
func randomRequest(rng *rand.Rand, d authz.Device, devs []authz.Device) authz.Request {
	other := devs[rng.IntN(len(devs))]
	ids := []string{d.ID, other.ID, "+", "#", "d1"}
	fleets := []string{d.Fleet, other.Fleet, "+"}
	subs := []string{"telemetry/t", "state/#", "cmd/reboot", "cmd", "+", "events/e"}
	topics := []string{
		"fleets/" + fleets[rng.IntN(3)] + "/devices/" + ids[rng.IntN(5)] + "/" + subs[rng.IntN(len(subs))],
		"fleets/" + fleets[rng.IntN(3)] + "/broadcast/b",
		"fleets/" + fleets[rng.IntN(3)] + "/sites/" + []string{"s1", "s2", "+"}[rng.IntN(3)] + "/devices/" + ids[rng.IntN(5)] + "/x",
		ids[rng.IntN(5)] + "/c/cmd",
		"x/" + []string{"s1", "s2"}[rng.IntN(2)] + "/" + ids[rng.IntN(5)] + "/m",
	}
	action := []authz.Action{authz.Publish, authz.Subscribe, authz.Read}[rng.IntN(3)]
	return authz.Request{Action: action, Identity: d.ID, ClientID: d.ID, Topic: topics[rng.IntN(len(topics))],
		QoS: rng.IntN(3), Retain: rng.IntN(2) == 0}
}

// TestSimulateSharesEvalSlots: a simulation takes its evaluation slot from
// the live core's pool, so simulations cannot add CPU-bound evaluations
// beyond the bound; with every slot taken it waits, and gives up with its
// context.
func TestSimulateSharesEvalSlots(t *testing.T) {
	a := authz.New(authz.Config{EvalSlots: 1, Now: func() time.Time { return now }})
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	dev := authz.Device{ID: "d1", Fleet: "f", Active: true, Status: "active", CertNotAfter: now.Add(time.Hour)}
	ctx := context.Background()
	release := authz.HoldEvalSlots(a)
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	d, err := a.Simulate(wctx, p, 1, dev, authz.Request{Action: authz.Publish, Topic: "fleets/f/devices/d1/state/x"})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Simulate with every slot taken = %+v, %v, want the context's deadline", d, err)
	}
	release()
	d, err = a.Simulate(ctx, p, 1, dev, authz.Request{Action: authz.Publish, Topic: "fleets/f/devices/d1/state/x"})
	if err != nil || !d.Allow {
		t.Fatalf("Simulate with a free slot = %+v, %v: want allowed", d, err)
	}
}

// TestWarmGrantsPassesOverChangesOnly: after a policy activation one pass
// warms every class once; after that WarmGrants evaluates only what was
// upserted since, and a re-upsert of the same state costs nothing.
func TestWarmGrantsPassesOverChangesOnly(t *testing.T) {
	ctx := context.Background()
	p, err := policy.Compile(ctx, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := authz.New(authz.Config{EvalTimeout: time.Minute}) // counts must not depend on the machine's load
	a.SetPolicy(p, 1)
	dev := func(id, fleet string) authz.Device {
		return authz.Device{ID: id, Fleet: fleet, Active: true, Status: "active", CertNotAfter: now.Add(time.Hour)}
	}
	for i := range 100 {
		a.UpsertDevice(dev(fmt.Sprintf("d%d", i), fmt.Sprintf("f%d", i%3)))
	}
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"activation: one evaluation per class", func() {}, 3},
		{"nothing changed", func() {}, 0},
		{"same state again", func() { a.UpsertDevice(dev("d1", "f1")) }, 0},
		{"a device of a known class", func() { a.UpsertDevice(dev("d1000", "f0")) }, 0},
		{"a device of a new class", func() { a.UpsertDevice(dev("d1001", "f9")) }, 1},
		{"an id the class cannot stand for", func() { a.UpsertDevice(dev(strings.Repeat("long", 20), "f0")) }, 1},
		{"new policy version", func() { a.SetPolicy(p, 2) }, 5},
	}
	for _, s := range steps {
		s.do()
		n, err := a.WarmGrants(ctx)
		if err != nil || n != s.want {
			t.Fatalf("%s: WarmGrants = %d, %v; want %d", s.name, n, err, s.want)
		}
		if c := authz.ColdDevices(a); c != 0 {
			t.Fatalf("%s: %d devices cold", s.name, c)
		}
	}
}

// TestSharedCoreConcurrent: upserts moving devices between classes,
// policy activations, warm passes and decisions at once (run with -race):
// a device's own topic stays allowed and another device's stays denied
// throughout.
func TestSharedCoreConcurrent(t *testing.T) {
	ctx := context.Background()
	p, err := policy.Compile(ctx, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := authz.New(authz.Config{Now: func() time.Time { return now }, EvalTimeout: time.Minute})
	a.SetPolicy(p, 1)
	dev := func(i, label int) authz.Device {
		return authz.Device{ID: fmt.Sprintf("d%d", i), Fleet: "f", Active: true, Status: "active",
			Labels: map[string]string{"n": fmt.Sprint(label)}, CertNotAfter: now.Add(time.Hour)}
	}
	for i := range 20 {
		a.UpsertDevice(dev(i, 0))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 300 {
				i := (w*7 + k) % 20
				switch k % 4 {
				case 0:
					a.UpsertDevice(dev(i, k%5))
				case 1:
					if k%40 == 1 {
						a.SetPolicy(p, int64(k))
					}
					_, _ = a.WarmGrants(ctx)
				default:
					id, other := fmt.Sprintf("d%d", i), fmt.Sprintf("d%d", (i+1)%20)
					own, err1 := a.Authorize(ctx, authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Topic: "fleets/f/devices/" + id + "/state/x"})
					theirs, err2 := a.Authorize(ctx, authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Topic: "fleets/f/devices/" + other + "/state/x"})
					if err1 != nil || err2 != nil || !own.Allow || theirs.Allow {
						errs <- fmt.Sprintf("%s: own %+v %v, other's %+v %v", id, own, err1, theirs, err2)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
