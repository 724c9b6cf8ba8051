package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/sync/errgroup"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API, the web UI, the broker hook listener and diagnostics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, v, newLogger(v), cmd.OutOrStdout())
		},
	}
	addServerFlags(cmd)
	f := cmd.Flags()
	f.String("api-addr", "127.0.0.1:8080", "API and web UI listen address")
	f.String("hooks-addr", "127.0.0.1:8081", "broker hook listen address")
	f.String("diag-addr", "127.0.0.1:9090", "diagnostics listen address (/healthz, /readyz, /metrics)")
	f.String("tls-cert", "", "API TLS certificate file (PEM); enables HTTPS and renewal over mutual TLS")
	f.String("tls-key", "", "API TLS key file (PEM)")
	f.String("public-url", "", "base URL devices reach the API at, put into certificates (default http://<api-addr>)")
	return cmd
}

// serve wires the control plane, checks what must hold before the
// listeners open, and runs every task until ctx ends or one fails.
func serve(ctx context.Context, v *viper.Viper, log *slog.Logger, out io.Writer) error {
	a, err := wire(ctx, v, log)
	if err != nil {
		return err
	}
	defer a.store.Close()
	if err := preflight(ctx, a, log); err != nil {
		return err
	}
	listeners, err := listen(v, a, log)
	if err != nil {
		return err
	}
	tasks := append(listeners, a.tasks(log)...)
	fmt.Fprintf(out, "Gatehouse %s: UI and API on %s\n", version, publicURL(v))
	err = runTasks(ctx, log, tasks)
	log.Info("stopped")
	return err
}

// preflight checks what must hold before the listeners open.
func preflight(ctx context.Context, a *app, log *slog.Logger) error {
	// A valid CRL (and its file, which a broker may need to start)
	// exists before the listeners open; the crl task keeps retrying if not.
	if err := a.crl.Ensure(ctx); err != nil {
		// A broker reading crl.file must not start (or reload)
		// without a usable list: start only if the file from an
		// earlier run is still valid, and say loudly that it lags.
		if ferr := a.crl.CheckFile(); ferr != nil {
			return fmt.Errorf("no usable CRL (%w) and %v", err, ferr)
		}
		log.Error("no new CRL yet; the CRL file keeps the previous list", "err", err)
	}
	// Kick targets are checked before the listeners open: a wrong
	// management password is logged now and shown by /readyz and
	// the API, not discovered at the first revocation. Only an
	// operator account that could be a device id stops the start.
	if err := a.kick.CheckTargets(ctx); err != nil {
		return fmt.Errorf("kick target check: %w", err)
	}
	return nil
}

// task is one part of the running server: run works until ctx ends and
// returns nil then, or returns the error that stops the server.
type task struct {
	name string
	run  func(context.Context) error
}

// tasks are the background workers, each a Run loop of its component.
func (a *app) tasks(log *slog.Logger) []task {
	return []task{
		// Device state for the decision core; Notify brings a sync forward.
		{"device sync", a.sync.Run},
		// Other replicas' changes, announced at their commit (PostgreSQL);
		// the Run loops' polls remain the fallback.
		{"change listener", func(ctx context.Context) error {
			return listenChanges(ctx, a.store, changeTargets{devices: a.sync, policy: a.policies, crl: a.crl}, log)
		}},
		{"crl", a.crl.Run},
		{"policy", a.policies.Run},
		// Bulk revocation jobs: this replica's and any a stopped one left.
		{"revocation jobs", a.revoke.Run},
		// Live-session kicks: delivered at once, failures retried.
		{"kick", a.kick.Run},
		// Certificates replaced by renewals, revoked (reason superseded)
		// once their profile's grace has passed; safe on every replica.
		{"superseded", a.superseded.Run},
		// Grants computed in the background, so the broker's requests never
		// wait on the policy engine; the same loop logs entering the stale
		// state even when no broker asks.
		{"grants", a.authz.Run},
		// The dashboard's traffic series: samples the counters before
		// each minute ends into this replica's in-memory rings.
		{"traffic series", a.traffic.Run},
		// Ends the broker event streams at shutdown: the hooks server's
		// graceful shutdown waits for them.
		{"events", a.events.Run},
	}
}

// runTasks runs every task until ctx ends or one fails: the first error
// cancels the others, and runTasks returns it once all have stopped.
func runTasks(ctx context.Context, log *slog.Logger, tasks []task) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range tasks {
		g.Go(func() error {
			err := t.run(gctx)
			log.Debug("task stopped", "task", t.name, "err", err)
			return err
		})
	}
	return g.Wait()
}

// listen opens the API, hook and diagnostics listeners and returns a task
// serving each. It listens before anything serves, so a taken port fails
// start-up at once.
func listen(v *viper.Viper, a *app, log *slog.Logger) (_ []task, err error) {
	apiTLSConfig, err := apiTLS(v)
	if err != nil {
		return nil, err
	}
	hooksTLSConfig, err := hooksTLS(v)
	if err != nil {
		return nil, err
	}
	servers := []struct {
		name, addr string
		h          http.Handler
		tls        *tls.Config
	}{
		{"api", v.GetString(keyAPIAddr), a.api, apiTLSConfig},
		{"hooks", v.GetString(keyHooksAddr), a.hooks, hooksTLSConfig},
		{"diag", v.GetString(keyDiagAddr), a.diagnostics(), nil},
	}
	var tasks []task
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range opened {
				_ = ln.Close()
			}
		}
	}()
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", s.name, err)
		}
		opened = append(opened, ln)
		if s.tls != nil {
			ln = tls.NewListener(ln, s.tls)
		}
		log.Info("listening", "listener", s.name, "addr", ln.Addr().String())
		tasks = append(tasks, task{s.name + " listener", serveHTTP(s.name, ln, s.h)})
	}
	return tasks, nil
}

// serveHTTP serves h on ln until ctx ends, then shuts the server down
// gracefully (10s at most); it returns once Serve has returned.
func serveHTTP(name string, ln net.Listener, h http.Handler) func(context.Context) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	return func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		var serveErr error
		select {
		case <-ctx.Done():
		case err := <-served:
			served <- err
			serveErr = fmt.Errorf("%s listener: %w", name, err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutErr := srv.Shutdown(sctx)
		if err := <-served; serveErr == nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("%s listener: %w", name, err)
		}
		if serveErr != nil {
			return serveErr
		}
		return shutErr
	}
}
