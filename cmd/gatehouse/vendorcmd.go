package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// newVendorCmd manages the vendor PKIs whose IDevIDs enroll into a fleet
// without a token (issue 15), over the admin API like revoke and token.
func newVendorCmd() *cobra.Command {
	v := &cobra.Command{
		Use:   "vendor",
		Short: "Vendor IDevIDs: register vendor PKIs per fleet, their CRLs and allow-lists",
		Long: `Register a vendor's trust anchors (and intermediates) for a fleet: a device
presenting a valid IDevID of that vendor as its TLS client certificate then
enrolls over EST without a token, once per IDevID unless --allow-reenroll.
The device id is read from the IDevID (--id-from) behind --id-prefix.
Import the vendor's CRLs with "vendor crl" and, optionally, an allow-list
of IDevID serials (CSV, first column) with "vendor allowlist".
Every command needs an admin token of role admin.`,
	}
	pf := v.PersistentFlags()
	pf.String("server", "http://127.0.0.1:8080", "Gatehouse API base URL")
	pf.String("admin-token", os.Getenv("GATEHOUSE_ADMIN_TOKEN"), "admin API token, role admin (or GATEHOUSE_ADMIN_TOKEN)")
	pf.String("ca-file", "", "CA bundle to trust for an https server")
	pf.String("fleet", "default", "the vendor's fleet")
	pf.Bool("json", false, "print the result (or the error) as JSON")

	add := &cobra.Command{
		Use:   "add",
		Short: "Register a vendor PKI for a fleet",
		Args:  cobra.NoArgs,
		RunE: vendorRun(func(cmd *cobra.Command, c *client, fleet string, _ []string) (any, error) {
			f := cmd.Flags()
			req := apitypes.IDevIDVendorRequest{Name: must(f.GetString("name")), Profile: must(f.GetString("profile")),
				IDFrom: must(f.GetString("id-from")), IDPrefix: must(f.GetString("id-prefix")),
				AllowReenroll: must(f.GetBool("allow-reenroll")), RequireAllowList: must(f.GetBool("require-allowlist"))}
			var err error
			if req.AnchorsPEM, err = readText(must(f.GetString("anchors")), "--anchors"); err != nil {
				return nil, err
			}
			if path := must(f.GetString("intermediates")); path != "" {
				if req.IntermediatesPEM, err = readText(path, "--intermediates"); err != nil {
					return nil, err
				}
			}
			var res apitypes.IDevIDVendor
			if err := c.call("POST", vendorsURL(fleet, ""), req, &res); err != nil {
				return nil, err
			}
			if !asJSON(cmd) {
				fmt.Fprintf(cmd.OutOrStdout(), "vendor %s/%s registered\n", res.Fleet, res.Name)
				printVendor(cmd.OutOrStdout(), res)
			}
			return res, nil
		}),
	}
	af := add.Flags()
	af.String("name", "", "vendor name ([A-Za-z0-9._-]{1,64})")
	af.String("profile", "default", "profile the vendor's devices enroll with")
	af.String("anchors", "", "PEM file of the vendor's trust anchors (root CAs)")
	af.String("intermediates", "", "PEM file of the vendor's intermediate CAs")
	af.String("id-from", "serial_number", "where the device id is read: serial_number, cn, san_dns, san_uri or san_hwmodule")
	af.String("id-prefix", "", "prefix put before the value read (e.g. acme-)")
	af.Bool("allow-reenroll", false, "let one IDevID enroll again (a factory reset) instead of once")
	af.Bool("require-allowlist", false, "enroll only IDevID serials on the imported allow-list")

	list := &cobra.Command{
		Use:   "list",
		Short: "List a fleet's vendors",
		Args:  cobra.NoArgs,
		RunE: vendorRun(func(cmd *cobra.Command, c *client, fleet string, _ []string) (any, error) {
			var res apitypes.IDevIDVendorList
			if err := c.call("GET", vendorsURL(fleet, ""), nil, &res); err != nil {
				return nil, err
			}
			if !asJSON(cmd) {
				w := cmd.OutOrStdout()
				if len(res.Vendors) == 0 {
					fmt.Fprintf(w, "fleet %s has no vendors\n", fleet)
				}
				for _, v := range res.Vendors {
					fmt.Fprintf(w, "%s\tprofile=%s\tid_from=%s\tanchors=%d\tcrls=%d\tallowlist=%d%s\n", v.Name, v.Profile, v.IDFrom,
						len(v.Anchors), len(v.CRLs), v.AllowListSize, staleNote(v.CRLs))
				}
			}
			return res, nil
		}),
	}

	show := &cobra.Command{
		Use:   "show",
		Short: "Show a vendor: anchors, intermediates, CRLs, allow-list size",
		Args:  cobra.NoArgs,
		RunE: vendorRun(func(cmd *cobra.Command, c *client, fleet string, _ []string) (any, error) {
			var res apitypes.IDevIDVendor
			if err := c.call("GET", vendorsURL(fleet, nameFlag(cmd)), nil, &res); err != nil {
				return nil, err
			}
			if !asJSON(cmd) {
				fmt.Fprintf(cmd.OutOrStdout(), "vendor %s/%s\n", res.Fleet, res.Name)
				printVendor(cmd.OutOrStdout(), res)
			}
			return res, nil
		}),
	}

	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove a vendor with its CRLs and allow-list (devices it enrolled stay)",
		Args:  cobra.NoArgs,
		RunE: vendorRun(func(cmd *cobra.Command, c *client, fleet string, _ []string) (any, error) {
			name := nameFlag(cmd)
			if _, err := c.do("DELETE", vendorsURL(fleet, name), "", nil); err != nil {
				return nil, err
			}
			if !asJSON(cmd) {
				fmt.Fprintf(cmd.OutOrStdout(), "vendor %s/%s removed\n", fleet, name)
			}
			return map[string]any{"ok": true, "fleet": fleet, "vendor": name}, nil
		}),
	}

	crl := &cobra.Command{
		Use:   "crl FILE",
		Short: "Import a vendor CRL (PEM or DER); an older one than stored is refused",
		Args:  cobra.ExactArgs(1),
		RunE: vendorRun(func(cmd *cobra.Command, c *client, fleet string, args []string) (any, error) {
			var res apitypes.VendorCRL
			if err := sendFile(c, "PUT", vendorsURL(fleet, nameFlag(cmd))+"/crls", "application/pkix-crl", args[0], &res); err != nil {
				return nil, err
			}
			if !asJSON(cmd) {
				fmt.Fprintf(cmd.OutOrStdout(), "CRL of %s imported: number %s, %d entries, next update %s%s\n", res.Issuer,
					orNone(res.Number), res.Entries, res.NextUpdate.Format(time.RFC3339), staleNote([]apitypes.VendorCRL{res}))
			}
			return res, nil
		}),
	}

	allow := &cobra.Command{
		Use:   "allowlist FILE.csv",
		Short: "Replace a vendor's allow-list with the IDevID serials of a CSV (first column)",
		Args:  cobra.ExactArgs(1),
		RunE: vendorRun(func(cmd *cobra.Command, c *client, fleet string, args []string) (any, error) {
			var res apitypes.AllowListResult
			if err := sendFile(c, "PUT", vendorsURL(fleet, nameFlag(cmd))+"/allowlist", "text/csv", args[0], &res); err != nil {
				return nil, err
			}
			if !asJSON(cmd) {
				fmt.Fprintf(cmd.OutOrStdout(), "allow-list of %s/%s replaced: %d serials\n", res.Fleet, res.Vendor, res.Count)
			}
			return res, nil
		}),
	}
	for _, sub := range []*cobra.Command{show, remove, crl, allow} {
		sub.Flags().String("name", "", "vendor name")
	}
	v.AddCommand(add, list, show, remove, crl, allow)
	return v
}

