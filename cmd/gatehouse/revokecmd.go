package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/revoke"
)

// newRevokeCmd groups everything that takes access away, and gives it back:
// revoke a device, a certificate or a whole token batch, suspend and
// reinstate a device. Suspend and reinstate live here rather than at the top
// level so that one command holds the whole lifecycle of a compromise.
func newRevokeCmd() *cobra.Command {
	rev := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a device, a certificate or a token batch; suspend or reinstate a device",
		Long: `Revoke a device, one certificate or every device enrolled from a token batch
(a compromised factory lot), with an RFC 5280 reason; suspend a device (a
reversible block that leaves the CRL alone) and reinstate it.

Reasons: ` + strings.Join(reasonNames(), ", ") + `.`,
	}
	pf := rev.PersistentFlags()
	pf.String("server", "http://127.0.0.1:8080", "Gatehouse API base URL")
	pf.String("admin-token", os.Getenv("GATEHOUSE_ADMIN_TOKEN"), "admin API token, role operator or admin (or GATEHOUSE_ADMIN_TOKEN)")
	pf.String("ca-file", "", "CA bundle to trust for an https server")
	pf.String("note", "", "free-text note recorded in the audit log")
	pf.Bool("json", false, "print the result (or the error) as JSON")

	rev.AddCommand(newRevokeDeviceCmd(), newRevokeCertificateCmd(), newRevokeBatchCmd(), newRevokeJobCmd(),
		newTransitionCmd("suspend", "Suspend a device: deny it until reinstated (certificates and CRL untouched)"),
		newTransitionCmd("reinstate", "Reinstate a suspended device"))
	return rev
}

// withReason adds the --reason flag of the subcommands that revoke.
func withReason(c *cobra.Command) *cobra.Command {
	c.Flags().String("reason", "unspecified", "RFC 5280 reason: "+strings.Join(reasonNames(), ", "))
	return c
}

// withPoll adds the --poll flag of the subcommands that follow a job.
func withPoll(c *cobra.Command) *cobra.Command {
	c.Flags().Duration("poll", 500*time.Millisecond, "how often to poll the job's progress")
	return c
}

func newRevokeDeviceCmd() *cobra.Command {
	return withReason(&cobra.Command{
		Use:   "device <device-id>",
		Short: "Revoke a device and all its certificates",
		Args:  cobra.ExactArgs(1),
		RunE:  revokeRun(revokeDevice),
	})
}

func revokeDevice(cmd *cobra.Command, c *client, body apitypes.RevokeRequest, id string) (any, error) {
	var res apitypes.DeviceRevocation
	if err := c.call("POST", "/api/v1/devices/"+url.PathEscape(id)+"/revoke", body, &res); err != nil {
		return nil, err
	}
	if !asJSON(cmd) {
		fmt.Fprintf(cmd.OutOrStdout(), "device %s revoked (%s); %d certificate(s) revoked: %s\n",
			res.Device, body.Reason, len(res.RevokedSerials), strings.Join(res.RevokedSerials, ", "))
	}
	printWarnings(cmd, res.Warnings)
	return map[string]any{"ok": true, "device": res.Device, "status": res.Status, "revoked_serials": res.RevokedSerials,
		"warnings": res.Warnings}, nil
}

func newRevokeCertificateCmd() *cobra.Command {
	return withReason(&cobra.Command{
		Use:     "certificate <serial>",
		Aliases: []string{"cert"},
		Short:   "Revoke one certificate (the device keeps its other certificates)",
		Args:    cobra.ExactArgs(1),
		RunE:    revokeRun(revokeCertificate),
	})
}

