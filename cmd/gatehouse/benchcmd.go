package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/mqttbench"
)

// The bench commands load a broker with devices enrolled for real (batch
// tokens, a CSR per device, the server's issuance path), so the broker and
// its auth plugin see the certificates they would see in a fleet. Enrolled
// devices are kept in --devices-dir and reused while the server still
// vouches for them, because enrolling ten thousand devices takes longer
// than the storm itself.

func newBenchCmd() *cobra.Command {
	b := &cobra.Command{Use: "bench", Short: "Load tools: MQTT CONNECT storm and publish throughput with enrolled devices"}
	b.AddCommand(newBenchEnrollCmd(), newConnectStormCmd(), newPublishBenchCmd())
	return b
}

func newBenchEnrollCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Enroll (or check the cache of) the bench devices, the revoked ones and the subscriber, without connecting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			env, err := newBenchEnv(cmd)
			if err != nil {
				return err
			}
			if _, err := env.devices.ensure(cmd.ErrOrStderr(), benchIDs("bench", must(f.GetInt("count")))); err != nil {
				return err
			}
			if _, err := env.subscriberDevices(cmd).ensure(cmd.ErrOrStderr(), []string{must(f.GetString("subscriber"))}); err != nil {
				return err
			}
			_, err = env.devices.ensureRevoked(cmd.ErrOrStderr(), benchIDs("benchrev", must(f.GetInt("revoked"))))
			return err
		},
	}
	benchFlags(cmd)
	f := cmd.Flags()
	f.IntP("count", "n", 1000, "number of bench devices")
	f.Int("revoked", 0, "number of revoked bench devices")
	f.String("subscriber", "bench-sink", "device id of the publish bench's subscriber")
	f.String("subscriber-profile", "", "profile of the subscriber (default: --profile)")
	return cmd
}

// benchFlags are the flags both bench commands share.
func benchFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("server", "http://127.0.0.1:8080", "Gatehouse API base URL (enrollment)")
	f.String("admin-token", os.Getenv("GATEHOUSE_ADMIN_TOKEN"), "admin API token (or GATEHOUSE_ADMIN_TOKEN): token batches, revocations")
	f.String("ca-file", "", "CA bundle to trust for an https Gatehouse API")
	f.String("fleet", "default", "fleet of the bench devices")
	f.String("profile", "default", "profile of the bench devices")
	f.String("key-type", "P-256", "device key type")
	f.String("devices-dir", "", "directory caching enrolled devices (<dir>/<id>/device.key, device.crt); reused across runs")
	f.Int("enroll-parallel", 8, "concurrent enrollments")
	f.String("broker", "127.0.0.1:8883", "broker TLS listener host:port")
	f.String("broker-ca", "", "CA file that signed the broker's server certificate")
	f.String("broker-name", "", "server name to verify in the broker's certificate (default: the host of --broker)")
	f.Int("broker-pid", 0, "broker process to measure (CPU time, peak RSS)")
	f.Int("gatehouse-pid", 0, "Gatehouse process to measure (CPU time, peak RSS)")
	f.Bool("json", false, "print the report as JSON")
	_ = cmd.MarkFlagRequired("devices-dir")
	_ = cmd.MarkFlagRequired("broker-ca")
}

func newConnectStormCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connect-storm",
		Short: "Connect N enrolled devices at once over mutual TLS, each publishing once; report latency and wrong decisions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			env, err := newBenchEnv(cmd)
			if err != nil {
				return err
			}
			n, spoof, revoked := must(f.GetInt("count")), must(f.GetInt("spoof")), must(f.GetInt("revoked"))
			if n < 1 || spoof < 0 || revoked < 0 || spoof > n {
				return fault.New(fault.InvalidArgument, "need --count ≥ 1, 0 ≤ --spoof ≤ --count, --revoked ≥ 0")
			}
			devs, err := env.devices.ensure(cmd.ErrOrStderr(), benchIDs("bench", n))
			if err != nil {
				return err
			}
			revs, err := env.devices.ensureRevoked(cmd.ErrOrStderr(), benchIDs("benchrev", revoked))
			if err != nil {
				return err
			}
			cfg := mqttbench.StormConfig{Addr: env.broker, TLS: env.tls, MaxInflight: must(f.GetInt("max-inflight")),
				Timeout: must(f.GetDuration("timeout")), QoS: byte(must(f.GetInt("qos"))), KeepAlive: 300}
			for _, d := range devs {
				cfg.Clients = append(cfg.Clients, env.client(d, d.id, "device", true))
			}
			for _, d := range revs {
				cfg.Clients = append(cfg.Clients, env.client(d, d.id, "revoked", false))
			}
			// Spoof i presents device i's certificate with the client id of
			// device (i + n/2) mod n: a live session the broker must leave
			// alone.
			for i := 0; i < spoof; i++ {
				victim := devs[(i+n/2)%n]
				if n == 1 {
					victim = benchDevice{id: "bench-nobody"}
				}
				cfg.Late = append(cfg.Late, env.client(devs[i], victim.id, "spoof", false))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "storm: %d devices, %d revoked, %d spoofs against %s…\n", n, revoked, spoof, env.broker)
			w := mqttbench.WatchProcs(env.pids)
			rep, _ := mqttbench.Storm(cmd.Context(), cfg)
			rep.Procs = w.Done()
			if must(f.GetBool("json")) {
				writeJSON(cmd.OutOrStdout(), rep)
			} else {
				printStorm(cmd.OutOrStdout(), rep)
			}
			if rep.Wrong > 0 || rep.Errors > 0 {
				return cliError{error: fmt.Errorf("%d wrong decisions, %d errors", rep.Wrong, rep.Errors), silent: false}
			}
			return nil
		},
	}
	benchFlags(cmd)
	f := cmd.Flags()
	f.IntP("count", "n", 1000, "number of devices connecting at once")
	f.Int("spoof", 0, "after the storm, this many devices connect with another connected device's client id (must be refused)")
	f.Int("revoked", 0, "this many revoked devices join the storm (must be refused)")
	f.Int("max-inflight", 0, "bound on concurrent connection attempts (0: all at once)")
	f.Duration("timeout", 30*time.Second, "per-connection limit, TCP connect to CONNACK")
	f.Int("qos", 1, "QoS of each device's one publish (1 waits for the PUBACK)")
	return cmd
}

func newPublishBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "M devices publish as fast as allowed for T to their own topics; one subscriber counts deliveries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			env, err := newBenchEnv(cmd)
			if err != nil {
				return err
			}
			m := must(f.GetInt("publishers"))
			if m < 1 {
				return fault.New(fault.InvalidArgument, "--publishers must be ≥ 1")
			}
			devs, err := env.devices.ensure(cmd.ErrOrStderr(), benchIDs("bench", m))
			if err != nil {
				return err
			}
			subID := must(f.GetString("subscriber"))
			subs, err := env.subscriberDevices(cmd).ensure(cmd.ErrOrStderr(), []string{subID})
			if err != nil {
				return err
			}
			filter := must(f.GetString("filter"))
			if filter == "" {
				filter = "fleets/" + env.devices.fleet + "/devices/+/telemetry/#"
			}
			cfg := mqttbench.ThroughputConfig{Addr: env.broker, TLS: env.tls, SubFilter: filter,
				Subscriber: env.client(subs[0], subID, "subscriber", true), QoS: byte(must(f.GetInt("qos"))),
				Duration: must(f.GetDuration("duration")), Payload: must(f.GetInt("payload")), Window: must(f.GetInt("window"))}
			for _, d := range devs {
				cfg.Publishers = append(cfg.Publishers, env.client(d, d.id, "device", true))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "publish: %d publishers, QoS %d, %s against %s…\n", m, cfg.QoS, cfg.Duration, env.broker)
			rep, err := mqttbench.Throughput(cmd.Context(), cfg, env.pids)
			if err != nil {
				return err
			}
			if must(f.GetBool("json")) {
				writeJSON(cmd.OutOrStdout(), rep)
				return nil
			}
			printThroughput(cmd.OutOrStdout(), must(f.GetString("label")), rep)
			return nil
		},
	}
	benchFlags(cmd)
	f := cmd.Flags()
	f.Int("publishers", 20, "number of publishing devices")
	f.Duration("duration", 10*time.Second, "how long they publish")
	f.Int("qos", 0, "QoS 0 or 1")
	f.Int("payload", 64, "payload bytes per message")
	f.Int("window", 16, "unacknowledged QoS 1 messages per publisher")
	f.String("subscriber", "bench-sink", "device id of the counting subscriber (enrolled like the others)")
	// With an auth plugin the subscriber needs a policy grant to read the
	// publishers' topics: scripts/bench-mosquitto.sh gives devices of a
	// bench-monitor profile one.
	f.String("subscriber-profile", "", "profile of the subscriber (default: --profile)")
	f.String("filter", "", "the subscriber's filter (default fleets/<fleet>/devices/+/telemetry/#)")
	f.String("label", "", "label for the result line")
	return cmd
}