func vendorsURL(fleet, name string) string {
	u := "/api/v1/fleets/" + url.PathEscape(fleet) + "/idevid-vendors"
	if name != "" {
		u += "/" + url.PathEscape(name)
	}
	return u
}

func nameFlag(cmd *cobra.Command) string { return must(cmd.Flags().GetString("name")) }

// vendorRun wraps a vendor subcommand: it checks --name where the command
// has one, builds the client and renders the result or the error (JSON
// with --json), as revoke does.
func vendorRun(fn func(cmd *cobra.Command, c *client, fleet string, args []string) (any, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		res, err := func() (any, error) {
			f := cmd.Flags()
			if f.Lookup("name") != nil && strings.TrimSpace(nameFlag(cmd)) == "" {
				return nil, fault.New(fault.InvalidArgument, "--name is required")
			}
			fleet := must(f.GetString("fleet"))
			if strings.TrimSpace(fleet) == "" {
				return nil, fault.New(fault.InvalidArgument, "--fleet is required")
			}
			c, err := newClient(must(f.GetString("server")), must(f.GetString("admin-token")), must(f.GetString("ca-file")))
			if err != nil {
				return nil, err
			}
			if c.token == "" {
				return nil, fault.New(fault.Unauthenticated, "--admin-token or GATEHOUSE_ADMIN_TOKEN is required")
			}
			return fn(cmd, c, fleet, args)
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

// readText reads a PEM file for a JSON field.
func readText(path, flag string) (string, error) {
	if path == "" {
		return "", fault.New(fault.InvalidArgument, "%s is required", flag)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fault.Wrap(err, fault.InvalidArgument, "%s: %v", flag, err)
	}
	return string(b), nil
}

// sendFile streams a file as the request body (an allow-list may be tens
// of MB) and decodes the JSON reply into out.
func sendFile(c *client, method, path, contentType, file string, out any) error {
	fh, err := os.Open(file)
	if err != nil {
		return fault.Wrap(err, fault.InvalidArgument, "%v", err)
	}
	defer fh.Close()
	body, err := c.send(method, path, "", contentType, fh)
	if err != nil {
		return err
	}
	return decodeReply(body, method, path, out)
}

func decodeReply(body []byte, method, path string, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fault.New(fault.Unavailable, "server sent an unreadable reply to %s %s", method, path)
	}
	return nil
}

func printVendor(w io.Writer, v apitypes.IDevIDVendor) {
	fmt.Fprintf(w, "  profile: %s\n  device id: %q + the IDevID's %s\n  allow re-enrollment: %t\n  require allow-list: %t (%d serials)\n",
		v.Profile, v.IDPrefix, v.IDFrom, v.AllowReenroll, v.RequireAllowList, v.AllowListSize)
	for _, group := range []struct {
		what  string
		certs []apitypes.VendorCert
	}{{"anchor", v.Anchors}, {"intermediate", v.Intermediates}} {
		for _, c := range group.certs {
			fmt.Fprintf(w, "  %s: %s\n    sha256 %s, not after %s\n", group.what, c.Subject, c.Fingerprint, c.NotAfter.Format(time.RFC3339))
		}
	}
	for _, c := range v.CRLs {
		fmt.Fprintf(w, "  crl: %s number %s, %d entries, next update %s%s\n", c.Issuer, orNone(c.Number), c.Entries,
			c.NextUpdate.Format(time.RFC3339), staleNote([]apitypes.VendorCRL{c}))
	}
}

func staleNote(crls []apitypes.VendorCRL) string {
	for _, c := range crls {
		if c.Stale {
			return " (STALE CRL: import a fresh one; its IDevIDs are refused until then)"
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
