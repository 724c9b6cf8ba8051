//go:build linux

package main

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testbroker"
)

// TestMosquittoCRLEndToEnd drives a real Mosquitto that checks client
// certificates against the CRL file Gatehouse writes: Gatehouse writes the
// file when it starts (Mosquitto refuses to start without it), two enrolled
// devices connect over mutual TLS, one is revoked through the API, and from
// then on its connection is refused (within 2 s) while the other's is not.
// The reload command Gatehouse runs after each write sends the broker a
// SIGHUP, read from a pid file the test writes once the broker runs.
func TestMosquittoCRLEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Mosquitto")
	}
	pub, _ := testbroker.RequireMosquittoClients(t)
	testbroker.RequireMosquitto(t)

	g := newGatehouse(t)
	tmp := g.dir
	crlFile := filepath.Join(tmp, "broker", "crl.pem")
	pidFile := filepath.Join(tmp, "broker", "mosquitto.pid")
	reloadLog := filepath.Join(tmp, "broker", "reloads.log")
	if err := os.MkdirAll(filepath.Dir(crlFile), 0o755); err != nil {
		t.Fatal(err)
	}
	g.serve(t,
		"GATEHOUSE_CRL_FILE="+crlFile,
		// Until the broker runs there is no pid file: the command fails,
		// which Gatehouse logs and shows, and carries on.
		"GATEHOUSE_CRL_RELOAD_COMMAND=echo \"$GATEHOUSE_CRL_NUMBER\" >> "+reloadLog+` && kill -HUP "$(cat `+pidFile+`)"`,
	)

	// The CRL file is there before anything asked for it.
	first := readCRLFile(t, crlFile)
	if first.Number.Int64() < 1 || !first.NextUpdate.After(time.Now()) {
		t.Fatalf("CRL file at start: number %v, next update %s", first.Number, first.NextUpdate)
	}

	toks := g.tokens(t, "default", 2)
	devs := map[string]testDevice{"meter-1": g.enroll(t, toks[0], "meter-1"), "meter-2": g.enroll(t, toks[1], "meter-2")}

	// The broker trusts Gatehouse's chain for client certificates and checks
	// each against the CRL file.
	brokerCA, brokerCert, brokerKey := rmqServerPKI(t, tmp)
	chain := g.caChain(t)
	broker := testbroker.Mosquitto(t, testbroker.MosquittoConfig{CAFile: chain, CertFile: brokerCert, KeyFile: brokerKey,
		RequireCertificate: true, UseIdentityAsUsername: true, CRLFile: crlFile})
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(broker.PID)), 0o644); err != nil {
		t.Fatal(err)
	}
	clients := mqttCLI{version: mqttV311, pub: pub, port: broker.Port, cafile: brokerCA}
	connect := func(d testDevice) (string, error) {
		return clients.publish(d, d.id+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), "e2e/"+d.id, "hello")
	}
	for _, d := range devs {
		if out, err := connect(d); err != nil {
			t.Fatalf("%s could not publish before any revocation: %v\n%s\n%s", d.id, err, out, broker.LogTail(20))
		}
	}

	// Revoke meter-1. The API call returns once the new CRL is stored and
	// written and the reload command ran.
	revoked := time.Now()
	g.api(t, "POST", "/api/v1/devices/meter-1/revoke",
		map[string]any{"reason": "keyCompromise", "note": "e2e"}, http.StatusOK, nil)
	var refusedAfter time.Duration
	for {
		out, err := connect(devs["meter-1"])
		if err != nil {
			refusedAfter = time.Since(revoked)
			t.Logf("meter-1 refused %s after the revoke call: %v %s", refusedAfter.Round(time.Millisecond), err, strings.TrimSpace(out))
			break
		}
		if time.Since(revoked) > 2*time.Second {
			t.Fatalf("meter-1 still connects %s after its revocation\nbroker log:\n%s\nserve log:\n%s",
				time.Since(revoked).Round(time.Millisecond), broker.LogTail(30), g.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := connect(devs["meter-2"]); err != nil {
		t.Fatalf("meter-2 refused after meter-1's revocation: %v\n%s\n%s", err, out, broker.LogTail(20))
	}
	// The refusal is the CRL's doing: the file lists meter-1's certificate.
	after := readCRLFile(t, crlFile)
	leaf := readCert(t, devs["meter-1"].cert)
	listed := false
	for _, e := range after.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 && e.ReasonCode == 1 {
			listed = true
		}
	}
	if !listed || after.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("CRL file after the revocation: number %v (was %v), meter-1 listed %t", after.Number, first.Number, listed)
	}
	if !strings.Contains(broker.LogTail(200), "certificate verify failed") {
		t.Fatalf("the broker did not refuse a certificate:\n%s", broker.LogTail(40))
	}
	if !strings.Contains(broker.LogTail(200), "Reloading config") {
		t.Fatalf("the broker was not reloaded:\n%s", broker.LogTail(40))
	}
	if data, _ := os.ReadFile(reloadLog); !strings.Contains(string(data), after.Number.String()+"\n") {
		t.Fatalf("reload command log %q lacks CRL %v", data, after.Number)
	}
	// The status shows the list and the successful reload.
	var st apitypes.CRLStatus
	g.api(t, "GET", "/api/v1/crl", nil, http.StatusOK, &st)
	if st.Number != after.Number.Int64() || st.Entries != 1 || st.LastReload == nil || !st.LastReload.OK || st.LastReload.Number != st.Number {
		t.Fatalf("CRL status: %+v", st)
	}
	t.Logf("revoke → refused at the broker: %s", refusedAfter.Round(time.Millisecond))
}

func readCRLFile(t *testing.T, path string) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(readPEM(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(readPEM(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readPEM returns the DER of the first PEM block in a file.
func readPEM(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s is not PEM: %q", path, data)
	}
	return block.Bytes
}
