package main

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// newProfileCmd is the operator's way to device profiles from a shell: the
// same API the web UI's profile form uses.
func newProfileCmd() *cobra.Command {
	prof := &cobra.Command{Use: "profile", Short: "Device profiles: what a device's certificate looks like and how it enrolls"}
	create := &cobra.Command{
		Use:   "create NAME --key-types P-256 --validity 720h",
		Short: "Create a profile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := profileClient(cmd)
			if err != nil {
				return err
			}
			req := apitypes.ProfileRequest{Name: args[0]}
			profileFlags(cmd.Flags(), &req, true)
			return profileCall(cmd, c, "POST", "/api/v1/profiles", req)
		},
	}
	update := &cobra.Command{
		Use:   "update NAME [--server-keygen] [--device-id-from csr_serial_number] …",
		Short: "Change the given settings of a profile; the others stay as they are",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := profileClient(cmd)
			if err != nil {
				return err
			}
			path := "/api/v1/profiles/" + url.PathEscape(args[0])
			b, err := c.do("GET", path, "", nil)
			if err != nil {
				return err
			}
			var cur apitypes.Profile
			if err := json.Unmarshal(b, &cur); err != nil {
				return fault.New(fault.Unavailable, "server sent an unreadable profile")
			}
			// PUT replaces key types, validity, window and roles: start from
			// what the profile has, then apply the flags given.
			req := apitypes.ProfileRequest{Name: cur.Name, KeyTypes: cur.KeyTypes, Validity: cur.Validity,
				RenewWindow: cur.RenewWindow, Roles: cur.Roles}
			profileFlags(cmd.Flags(), &req, false)
			return profileCall(cmd, c, "PUT", path, req)
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a profile as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := profileClient(cmd)
			if err != nil {
				return err
			}
			return profileCall(cmd, c, "GET", "/api/v1/profiles/"+url.PathEscape(args[0]), nil)
		},
	}
	for _, sub := range []*cobra.Command{create, update, get} {
		f := sub.Flags()
		f.String("server", "http://127.0.0.1:8080", "Gatehouse API base URL")
		f.String("admin-token", os.Getenv("GATEHOUSE_ADMIN_TOKEN"), "admin API token (or GATEHOUSE_ADMIN_TOKEN)")
		f.String("ca-file", "", "CA bundle to trust for an https server")
		if sub == get {
			continue
		}
		f.StringSlice("key-types", nil, "allowed device key types: P-256, P-384, Ed25519, RSA")
		f.String("validity", "", "certificate lifetime, e.g. 720h or 30d")
		f.String("renew-window", "", "how long before expiry a device may renew (default a third of the validity)")
		f.String("superseded-grace", "", "how long a certificate replaced by a renewal stays valid (default 1h; 0 revokes at renewal)")
		f.String("renew-after-expiry", "", "how long after expiry a sleepy device may still renew (default 0, never)")
		f.StringSlice("roles", nil, "roles written into certificates")
		f.Bool("server-keygen", false, "EST serverkeygen may generate the device's key on the server (--server-keygen=false turns it off)")
		f.String("device-id-from", "", "where the device id comes from when the token fixes none: token (default) or csr_serial_number")
	}
	prof.AddCommand(create, update, get)
	return prof
}

func profileClient(cmd *cobra.Command) (*client, error) {
	f := cmd.Flags()
	c, err := newClient(must(f.GetString("server")), must(f.GetString("admin-token")), must(f.GetString("ca-file")))
	if err != nil {
		return nil, err
	}
	if c.token == "" {
		return nil, fault.New(fault.Unauthenticated, "--admin-token or GATEHOUSE_ADMIN_TOKEN is required")
	}
	return c, nil
}

// profileFlags applies to req the flags given (all of them on create,
// where an empty value is the server's default). A flag left out of an
// update leaves its setting as it is.
func profileFlags(f *pflag.FlagSet, req *apitypes.ProfileRequest, create bool) {
	set := func(name string) bool { return create || f.Changed(name) }
	if set("key-types") {
		req.KeyTypes = must(f.GetStringSlice("key-types"))
	}
	if set("validity") {
		req.Validity = must(f.GetString("validity"))
	}
	if set("renew-window") {
		req.RenewWindow = must(f.GetString("renew-window"))
	}
	if set("roles") {
		req.Roles = must(f.GetStringSlice("roles"))
	}
	req.SupersededGrace = must(f.GetString("superseded-grace"))
	req.RenewAfterExpiry = must(f.GetString("renew-after-expiry"))
	req.DeviceIDFrom = strings.TrimSpace(must(f.GetString("device-id-from")))
	if f.Changed("server-keygen") {
		req.ServerKeygen = new(must(f.GetBool("server-keygen")))
	}
}

// profileCall sends req and prints the profile the server answers.
func profileCall(cmd *cobra.Command, c *client, method, path string, req any) error {
	b, err := c.do(method, path, "", req)
	if err != nil {
		return err
	}
	var p apitypes.Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return fault.New(fault.Unavailable, "server sent an unreadable profile")
	}
	writeJSON(cmd.OutOrStdout(), p)
	return nil
}