// benchEnv is what both commands set up from their flags.
type benchEnv struct {
	devices *benchDevices
	broker  string
	tls     *tls.Config
	pids    map[string]int
}

func newBenchEnv(cmd *cobra.Command) (*benchEnv, error) {
	f := cmd.Flags()
	admin, err := newClient(must(f.GetString("server")), must(f.GetString("admin-token")), must(f.GetString("ca-file")))
	if err != nil {
		return nil, err
	}
	broker := must(f.GetString("broker"))
	host, _, err := net.SplitHostPort(broker)
	if err != nil {
		return nil, fault.New(fault.InvalidArgument, "--broker %q: %v", broker, err)
	}
	name := must(f.GetString("broker-name"))
	if name == "" {
		name = host
	}
	pool, err := readPool(must(f.GetString("broker-ca")))
	if err != nil {
		return nil, err
	}
	pids := map[string]int{"broker": must(f.GetInt("broker-pid")), "gatehouse": must(f.GetInt("gatehouse-pid"))}
	for name, pid := range pids {
		if _, err := mqttbench.SampleProc(pid); pid != 0 && err != nil {
			return nil, fault.New(fault.InvalidArgument, "--%s-pid %d: %v", name, pid, err)
		}
	}
	return &benchEnv{
		devices: &benchDevices{dir: must(f.GetString("devices-dir")), server: must(f.GetString("server")), caFile: must(f.GetString("ca-file")),
			admin: admin, fleet: must(f.GetString("fleet")), profile: must(f.GetString("profile")),
			keyType: must(f.GetString("key-type")), parallel: max(1, must(f.GetInt("enroll-parallel")))},
		broker: broker,
		// Session resumption would skip the certificate check a storm is
		// about: every connection does a full handshake.
		tls:  &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12, ClientSessionCache: nil},
		pids: withSelf(pids),
	}, nil
}

// withSelf adds this process: the load generator shares the machine's
// cores with what it measures, and its own cost says how much.
func withSelf(pids map[string]int) map[string]int {
	pids["bench (this process)"] = os.Getpid()
	return pids
}

// subscriberDevices enrolls in --subscriber-profile, when given.
func (e *benchEnv) subscriberDevices(cmd *cobra.Command) *benchDevices {
	d := *e.devices
	if p := must(cmd.Flags().GetString("subscriber-profile")); p != "" {
		d.profile = p
	}
	return &d
}

func (e *benchEnv) client(d benchDevice, clientID, kind string, allow bool) mqttbench.Client {
	return mqttbench.Client{Name: d.id, ClientID: clientID, Cert: d.cert, Kind: kind, ExpectAllow: allow,
		Topic: "fleets/" + e.devices.fleet + "/devices/" + d.id + "/telemetry/bench"}
}

// readPool reads the PEM certificates in path into a pool; a file without
// one is an error.
func readPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fault.New(fault.InvalidArgument, "%s holds no PEM certificate", path)
	}
	return pool, nil
}

// benchIDs are the device ids prefix-000000 … of n bench devices.
func benchIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return ids
}

// benchDevices enrolls bench devices and caches them on disk.
type benchDevices struct {
	dir, server, caFile     string
	admin                   *client
	fleet, profile, keyType string
	parallel                int
	roots                   *x509.CertPool // the server's CA chain, fetched once
}

