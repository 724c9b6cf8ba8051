package authz_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// scaleSizes are the fleet sizes BenchmarkScale loads, one after another.
var scaleSizes = flag.String("scale.sizes", "1000,100000,1000000", "comma-separated device counts for BenchmarkScale")

// scaleExtra adds rules on the profile and a label to the default policy,
// as an operator would: gateways relay their site's traffic.
const scaleExtra = `

grants contains {"action": "subscribe", "filter": concat("/", ["fleets", input.device.fleet, "sites", input.device.labels.site, "#"]), "max_qos": 1, "rule": "gateway-site"} if {
	input.device.profile == "gateway"
}

grants contains {"action": "publish", "filter": concat("/", ["fleets", input.device.fleet, "sites", input.device.labels.site, "devices", input.device.id, "#"]), "rule": "site-uplink"} if {
	input.device.labels.hw != "rev-a"
}
`

// BenchmarkScale loads 1k, 100k and 1M devices (-scale.sizes) into one
// core with the default policy plus scaleExtra, a few fleets, profiles and
// labels, and prints per size: the time to load them, the warm-up (every
// grant ready) after start and after a policy activation, the live heap
// after GC, the resident set (VmRSS, and VmHWM: its peak since the size
// began), and the p50/p99 of uncached decisions (a cache miss with the
// grants warm). The cached decision is the sub-benchmark's ns/op.
//
//	go test -run '^$' -bench Scale -benchtime 2000000x ./authz
func BenchmarkScale(b *testing.B) {
	for _, f := range strings.Split(*scaleSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("bad -scale.sizes entry %q", f)
		}
		benchScale(b, n)
	}
}

func benchScale(b *testing.B, n int) {
	ctx := context.Background()
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	src := policy.Default()
	src.Policy += scaleExtra
	p1 := compileScale(b, src)
	a := authz.New(authz.Config{})
	a.SetPolicy(p1, 1)
	start := time.Now()
	devs := loadScaleDevices(a, n)
	load := time.Since(start)
	warmStart := warmAll(b, a, n)
	// An activation of a new version (same rules, new text) recomputes
	// every grant.
	src.Policy += "\n# v2\n"
	a.SetPolicy(compileScale(b, src), 2)
	warmActivate := warmAll(b, a, n)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, hwm := readRSS()
	p50, p99 := uncachedLatency(b, a, devs)
	fmt.Printf("scale devices=%d load=%.2fs warm_start=%.2fs warm_activate=%.2fs heap=%.0fMiB rss=%.0fMiB hwm=%.0fMiB uncached_p50=%.2fµs uncached_p99=%.2fµs\n",
		n, load.Seconds(), warmStart.Seconds(), warmActivate.Seconds(), mib(ms.HeapAlloc), mib(rss), mib(hwm),
		float64(p50)/1e3, float64(p99)/1e3)
	req := authz.Request{Action: authz.Publish, Identity: devs[0].ID, ClientID: devs[0].ID, Topic: ownTopic(devs[0], "telemetry/x"), QoS: 1}
	if d, err := a.Authorize(ctx, req); err != nil || !d.Allow {
		b.Fatalf("cached request = %+v, %v: want allowed", d, err)
	}
	b.Run(fmt.Sprintf("cached/devices=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := a.Authorize(ctx, req); !d.Allow {
				b.Fatal("denied")
			}
		}
	})
	runtime.KeepAlive(a)
}

func compileScale(b *testing.B, src policy.Source) *policy.Policy {
	p, err := policy.Compile(context.Background(), src)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// loadScaleDevices upserts n devices built as the sync builds them: fresh
// strings and maps per device, as decoded from the database.
func loadScaleDevices(a *authz.Authorizer, n int) []authz.Device {
	profiles := []string{"sensor", "gateway", "actuator"}
	hw := []string{"rev-a", "rev-b", "rev-c"}
	rng := rand.New(rand.NewPCG(1, 2))
	notAfter := time.Now().Add(90 * 24 * time.Hour)
	sample := make([]authz.Device, 0, 1024)
	for i := range n {
		d := authz.Device{
			ID:      fmt.Sprintf("dev-%08d", i),
			Fleet:   fmt.Sprintf("fleet-%02d", rng.IntN(10)),
			Profile: strings.Clone(profiles[rng.IntN(len(profiles))]),
			Active:  true,
			Status:  strings.Clone("active"),
			Labels: map[string]string{
				"site": fmt.Sprintf("site-%02d", rng.IntN(20)),
				"hw":   strings.Clone(hw[rng.IntN(len(hw))]),
			},
			Roles:        []string{strings.Clone("telemetry")},
			CertSerial:   fmt.Sprintf("%032x", rng.Uint64()),
			CertNotAfter: notAfter.Add(time.Duration(rng.IntN(3600)) * time.Second),
		}
		if rng.IntN(50) == 0 {
			d.Roles = append(d.Roles, strings.Clone("command"))
		}
		a.UpsertDevice(d)
		if len(sample) < cap(sample) && rng.IntN(max(n/cap(sample), 1)) == 0 {
			sample = append(sample, d)
		}
	}
	return sample
}

func warmAll(b *testing.B, a *authz.Authorizer, n int) time.Duration {
	start := time.Now()
	if _, err := a.WarmGrants(context.Background()); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if cold := authz.ColdDevices(a); cold != 0 {
		b.Fatalf("%d of %d devices still cold after WarmGrants", cold, n)
	}
	return took
}

func ownTopic(d authz.Device, sub string) string {
	return "fleets/" + d.Fleet + "/devices/" + d.ID + "/" + sub
}

// uncachedLatency times single decisions that miss the decision cache (a
// topic never asked before) on warm grants, spread over the sample.
func uncachedLatency(b *testing.B, a *authz.Authorizer, devs []authz.Device) (p50, p99 time.Duration) {
	const samples = 20000
	reqs := make([]authz.Request, samples)
	for i := range reqs {
		d := devs[i%len(devs)]
		reqs[i] = authz.Request{Action: authz.Publish, Identity: d.ID, ClientID: d.ID, QoS: 1,
			Topic: ownTopic(d, "telemetry/u"+strconv.Itoa(i))}
	}
	took := make([]time.Duration, samples)
	ctx := context.Background()
	for i := range reqs {
		t := time.Now()
		d, err := a.Authorize(ctx, reqs[i])
		took[i] = time.Since(t)
		if err != nil || !d.Allow {
			b.Fatalf("uncached request %+v = %+v, %v: want allowed", reqs[i], d, err)
		}
	}
	slices.Sort(took)
	return took[samples/2], took[samples*99/100]
}

// resetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs), so each
// size reports its own peak.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func readRSS() (rss, hwm uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), ":")
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
