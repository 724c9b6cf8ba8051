package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-iot/gatehouse/api"
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
			log := newLogger(v)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			a, err := wire(ctx, v, log)
			if err != nil {
				return err
			}
			defer a.store.Close()
			// A valid CRL (and its file, which a broker may need to start)
			// exists before the listeners open; Run below keeps retrying if not.
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
			// The intermediate is an anchor too, so devices whose TLS stacks send
			// only their leaf can still authenticate; renewal re-verifies the
			// full chain to the root.
			roots := x509.NewCertPool()
			roots.AddCert(a.ca.Root())
			roots.AddCert(a.ca.Intermediate())
			apiTLSConfig, err := apiTLS(v, roots)
			if err != nil {
				return err
			}
			hooksTLSConfig, err := hooksTLS(v)
			if err != nil {
				return err
			}
			servers := []struct {
				name, addr string
				h          http.Handler
				tls        *tls.Config
			}{
				{"api", v.GetString(keyAPIAddr), a.api, apiTLSConfig},
				{"hooks", v.GetString(keyHooksAddr), a.hooks, hooksTLSConfig},
				{"diag", v.GetString(keyDiagAddr), api.Diagnostics(a.store, a.authz, a.kick), nil},
			}
			g, gctx := errgroup.WithContext(ctx)
			for _, s := range servers {
				// Listen before serving so a taken port fails start-up at once.
				ln, err := net.Listen("tcp", s.addr)
				if err != nil {
					return fmt.Errorf("%s listener: %w", s.name, err)
				}
				if s.tls != nil {
					ln = tls.NewListener(ln, s.tls)
				}
				srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
					WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
				log.Info("listening", "listener", s.name, "addr", ln.Addr().String())
				g.Go(func() error {
					if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
						return fmt.Errorf("%s listener: %w", s.name, err)
					}
					return nil
				})
				g.Go(func() error {
					<-gctx.Done()
					sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					return srv.Shutdown(sctx)
				})
			}
			g.Go(func() error { return a.sync.Run(gctx) })
			// Other replicas' changes, announced at their commit (PostgreSQL);
			// the Run loops' polls remain the fallback.
			g.Go(func() error {
				return listenChanges(gctx, a.store, changeTargets{devices: a.sync, policy: a.policies, crl: a.crl}, log)
			})
			g.Go(func() error { return a.crl.Run(gctx) })
			g.Go(func() error { return a.policies.Run(gctx) })
			// Bulk revocation jobs: this replica's and any a stopped one left.
			g.Go(func() error { return a.revoke.Run(gctx) })
			// Live-session kicks: delivered at once, failures retried.
			g.Go(func() error { return a.kick.Run(gctx) })
			// Certificates replaced by renewals, revoked (reason superseded)
			// once their profile's grace has passed; safe on every replica.
			g.Go(func() error { return a.superseded.Run(gctx) })
			// Grants are computed in the background when devices or the policy
			// change, so the broker's requests never wait on the policy engine.
			// The same tick checks staleness, so entering the stale state is
			// logged within a second even when no broker asks.
			g.Go(func() error {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					if _, err := a.authz.WarmGrants(gctx); err != nil && gctx.Err() == nil {
						log.Error("computing device grants failed", "err", err)
					}
					a.authz.Stale()
					select {
					case <-gctx.Done():
						return nil
					case <-t.C:
					}
				}
			})
			fmt.Fprintf(cmd.OutOrStdout(), "Gatehouse %s: UI and API on %s\n", version, publicURL(v))
			err = g.Wait()
			log.Info("stopped")
			return err
		},
	}
	addServerFlags(cmd)
	f := cmd.Flags()
	f.String("api-addr", "127.0.0.1:8080", "API and web UI listen address")
	f.String("hooks-addr", "127.0.0.1:8081", "broker hook listen address")
	f.String("diag-addr", "127.0.0.1:9090", "diagnostics listen address (/healthz, /readyz)")
	f.String("tls-cert", "", "API TLS certificate file (PEM); enables HTTPS and renewal over mutual TLS")
	f.String("tls-key", "", "API TLS key file (PEM)")
	f.String("public-url", "", "base URL devices reach the API at, put into certificates (default http://<api-addr>)")
	return cmd
}
