package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// renewLoop is `gatehouse renew --loop`: it sleeps until the certificate's
// renewal window opens (plus jitter), renews, runs the post-renew hook and
// starts over, until its context ends (SIGTERM, SIGINT). A failure is
// retried with exponential backoff; it never ends the loop, since a
// device that gives up renewing loses its identity.
type renewLoop struct {
	renew    func() (enrollResult, error)
	certPath string
	// before is how long before expiry the window opens; 0 is a third of
	// the certificate's lifetime, the server's default renew_window.
	before time.Duration
	// maxJitter caps the random delay added to every wait (see jitter).
	maxJitter              time.Duration
	minBackoff, maxBackoff time.Duration
	postRenew              string
	hookTimeout            time.Duration
	now                    func() time.Time
	sleep                  func(ctx context.Context, d time.Duration) error
	// randN returns a uniform integer in [0, n) for n > 0.
	randN func(n int64) int64
	log   *slog.Logger
}

// renewLoop defaults, in one place.
const (
	defaultMaxJitter   = 10 * time.Minute
	defaultMinBackoff  = 5 * time.Second
	defaultMaxBackoff  = time.Hour
	defaultHookTimeout = 5 * time.Minute
)

func (l *renewLoop) defaults() {
	if l.maxJitter < 0 {
		l.maxJitter = 0
	}
	if l.minBackoff <= 0 {
		l.minBackoff = defaultMinBackoff
	}
	if l.maxBackoff < l.minBackoff {
		l.maxBackoff = max(defaultMaxBackoff, l.minBackoff)
	}
	if l.hookTimeout <= 0 {
		l.hookTimeout = defaultHookTimeout
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.sleep == nil {
		l.sleep = sleepCtx
	}
	if l.randN == nil {
		l.randN = rand.Int64N
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
}

// run loops until ctx ends; it returns an error only when there is no
// certificate to renew.
func (l *renewLoop) run(ctx context.Context) error {
	l.defaults()
	backoff := l.minBackoff
	for {
		certs, err := readCertFile(l.certPath)
		if err != nil {
			return err
		}
		if len(certs) == 0 {
			return fault.New(fault.InvalidArgument, "%s holds no certificate", l.certPath)
		}
		cert := certs[0]
		wait := l.wait(cert)
		l.log.Info("next renewal", "in", wait.Round(time.Second), "not_after", cert.NotAfter.UTC())
		if l.sleep(ctx, wait) != nil {
			return nil
		}
		res, err := l.renew()
		if err != nil {
			l.log.Warn("renewal failed; retrying", "in", backoff, "code", fault.CodeOf(err), "err", err)
			if l.sleep(ctx, backoff) != nil {
				return nil
			}
			backoff = min(2*backoff, l.maxBackoff)
			continue
		}
		backoff = l.minBackoff
		l.log.Info("renewed", "device", res.DeviceID, "serial", res.Serial, "not_after", res.NotAfter.Time.UTC())
		l.hook(ctx, res)
	}
}

// wait is how long to sleep before renewing cert: until its window opens
// (now, if it is open or the certificate expired: the server decides
// whether an expired one may still renew), plus jitter.
func (l *renewLoop) wait(cert *x509.Certificate) time.Duration {
	before := l.before
	if before <= 0 {
		before = cert.NotAfter.Sub(cert.NotBefore) / 3
	}
	opens := cert.NotAfter.Add(-before)
	return max(0, opens.Sub(l.now())) + l.jitter(before)
}

// jitter is uniform in [0, min(maxJitter, window/4)): a fleet enrolled
// together spreads its renewals, and the jitter never eats more than a
// quarter of the window, so a device still renews well before expiry.
func (l *renewLoop) jitter(window time.Duration) time.Duration {
	bound := min(l.maxJitter, window/4)
	if bound <= 0 {
		return 0
	}
	return time.Duration(l.randN(int64(bound)))
}

// hook runs the --post-renew command with sh -c, the files named in its
// environment. Its failure is logged: the renewal stands either way.
func (l *renewLoop) hook(ctx context.Context, res enrollResult) {
	if l.postRenew == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, l.hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", l.postRenew)
	cmd.Env = append(os.Environ(), "GATEHOUSE_CERT_FILE="+res.Files["certificate"], "GATEHOUSE_KEY_FILE="+res.Files["key"],
		"GATEHOUSE_CHAIN_FILE="+res.Files["chain"], "GATEHOUSE_DEVICE_ID="+res.DeviceID, "GATEHOUSE_SERIAL="+res.Serial)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.log.Error("post-renew command failed", "err", err, "output", strings.TrimSpace(string(out)))
		return
	}
	l.log.Info("post-renew command ran", "output", strings.TrimSpace(string(out)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
