package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
)

type jsonTime struct{ time.Time }

func (t jsonTime) MarshalJSON() ([]byte, error) { return json.Marshal(t.UTC().Format(time.RFC3339)) }

func newTokenCmd() *cobra.Command {
	tok := &cobra.Command{Use: "token", Short: "Bootstrap tokens for the factory line"}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a batch of one-time bootstrap tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			c, err := newClient(must(f.GetString("server")), must(f.GetString("admin-token")), must(f.GetString("ca-file")))
			if err != nil {
				return err
			}
			if c.token == "" {
				return fault.New(fault.Unauthenticated, "--admin-token or GATEHOUSE_ADMIN_TOKEN is required")
			}
			req := apitypes.BatchRequest{Fleet: must(f.GetString("fleet")), Profile: must(f.GetString("profile")),
				Count: must(f.GetInt("count")), TTL: must(f.GetString("ttl"))}
			if path := must(f.GetString("device-ids")); path != "" {
				ids, err := readLines(path)
				if err != nil {
					return err
				}
				for i, id := range ids {
					if err := deviceid.Check(fmt.Sprintf("%s: entry %d:", path, i+1), id); err != nil {
						return err
					}
				}
				req.DeviceIDs, req.Count = ids, len(ids)
			}
			return createTokens(cmd, c, req, must(f.GetString("csv")))
		},
	}
	f := create.Flags()
	f.String("server", "http://127.0.0.1:8080", "Gatehouse API base URL")
	f.String("admin-token", os.Getenv("GATEHOUSE_ADMIN_TOKEN"), "admin API token (or GATEHOUSE_ADMIN_TOKEN)")
	f.String("ca-file", "", "CA bundle to trust for an https server")
	f.String("fleet", "default", "fleet the devices join")
	f.String("profile", "default", "device profile")
	f.Int("count", 1, "number of tokens (1–100000)")
	f.String("ttl", "24h", "token lifetime, e.g. 72h or 30d")
	f.String("device-ids", "", "file with one device id per line: one token fixed to each")
	f.String("csv", "", "write the tokens to this CSV file (mode 0600) instead of stdout")
	tok.AddCommand(create)
	return tok
}

func createTokens(cmd *cobra.Command, c *client, req apitypes.BatchRequest, csvPath string) error {
	progress := cmd.ErrOrStderr()
	start := time.Now()
	fmt.Fprintf(progress, "creating %d bootstrap tokens for fleet %q, profile %q…\n", req.Count, req.Fleet, req.Profile)
	body, err := c.do("POST", "/api/v1/token-batches", "", req)
	if err != nil {
		return err
	}
	var res apitypes.BatchResponse
	if err := json.Unmarshal(body, &res); err != nil {
		return fault.New(fault.Unavailable, "server sent an unreadable batch response")
	}
	fmt.Fprintf(progress, "batch %s: %d tokens created in %s, expiring %s\n", res.Batch.ID, len(res.Tokens),
		fmtDuration(time.Since(start)), res.Batch.ExpiresAt.Format(time.RFC3339))
	if csvPath == "" {
		writeJSON(cmd.OutOrStdout(), res)
		return nil
	}
	// Tokens are secrets: the file is private to its owner from the start.
	fh, err := os.OpenFile(csvPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", csvPath, err)
	}
	w := bufio.NewWriter(fh)
	if err := writeTokensCSV(w, res, progress); err != nil {
		_ = fh.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		_ = fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	fmt.Fprintf(progress, "wrote %d tokens to %s (mode 0600); they cannot be shown again\n", len(res.Tokens), csvPath)
	return nil
}

func writeTokensCSV(w io.Writer, res apitypes.BatchResponse, progress io.Writer) error {
	if _, err := fmt.Fprintln(w, "token,device_id,batch_id,fleet,profile,expires_at"); err != nil {
		return err
	}
	exp := res.Batch.ExpiresAt.UTC().Format(time.RFC3339)
	step := max(len(res.Tokens)/10, 1)
	for i, t := range res.Tokens {
		// Tokens, ids, names and UUIDs contain no commas or quotes, so no escaping is needed.
		if _, err := fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s\n", t.Token, t.DeviceID, res.Batch.ID, res.Batch.Fleet, res.Batch.Profile, exp); err != nil {
			return err
		}
		if len(res.Tokens) >= 10000 && (i+1)%step == 0 {
			fmt.Fprintf(progress, "  %d/%d written\n", i+1, len(res.Tokens))
		}
	}
	return nil
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}
