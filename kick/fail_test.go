package kick_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testlog"
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

var errDown = fault.New(fault.Unavailable, "database restarting")

// lease is the default claim lease: 3 × the 10s delivery timeout.
const lease = 30 * time.Second

func newLoggedService(t *testing.T, st kick.Store, clk *testclock.Clock, logs *testlog.Buffer, bs ...kick.Broker) *kick.Service {
	t.Helper()
	s, err := kick.New(kick.Config{Store: st, Brokers: bs, Now: clk.Now, Poll: time.Hour,
		Log:   slog.New(slog.NewTextHandler(logs, nil)),
		Retry: kick.Retry{Initial: time.Second, Max: 4 * time.Second, Attempts: 4, Slow: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOutcomeNotSaved: when the store refuses to record a delivery's
// outcome (or the claim itself), the failure is logged and the kick is not
// lost: it stays claimed until its lease ends and is then delivered again,
// until an outcome is saved.
func TestOutcomeNotSaved(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			for _, tc := range []struct {
				method     string
				brokerDown bool          // the first delivery fails at the broker too
				log        string        // what the failed round logs
				retryAfter time.Duration // when the kick is due again
				delivered  int           // deliveries (attempts) by the failed round
			}{
				{"FinishKick", false, "session kick delivered, but its status was not saved", lease, 1},
				{"RetryKick", true, "session kick failed, and its status was not saved; retried when its lease ends", lease, 1},
				{"ClaimKicks", false, "session kick queue unreadable", 0, 0},
			} {
				t.Run(tc.method, func(t *testing.T) {
					ctx := context.Background()
					db := teststore.Open(t, backend)
					clk := testclock.New(base)
					b := newBroker("rabbitmq")
					var logs testlog.Buffer
					svc := newLoggedService(t, db, clk, &logs, b)
					if err := svc.Kick(ctx, "d1", "device.revoke"); err != nil {
						t.Fatal(err)
					}
					if tc.brokerDown {
						b.fail(errors.New("503 Service Unavailable"))
					}
					db.FailNth(tc.method, 1, errDown)
					if n := svc.DeliverDue(ctx); n != tc.delivered || b.count("d1") != tc.delivered {
						t.Fatalf("failed round: delivered %d, broker saw %d, want %d", n, b.count("d1"), tc.delivered)
					}
					if !strings.Contains(logs.String(), tc.log) || !strings.Contains(logs.String(), "database restarting") {
						t.Errorf("failed round not logged as %q:\n%s", tc.log, logs.String())
					}
					if k := statusOf(t, db.Real(), "d1")["rabbitmq"]; k.Status != store.KickPending {
						t.Fatalf("after the failed round: %+v, want pending", k)
					}
					b.fail(nil)
					if tc.retryAfter > 0 {
						// Claimed: no other round (or replica) delivers it
						// before the lease ends.
						clk.Add(tc.retryAfter - time.Second)
						if n := svc.DeliverDue(ctx); n != 0 {
							t.Fatalf("delivered %d before the lease ended", n)
						}
						clk.Add(time.Second)
					}
					if n := svc.DeliverDue(ctx); n != 1 {
						t.Fatalf("retry round delivered %d, want 1", n)
					}
					if k := statusOf(t, db.Real(), "d1")["rabbitmq"]; k.Status != store.KickDone || k.Attempts != tc.delivered+1 {
						t.Fatalf("after the retry: %+v, want done after %d attempts", k, tc.delivered+1)
					}
					if got := b.count("d1"); got != tc.delivered+1 {
						t.Errorf("broker saw %d deliveries, want %d", got, tc.delivered+1)
					}
				})
			}
		})
	}
}

// TestRequestNotSaved: Kick and Cancel fail with the store's error when it
// refuses them (revoke reports the kick as lagging rather than claiming it
// was recorded), and they record nothing.
func TestRequestNotSaved(t *testing.T) {
	ctx := context.Background()
	db := teststore.Open(t, "sqlite")
	clk := testclock.New(base)
	b := newBroker("rabbitmq")
	svc := newService(t, db, clk, b)

	db.FailNth("EnqueueKicks", 1, errDown)
	if err := svc.Kick(ctx, "d1", "device.revoke"); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("Kick with the store down: %v, want unavailable", err)
	}
	if s := statusOf(t, db.Real(), "d1"); len(s) != 0 {
		t.Fatalf("a refused Kick recorded %+v", s)
	}
	if err := svc.Kick(ctx, "d1", "device.suspend"); err != nil {
		t.Fatal(err)
	}
	db.FailNth("CancelKicks", 1, errDown)
	if err := svc.Cancel(ctx, "d1"); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("Cancel with the store down: %v, want unavailable", err)
	}
	if k := statusOf(t, db.Real(), "d1")["rabbitmq"]; k.Status != store.KickPending {
		t.Fatalf("a refused Cancel changed the kick: %+v", k)
	}
}
