package mqttbench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/mqttc"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted on purpose
	}
	tests := []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(3, 1, 2), 50, 2 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
		{ms(hundred...), 0, 1 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("p%v of %d values: %v, want %v", tc.p, len(tc.in), got, tc.want)
		}
	}
}

// A decision is wrong when the broker let in what it should refuse or
// refused what it should let in; a timeout is no decision at all.
func TestResultWrong(t *testing.T) {
	for _, tc := range []struct {
		outcome string
		allow   bool
		want    bool
	}{
		{OutAccepted, true, false},
		{OutAccepted, false, true},
		{OutRefused, true, true},
		{OutRefused, false, false},
		{OutTLS, false, false},
		{OutTLS, true, true},
		{OutClosed, false, false},
		{OutClosed, true, false},
		{OutTimeout, true, false},
		{OutError, false, false},
	} {
		r := Result{Client: &Client{ExpectAllow: tc.allow}, Outcome: tc.outcome}
		if got := r.Wrong(); got != tc.want {
			t.Errorf("%s, expect allow %t: wrong=%t", tc.outcome, tc.allow, got)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("tls: %w", tls.AlertError(42)), OutTLS},
		{fmt.Errorf("remote error: %w", tls.AlertError(48)), OutTLS},
		// An EOF in the handshake is a dropped connection, not a refusal.
		{fmt.Errorf("tls: %w", io.EOF), OutClosed},
		{io.EOF, OutClosed},
		{errors.New("read tcp: connection reset by peer"), OutClosed},
		{timeoutErr{}, OutTimeout},
		{fmt.Errorf("x: %w", mqttc.ErrMalformed), OutError},
		{errors.New("dial tcp: connection refused"), OutError},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// The test process measures itself: CPU time grows with work, the peak RSS
// is at least the RSS, and a watch reports the difference.
func TestSampleProc(t *testing.T) {
	pid := os.Getpid()
	w := WatchProcs(map[string]int{"self": pid, "skipped": 0})
	before, err := SampleProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	if before.RSSKiB <= 0 || before.PeakKiB < before.RSSKiB || before.Threads < 1 || before.Comm == "" {
		t.Fatalf("sample %+v", before)
	}
	// Spin until /proc shows 50 ms more CPU (on a loaded machine wall
	// time says little about CPU time).
	deadline := time.Now().Add(20 * time.Second)
	for x := 0; time.Now().Before(deadline); x++ {
		if x%100000 == 0 {
			if s, _ := SampleProc(pid); s.CPU-before.CPU >= 50*time.Millisecond {
				break
			}
		}
	}
	u := w.Done()
	if len(u) != 1 || u[0].Name != "self" || u[0].PID != pid || u[0].CPU < 50*time.Millisecond || u[0].PeakKiB <= 0 {
		t.Fatalf("usage %+v", u)
	}
	if _, err := SampleProc(1 << 30); err == nil {
		t.Fatal("sampled a pid that cannot exist")
	}
}