type benchDevice struct {
	id   string
	cert tls.Certificate
}

// revokedMarker in a device's directory records that it was revoked.
const revokedMarker = "revoked"

// ensure returns the devices ids, enrolling those not cached or cached
// with a certificate the server's CA does not vouch for (a cache from an
// earlier server's data dir).
func (b *benchDevices) ensure(progress io.Writer, ids []string) ([]benchDevice, error) {
	if err := b.loadRoots(); err != nil {
		return nil, err
	}
	out := make([]benchDevice, len(ids))
	var missing []int
	for i, id := range ids {
		d, err := b.load(id)
		if err != nil {
			missing = append(missing, i)
			continue
		}
		out[i] = d
	}
	if len(missing) == 0 {
		return out, nil
	}
	start := time.Now()
	fmt.Fprintf(progress, "enrolling %d devices (%d cached in %s)…\n", len(missing), len(ids)-len(missing), b.dir)
	// One batch of tokens fixed to the ids, in chunks the API accepts.
	const chunk = 10000
	tokens := make(map[string]string, len(missing))
	for lo := 0; lo < len(missing); lo += chunk {
		hi := min(lo+chunk, len(missing))
		var want []string
		for _, i := range missing[lo:hi] {
			want = append(want, ids[i])
		}
		body, err := b.admin.do("POST", "/api/v1/token-batches", "",
			apitypes.BatchRequest{Fleet: b.fleet, Profile: b.profile, TTL: "24h", DeviceIDs: want, Count: len(want)})
		if err != nil {
			return nil, err
		}
		var res apitypes.BatchResponse
		if err := json.Unmarshal(body, &res); err != nil {
			return nil, fault.New(fault.Unavailable, "server sent an unreadable batch response")
		}
		for _, tk := range res.Tokens {
			tokens[tk.DeviceID] = tk.Token
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	work := make(chan int)
	for w := 0; w < b.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := ids[i]
				dir := filepath.Join(b.dir, id)
				_ = os.Remove(filepath.Join(dir, revokedMarker))
				_, err := runEnroll(b.server, tokens[id], dir, id, b.keyType, b.caFile, true)
				var d benchDevice
				if err == nil {
					d, err = b.load(id)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("enroll %s: %w", id, err)
				}
				out[i] = d
				mu.Unlock()
			}
		}()
	}
	for _, i := range missing {
		if tokens[ids[i]] == "" {
			mu.Lock()
			firstErr = fault.New(fault.Internal, "no token for %s in the batch", ids[i])
			mu.Unlock()
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	fmt.Fprintf(progress, "enrolled %d devices in %s (%.0f/s)\n", len(missing), time.Since(start).Round(time.Millisecond),
		float64(len(missing))/time.Since(start).Seconds())
	return out, nil
}

// ensureRevoked is ensure, then a revocation through the API of each
// device not yet revoked.
func (b *benchDevices) ensureRevoked(progress io.Writer, ids []string) ([]benchDevice, error) {
	devs, err := b.ensure(progress, ids)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		marker := filepath.Join(b.dir, d.id, revokedMarker)
		if _, err := os.Stat(marker); err == nil {
			continue
		}
		if _, err := b.admin.do("POST", "/api/v1/devices/"+d.id+"/revoke", "",
			apitypes.RevokeRequest{Reason: "keyCompromise", Note: "gatehouse bench"}); err != nil {
			return nil, fmt.Errorf("revoke %s: %w", d.id, err)
		}
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			return nil, err
		}
	}
	return devs, nil
}

func (b *benchDevices) loadRoots() error {
	if b.roots != nil {
		return nil
	}
	chain, err := b.admin.do("GET", "/api/v1/ca/chain", "", nil)
	if err != nil {
		return err
	}
	b.roots = x509.NewCertPool()
	if !b.roots.AppendCertsFromPEM(chain) {
		return fault.New(fault.Unavailable, "the server's CA chain holds no certificate")
	}
	return nil
}

