package main

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testlog"
)

// TestRenewLoopAndSleepyE2E runs a real server over HTTPS with two
// devices. "loop" has a 2-minute certificate with a 1-minute window and
// runs `gatehouse renew --loop --rotate-key`: it renews once, about a
// minute in, the hook runs once, the certificate file is never seen
// half-written, the new key is 0600 and the files verify with openssl.
// "sleepy" has a 1-minute certificate under renew_after_expiry 1h: once
// it expired, `gatehouse renew` over HTTPS (the expired certificate would
// fail the handshake, so it proves its key by the challenge) renews it,
// audited as device.renew_expired.
func TestRenewLoopAndSleepyE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a certificate's window and expiry (about 70s)")
	}
	g := newGatehouse(t, "GATEHOUSE_CA_PASSPHRASE=a-test-passphrase-123")
	crt, key := serverCert(t, g.dir)
	g.serveTLS(t, crt, key)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "twomin", "key_types": []string{"P-256"},
		"validity": "2m", "renew_window": "1m"}, http.StatusCreated, nil)
	g.api(t, "POST", "/api/v1/profiles", map[string]any{"name": "sleepy", "key_types": []string{"P-256"},
		"validity": "1m", "renew_window": "1m", "renew_after_expiry": "1h"}, http.StatusCreated, nil)
	loopDev := g.enroll(t, g.tokens(t, "twomin", 1)[0], "loop-1")
	sleepyDev := g.enroll(t, g.tokens(t, "sleepy", 1)[0], "sleepy-1")
	oldCert, _ := os.ReadFile(loopDev.cert)
	oldKey, _ := os.ReadFile(loopDev.key)

	marker := filepath.Join(g.dir, "hook.log")
	cmd := exec.Command(g.bin, "renew", "--loop", "--server", g.server, "--ca-file", crt, "--dir", loopDev.dir,
		"--rotate-key", "--renew-before", "1m", "--max-jitter", "5s",
		"--post-renew", `echo "$GATEHOUSE_DEVICE_ID $GATEHOUSE_SERIAL $GATEHOUSE_CERT_FILE" >> `+marker)
	cmd.Env = append(os.Environ(), g.env...)
	var logs testlog.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	})

	// A reader that sees the certificate file at any moment sees a whole one.
	var torn atomic.Int32
	stopReader := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stopReader:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if b, err := os.ReadFile(loopDev.cert); err != nil || !wholeCert(b) {
				torn.Add(1)
			}
		}
	}()

	deadline := time.Now().Add(3 * time.Minute)
	for b, _ := os.ReadFile(marker); len(b) == 0; b, _ = os.ReadFile(marker) {
		if time.Now().After(deadline) {
			t.Fatalf("the post-renew hook did not run within 3 minutes\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopReader)
	<-readerDone
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("loop exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("loop did not stop on SIGTERM\n%s", logs.String())
	}
	if n := torn.Load(); n != 0 {
		t.Fatalf("the certificate file was unreadable or partial %d times", n)
	}
	checkLoopRenewed(t, g, loopDev, marker, oldCert, oldKey)

	// The sleepy device's certificate is expired by now or within a minute.
	sleepyCert, _ := readCertFile(sleepyDev.cert)
	time.Sleep(time.Until(sleepyCert[0].NotAfter.Add(1500 * time.Millisecond)))
	rn := g.run(t, nil, "renew", "--server", g.server, "--ca-file", crt, "--dir", sleepyDev.dir, "--json")
	if rn.code != 0 {
		t.Fatalf("renew of an expired certificate: %d %s %s", rn.code, rn.stdout, rn.stderr)
	}
	verifyDevice(t, sleepyDev, filepath.Join(g.data, "ca", "root_ca.crt"))
	var events apitypes.AuditEventList
	g.api(t, "GET", "/api/v1/audit?action=device.renew_expired", nil, http.StatusOK, &events)
	if len(events.Events) != 1 || events.Events[0].ObjectID != "sleepy-1" {
		t.Fatalf("device.renew_expired events: %+v", events.Events)
	}
}

func checkLoopRenewed(t *testing.T, g *gatehouse, dev testDevice, marker string, oldCert, oldKey []byte) {
	t.Helper()
	hook, _ := os.ReadFile(marker)
	lines := strings.Split(strings.TrimSpace(string(hook)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "loop-1 ") || !strings.HasSuffix(lines[0], " "+dev.cert) {
		t.Fatalf("hook ran %d times: %q, want once naming the device and its certificate", len(lines), hook)
	}
	newCert, _ := os.ReadFile(dev.cert)
	newKey, _ := os.ReadFile(dev.key)
	if bytes.Equal(newCert, oldCert) || bytes.Equal(newKey, oldKey) {
		t.Fatal("the loop did not replace the certificate and the key")
	}
	if st, err := os.Stat(dev.key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key mode: %v %v, want 0600", st.Mode(), err)
	}
	if _, err := tls.LoadX509KeyPair(dev.cert, dev.key); err != nil {
		t.Fatalf("new certificate and key do not match: %v", err)
	}
	serial := strings.Fields(lines[0])[1]
	certs, _ := readCertFile(dev.cert)
	if got := strings.ToLower(certs[0].SerialNumber.Text(16)); !strings.EqualFold(strings.TrimLeft(serial, "0"), got) {
		t.Fatalf("hook saw serial %s, file holds %s", serial, got)
	}
	verifyDevice(t, dev, filepath.Join(g.data, "ca", "root_ca.crt"))
	leftovers, _ := filepath.Glob(filepath.Join(dev.dir, ".*tmp*"))
	if news, _ := filepath.Glob(filepath.Join(dev.dir, "*.new")); len(leftovers)+len(news) != 0 {
		t.Fatalf("temporary files left behind: %v %v", leftovers, news)
	}
}

func wholeCert(b []byte) bool {
	block, rest := pem.Decode(b)
	return block != nil && block.Type == "CERTIFICATE" && len(bytes.TrimSpace(rest)) == 0
}