func revokeCertificate(cmd *cobra.Command, c *client, body apitypes.RevokeRequest, serial string) (any, error) {
	var res apitypes.CertificateResult
	if err := c.call("POST", "/api/v1/certificates/"+url.PathEscape(serial)+"/revoke", body, &res); err != nil {
		return nil, err
	}
	switch {
	case asJSON(cmd):
	case res.Discarded:
		// Its reason stays the discard's, whatever was asked.
		fmt.Fprintf(cmd.OutOrStdout(), "certificate %s was discarded (signed but never handed out): revoked already (cessationOfOperation)\n", serial)
	default:
		fmt.Fprintf(cmd.OutOrStdout(), "certificate %s %s (%s)\n", serial, res.Status, body.Reason)
	}
	printWarnings(cmd, res.Warnings)
	return map[string]any{"ok": true, "certificate": res}, nil
}

func newRevokeBatchCmd() *cobra.Command {
	batch := withPoll(withReason(&cobra.Command{
		Use:   "batch <batch-id>",
		Short: "Revoke a token batch: its unused tokens and every device enrolled with one",
		Long: `Revoke a token batch (a compromised factory lot): its unused tokens stop
enrolling at once, and a job on the server revokes every device enrolled with
one of its tokens, in steps. The command prints the job's progress until it
is done (or returns at once with --no-wait). The job survives restarts; running
the command again for the same batch shows or resumes the same job.`,
		Args: cobra.ExactArgs(1),
		RunE: revokeRun(revokeBatch),
	}))
	batch.Flags().Bool("no-wait", false, "start the job and return without waiting for it")
	return batch
}

func revokeBatch(cmd *cobra.Command, c *client, body apitypes.RevokeRequest, id string) (any, error) {
	var job apitypes.RevocationJob
	if err := c.call("POST", "/api/v1/token-batches/"+url.PathEscape(id)+"/revoke", body, &job); err != nil {
		return nil, err
	}
	progress := cmd.ErrOrStderr()
	fmt.Fprintf(progress, "batch %s revoked; job %s revokes its %d enrolled device(s)\n", id, job.ID, job.Total)
	if !must(cmd.Flags().GetBool("no-wait")) {
		var err error
		if job, err = waitJob(c, job, must(cmd.Flags().GetDuration("poll")), progress); err != nil {
			return nil, err
		}
	}
	return jobResult(cmd, job)
}

func newRevokeJobCmd() *cobra.Command {
	job := withPoll(&cobra.Command{
		Use:   "job <job-id>",
		Short: "Show a bulk revocation job (with --wait, follow it until it ends)",
		Args:  cobra.ExactArgs(1),
		RunE:  revokeRun(showJob),
	})
	job.Flags().Bool("wait", false, "poll until the job is no longer running")
	return job
}

func showJob(cmd *cobra.Command, c *client, _ apitypes.RevokeRequest, id string) (any, error) {
	var j apitypes.RevocationJob
	if err := c.call("GET", "/api/v1/revocation-jobs/"+url.PathEscape(id), nil, &j); err != nil {
		return nil, err
	}
	if must(cmd.Flags().GetBool("wait")) {
		var err error
		if j, err = waitJob(c, j, must(cmd.Flags().GetDuration("poll")), cmd.ErrOrStderr()); err != nil {
			return nil, err
		}
	}
	return jobResult(cmd, j)
}

// newTransitionCmd is suspend or reinstate: verb is both the subcommand and
// the last segment of the API path.
func newTransitionCmd(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " <device-id>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: revokeRun(func(cmd *cobra.Command, c *client, body apitypes.RevokeRequest, id string) (any, error) {
			return transitionDevice(cmd, c, verb, body.Note, id)
		}),
	}
}

func transitionDevice(cmd *cobra.Command, c *client, verb, note, id string) (any, error) {
	var res apitypes.DeviceResult
	if err := c.call("POST", "/api/v1/devices/"+url.PathEscape(id)+"/"+verb, apitypes.RevokeRequest{Note: note}, &res); err != nil {
		return nil, err
	}
	if !asJSON(cmd) {
		fmt.Fprintf(cmd.OutOrStdout(), "device %s is %s\n", id, res.Status)
	}
	printWarnings(cmd, res.Warnings)
	return map[string]any{"ok": true, "device": res}, nil
}

