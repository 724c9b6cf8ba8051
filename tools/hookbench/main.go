// Command hookbench serves the EMQX authorization hook for load tests: either
// Gatehouse's real handler over an in-memory decision core with 100k devices,
// or a no-op echo handler as the baseline. run.sh pins it to one core and
// drives it with wrk from another.
//
// It listens on a free port by default and writes the address to -addr-file
// once it listens; GET /healthz answers "hookbench pid=<pid> nonce=<nonce>",
// so run.sh measures the server it started and not whatever else listens.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/policy"
)

func main() {
	mode := flag.String("mode", "gatehouse", "gatehouse or noop")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0: a free one)")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file once listening")
	nonce := flag.String("nonce", "", "reported by GET /healthz with the pid")
	devices := flag.Int("devices", 100000, "devices loaded into the decision core")
	flag.Parse()
	// Hooks are closed by default: the load generator sends this secret.
	secret := os.Getenv("HOOKBENCH_SECRET")

	var h http.Handler
	switch *mode {
	case "noop":
		e := echo.New()
		e.HideBanner, e.HidePort = true, true
		e.POST("/hooks/emqx/authz", func(c echo.Context) error {
			_, _ = io.Copy(io.Discard, c.Request().Body)
			return c.JSON(http.StatusOK, map[string]string{"result": "allow"})
		})
		h = e
	case "gatehouse":
		if secret == "" {
			log.Fatal("set HOOKBENCH_SECRET (at least 16 bytes): Gatehouse hooks are closed by default")
		}
		p, err := policy.Compile(context.Background(), policy.Default())
		if err != nil {
			log.Fatal(err)
		}
		az := authz.New(authz.Config{})
		az.SetPolicy(p, 1)
		exp := time.Now().Add(24 * time.Hour)
		for i := 0; i < *devices; i++ {
			az.UpsertDevice(authz.Device{ID: fmt.Sprintf("dev-%06d", i), Fleet: "plant", Active: true, Status: "active",
				Roles: []string{"telemetry"}, CertSerial: "1", CertNotAfter: exp})
		}
		// As in serve: grants are computed when device state arrives, not on
		// a device's first request.
		start := time.Now()
		n, err := az.WarmGrants(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("warmed grants of %d devices in %s", n, time.Since(start))
		hk, err := hooks.New(hooks.Config{Authorizer: az, Secret: secret})
		if err != nil {
			log.Fatal(err)
		}
		h = hk
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
	id := fmt.Sprintf("hookbench pid=%d nonce=%s", os.Getpid(), *nonce)
	bench := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = io.WriteString(w, id)
			return
		}
		bench.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		// Renamed into place, so a reader never sees half an address.
		tmp := filepath.Join(filepath.Dir(*addrFile), "."+filepath.Base(*addrFile)+".tmp")
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("hookbench %s listening on %s", *mode, ln.Addr())
	log.Fatal(srv.Serve(ln))
}
