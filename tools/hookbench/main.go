// Command hookbench serves the EMQX authorization hook for load tests: either
// Gatehouse's real handler over an in-memory decision core with 100k devices,
// or a no-op echo handler as the baseline. run.sh pins it to one core and
// drives it with wrk from another.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/policy"
)

func main() {
	mode := flag.String("mode", "gatehouse", "gatehouse or noop")
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	devices := flag.Int("devices", 100000, "devices loaded into the decision core")
	flag.Parse()

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
		hk, err := hooks.New(hooks.Config{Authorizer: az})
		if err != nil {
			log.Fatal(err)
		}
		h = hk
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("hookbench %s listening on %s", *mode, *addr)
	log.Fatal(srv.ListenAndServe())
}
