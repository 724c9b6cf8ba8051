package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunTasks: the first task to fail cancels every other, and runTasks
// returns that error only once all of them have stopped; without a failure
// it runs until ctx ends and returns nil.
func TestRunTasks(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fail bool
	}{{"one fails", true}, {"ctx ends", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var stopped atomic.Int32
			const workers = 50
			tasks := make([]task, 0, workers+1)
			for range workers {
				tasks = append(tasks, task{"worker", func(ctx context.Context) error {
					<-ctx.Done()
					time.Sleep(5 * time.Millisecond) // a slow stop is still waited for
					stopped.Add(1)
					return nil
				}})
			}
			if tc.fail {
				tasks = append(tasks, task{"failing", func(context.Context) error {
					time.Sleep(10 * time.Millisecond)
					return boom
				}})
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if !tc.fail {
				time.AfterFunc(10*time.Millisecond, cancel)
			}
			err := runTasks(ctx, log, tasks)
			if tc.fail && !errors.Is(err, boom) || !tc.fail && err != nil {
				t.Fatalf("runTasks = %v", err)
			}
			if n := stopped.Load(); n != workers {
				t.Fatalf("runTasks returned with %d of %d tasks stopped", n, workers)
			}
		})
	}
}

// TestServeHTTPStopsOnCancel: a listener task serves until ctx ends, then
// shuts down and returns nil with the port closed.
func TestServeHTTPStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	run := serveHTTP("test", ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("listener task did not stop")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("port still open after the task stopped")
	}
}
