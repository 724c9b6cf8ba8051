//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/mqttbench"
	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// TestBenchConnectStormEndToEnd runs `gatehouse bench` against a private
// Mosquitto with certificate authentication only (no auth plugin): 20
// devices enrolled through the API connect at once and publish, and the
// tool must notice what such a broker gets wrong: a revoked device and two
// client-id spoofs are let in (3 wrong decisions, exit status 1) and each
// spoof takes a live session over. A second run reuses the enrolled devices.
func TestBenchConnectStormEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Mosquitto")
	}
	testbroker.RequireMosquitto(t)
	g := newGatehouse(t)
	g.serve(t)
	brokerCA, brokerCert, brokerKey := rmqServerPKI(t, g.dir)
	broker := testbroker.Mosquitto(t, testbroker.MosquittoConfig{CAFile: g.caChain(t), CertFile: brokerCert, KeyFile: brokerKey,
		RequireCertificate: true, UseIdentityAsUsername: true})
	start := time.Now()
	defer func() { t.Logf("bench commands took %s", time.Since(start).Round(time.Millisecond)) }()
	devices := filepath.Join(g.dir, "bench-devices")
	bench := func(args ...string) runResult {
		return g.adminCLI(t, append(append([]string{"bench"}, args...), "--server", g.server, "--devices-dir", devices,
			"--broker", broker.Addr(), "--broker-ca", brokerCA, "--broker-pid", strconv.Itoa(broker.PID))...)
	}

	for run := 1; run <= 2; run++ {
		r := bench("connect-storm", "-n", "20", "--spoof", "2", "--revoked", "1", "--json")
		var rep mqttbench.StormReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("run %d: %v\n%s\n%s", run, err, r.stdout, r.stderr)
		}
		if r.code != 1 || rep.N != 20 || rep.Accepted != 20 || rep.Published != 23 || rep.Wrong != 3 ||
			rep.SessionsLost != 2 || rep.Errors != 0 || rep.Codes[0] != 23 || rep.AllConnected <= 0 || rep.P99 < rep.P50 {
			t.Fatalf("run %d: exit %d, report %+v\n%s\n%s", run, r.code, rep, r.stderr, broker.LogTail(20))
		}
		if got := rep.Outcomes["spoof accepted"] + rep.Outcomes["revoked accepted"]; got != 3 {
			t.Errorf("run %d: outcomes %v", run, rep.Outcomes)
		}
		measured := map[string]mqttbench.ProcUsage{}
		for _, p := range rep.Procs {
			measured[p.Name] = p
		}
		if b := measured["broker"]; len(rep.Procs) != 2 || b.PID != broker.PID || b.PeakKiB <= 0 || measured["bench (this process)"].CPU <= 0 {
			t.Errorf("run %d: process usage %+v", run, rep.Procs)
		}
		enrolled := strings.Contains(r.stderr, "enrolling ")
		if enrolled != (run == 1) {
			t.Errorf("run %d enrolled devices: %t\n%s", run, enrolled, r.stderr)
		}
	}
	// The cache holds only certificates the server issued.
	if _, err := os.Stat(filepath.Join(devices, "bench-000019", deviceCertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(devices, "benchrev-000000", revokedMarker)); err != nil {
		t.Fatal(err)
	}

	for _, qos := range []string{"0", "1"} {
		r := bench("publish", "--publishers", "3", "--duration", "500ms", "--qos", qos, "--json")
		var tp mqttbench.ThroughputReport
		if err := json.Unmarshal([]byte(r.stdout), &tp); err != nil || r.code != 0 {
			t.Fatalf("publish QoS %s: exit %d, %v\n%s\n%s", qos, r.code, err, r.stdout, r.stderr)
		}
		// The broker acknowledged (QoS 1) or answered the PINGREQ after
		// (QoS 0) what it processed; the subscriber got some of it.
		if tp.Sent == 0 || tp.Acked == 0 || tp.Acked > tp.Sent || tp.Received == 0 || tp.Received > tp.Sent || tp.DeliveredPerSec <= 0 {
			t.Fatalf("publish QoS %s report %+v", qos, tp)
		}
	}
}