func reasonNames() []string {
	names := make([]string, 0, len(revoke.Reasons))
	for n := range revoke.Reasons {
		names = append(names, n)
	}
	// By code, as RFC 5280 lists them.
	slices.SortFunc(names, func(a, b string) int { return revoke.Reasons[a] - revoke.Reasons[b] })
	return names
}

func asJSON(cmd *cobra.Command) bool { return must(cmd.Flags().GetBool("json")) }

// revokeRun wraps a subcommand: it validates the reason before anything
// goes over the wire, builds the client, and renders errors as the other
// commands do (code and message; JSON with --json).
func revokeRun(fn func(cmd *cobra.Command, c *client, body apitypes.RevokeRequest, arg string) (any, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		res, err := func() (any, error) {
			f := cmd.Flags()
			body := apitypes.RevokeRequest{Note: must(f.GetString("note"))}
			if f.Lookup("reason") != nil {
				body.Reason = must(f.GetString("reason"))
				if _, err := revoke.ReasonCode(body.Reason); err != nil {
					return nil, err
				}
			}
			if strings.TrimSpace(args[0]) == "" {
				return nil, fault.New(fault.InvalidArgument, "the id argument is empty")
			}
			c, err := newClient(must(f.GetString("server")), must(f.GetString("admin-token")), must(f.GetString("ca-file")))
			if err != nil {
				return nil, err
			}
			if c.token == "" {
				return nil, fault.New(fault.Unauthenticated, "--admin-token or GATEHOUSE_ADMIN_TOKEN is required")
			}
			return fn(cmd, c, body, args[0])
		}()
		if asJSON(cmd) {
			if err != nil {
				writeJSON(cmd.OutOrStdout(), jsonError(err))
				return cliError{error: err, silent: true}
			}
			writeJSON(cmd.OutOrStdout(), res)
			return nil
		}
		return err
	}
}

// call sends a request and decodes the JSON reply into out.
func (c *client) call(method, path string, in, out any) error {
	body, err := c.do(method, path, "", in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fault.New(fault.Unavailable, "server sent an unreadable reply to %s %s", method, path)
	}
	return nil
}

// waitJob polls a job until it is no longer running, printing progress
// whenever it moves.
func waitJob(c *client, j apitypes.RevocationJob, every time.Duration, progress io.Writer) (apitypes.RevocationJob, error) {
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	start := time.Now()
	last := int64(-1)
	for {
		if j.Done != last {
			fmt.Fprintf(progress, "job %s: %s, %d/%d devices (%s), %d revoked\n", j.ID, j.Status, j.Done, j.Total,
				percent(j.Done, j.Total), j.Revoked)
			last = j.Done
		}
		if j.Status != "running" {
			fmt.Fprintf(progress, "job %s %s after %s\n", j.ID, j.Status, fmtDuration(time.Since(start)))
			return j, nil
		}
		time.Sleep(every)
		if err := c.call("GET", "/api/v1/revocation-jobs/"+url.PathEscape(j.ID), nil, &j); err != nil {
			return j, err
		}
	}
}

func percent(done, total int64) string {
	if total <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%d%%", min(done*100/total, 100))
}

// jobResult renders a job; a failed job is an error (exit 1) that says how
// to resume it.
func jobResult(cmd *cobra.Command, j apitypes.RevocationJob) (any, error) {
	if j.Status == "failed" {
		return nil, fault.New(fault.Unavailable, "revocation job %s failed at %d/%d devices: %s; run `gatehouse revoke batch %s` again to resume it",
			j.ID, j.Done, j.Total, j.Error, j.BatchID)
	}
	if !asJSON(cmd) {
		fmt.Fprintf(cmd.OutOrStdout(), "job %s %s: batch %s, %d/%d devices processed, %d revoked\n",
			j.ID, j.Status, j.BatchID, j.Done, j.Total, j.Revoked)
	}
	return map[string]any{"ok": true, "job": j}, nil
}