// load reads a cached device and checks the server's CA issued its
// certificate and it is valid for another hour.
func (b *benchDevices) load(id string) (benchDevice, error) {
	dir := filepath.Join(b.dir, id)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, deviceCertFile), filepath.Join(dir, deviceKeyFile))
	if err != nil {
		return benchDevice{}, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return benchDevice{}, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.roots, CurrentTime: time.Now().Add(time.Hour),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return benchDevice{}, err
	}
	if leaf.Subject.CommonName != id {
		return benchDevice{}, fmt.Errorf("%s: certificate for %q", dir, leaf.Subject.CommonName)
	}
	cert.Leaf = leaf
	return benchDevice{id: id, cert: cert}, nil
}

func printStorm(w io.Writer, r mqttbench.StormReport) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }
	all := "never (not every device was accepted)"
	if r.AllConnected > 0 {
		all = ms(r.AllConnected)
	}
	fmt.Fprintf(w, "devices: %d (+%d revoked, %d spoofs)\n", r.N, r.Revoked, r.Spoofs)
	fmt.Fprintf(w, "all connected after: %s (first wave done after %s)\n", all, ms(r.Wall))
	fmt.Fprintf(w, "accepted: %d of %d expected; published: %d\n", r.Accepted, r.N, r.Published)
	fmt.Fprintf(w, "CONNECT latency (TCP+TLS+CONNACK): p50 %s  p99 %s  max %s\n", ms(r.P50), ms(r.P99), ms(r.Max))
	var codes []string
	for c, n := range r.Codes {
		codes = append(codes, fmt.Sprintf("%d:%d", c, n))
	}
	sort.Strings(codes)
	fmt.Fprintf(w, "CONNACK codes: %s\n", strings.Join(codes, " "))
	var outs []string
	for k, n := range r.Outcomes {
		outs = append(outs, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(outs)
	fmt.Fprintf(w, "outcomes: %s\n", strings.Join(outs, ", "))
	fmt.Fprintf(w, "wrong decisions: %d\n", r.Wrong)
	for _, d := range r.WrongDetail {
		fmt.Fprintf(w, "  %s\n", d)
	}
	fmt.Fprintf(w, "live sessions lost after the spoof wave: %d\n", r.SessionsLost)
	fmt.Fprintf(w, "errors (timeouts, TCP): %d\n", r.Errors)
	for _, d := range r.ErrorDetail {
		fmt.Fprintf(w, "  %s\n", d)
	}
	printProcs(w, r.Procs)
	fmt.Fprintf(w, "result: n=%d all_connected_ms=%.0f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f wrong=%d errors=%d sessions_lost=%d\n",
		r.N, float64(r.AllConnected)/1e6, float64(r.P50)/1e6, float64(r.P99)/1e6, float64(r.Max)/1e6, r.Wrong, r.Errors, r.SessionsLost)
}

func printThroughput(w io.Writer, label string, r mqttbench.ThroughputReport) {
	fmt.Fprintf(w, "publishers: %d, QoS %d, %s\n", r.Publishers, r.QoS, r.Duration)
	fmt.Fprintf(w, "sent %d (%.0f/s), processed by the broker (PUBACK, or before a PINGRESP at QoS 0) %d, delivered %d (%.0f/s)\n",
		r.Sent, r.SentPerSec, r.Acked, r.Received, r.DeliveredPerSec)
	printProcs(w, r.Procs)
	if label == "" {
		label = "-"
	}
	fmt.Fprintf(w, "result: label=%s qos=%d sent_per_s=%.0f acked_per_s=%.0f delivered_per_s=%.0f sent=%d delivered=%d\n",
		label, r.QoS, r.SentPerSec, float64(r.Acked)/r.Duration.Seconds(), r.DeliveredPerSec, r.Sent, r.Received)
}

func printProcs(w io.Writer, ps []mqttbench.ProcUsage) {
	for _, p := range ps {
		fmt.Fprintf(w, "%s (pid %d): CPU %.2fs, peak RSS %.1f MiB, RSS now %.1f MiB", p.Name, p.PID, p.CPU.Seconds(),
			float64(p.PeakKiB)/1024, float64(p.EndKiB)/1024)
		if p.Err != "" {
			fmt.Fprintf(w, " (%s)", p.Err)
		}
		fmt.Fprintln(w)
	}
}
