package auth_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// A burst of parallel guesses gets no more tries than the same guesses one
// after another: the throttle counts an attempt before hashing, not after.
func TestThrottleParallelBurst(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	// A slow hash widens the window between check and count that a
	// check-then-count throttle leaves open.
	svc, err := auth.New(auth.Config{Users: e.st, Sessions: e.st, Now: e.clock.Now,
		Params: auth.Params{Memory: 16 << 10, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(ctx, "test", "alice", goodPassword, auth.RoleViewer); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cred func(i int) auth.Credentials
		// want tried: the free failures (5 per username, 20 per address)
		// plus the one that starts the backoff.
		want int
	}{
		{"one username, many addresses", func(i int) auth.Credentials {
			return auth.Credentials{Username: "alice", Password: "wrong password!!", ClientIP: fmt.Sprintf("192.0.2.%d", i)}
		}, 6},
		{"one address, many usernames", func(i int) auth.Credentials {
			return auth.Credentials{Username: fmt.Sprintf("user%d", i), Password: "wrong password!!", ClientIP: "198.51.100.1"}
		}, 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 40
			var (
				wg               sync.WaitGroup
				mu               sync.Mutex
				tried, throttled int
				start            = make(chan struct{})
			)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := svc.Login(ctx, tc.cred(i))
					mu.Lock()
					defer mu.Unlock()
					switch fault.CodeOf(err) {
					case fault.Unauthenticated:
						tried++
					case auth.LoginThrottled:
						throttled++
					default:
						t.Errorf("login %d: %v", i, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if tried != tc.want || throttled != n-tc.want {
				t.Fatalf("%d passwords tried, %d throttled; want %d tried", tried, throttled, tc.want)
			}
		})
	}
}

// Signing in to one's own account does not reset the address budget: else
// an insider could guess at other accounts without end, signing in to
// their own between guesses.
func TestThrottleAddressNotResetBySuccess(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	if _, err := e.svc.CreateUser(ctx, "test", "mallory", goodPassword, auth.RoleViewer); err != nil {
		t.Fatal(err)
	}
	const ip = "203.0.113.5"
	guesses := 0
	for i := range 100 {
		_, err := e.svc.Login(ctx, auth.Credentials{Username: fmt.Sprintf("victim%d", i), Password: "a guess at it!", ClientIP: ip})
		if fault.CodeOf(err) == auth.LoginThrottled {
			break
		}
		guesses++
		_, err = e.svc.Login(ctx, auth.Credentials{Username: "mallory", Password: goodPassword, ClientIP: ip})
		if fault.CodeOf(err) == auth.LoginThrottled {
			break
		}
		if err != nil {
			t.Fatalf("own login after %d guesses: %v", guesses, err)
		}
	}
	// 20 free failures per address plus the one that starts the backoff.
	if guesses != 21 {
		t.Fatalf("%d guesses from one address before the throttle, want 21", guesses)
	}
}
