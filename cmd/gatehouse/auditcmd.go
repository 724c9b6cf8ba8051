package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// newAuditCmd checks and exports the audit trail's hash chain, opening the
// database directly (like admin): the chain is evidence about the server,
// so it is checked without it.
func newAuditCmd() *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Verify and export the audit trail"}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the audit hash chain; exit non-zero naming the first broken row",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			since, err := sinceFlag(cmd)
			if err != nil {
				return err
			}
			head, err := expectHeadFlag(cmd)
			if err != nil {
				return err
			}
			return withStore(cmd, func(ctx context.Context, st *store.Store) error {
				res, err := verifyAudit(ctx, st, since, head)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "audit chain ok: %d rows checked; head seq %d hash %s\n",
					res.Checked, res.HeadSeq, res.HeadHash)
				return nil
			})
		},
	}
	export := &cobra.Command{
		Use:   "export",
		Short: "Stream the audit trail with its hashes to stdout (for a SIEM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f := must(cmd.Flags().GetString("format")); f != "jsonl" {
				return fault.New(fault.InvalidArgument, "--format must be jsonl")
			}
			since, err := sinceFlag(cmd)
			if err != nil {
				return err
			}
			return withStore(cmd, func(ctx context.Context, st *store.Store) error {
				w := bufio.NewWriter(cmd.OutOrStdout())
				enc := json.NewEncoder(w)
				err := st.ExportAudit(ctx, since, func(e store.ChainedAuditEvent) error {
					return enc.Encode(auditLine{Seq: e.Seq, ID: e.ID, At: e.At.UTC().Format(time.RFC3339Nano),
						AtMS: e.At.UnixMilli(), Actor: e.Actor, Action: e.Action, ObjectType: e.ObjectType,
						ObjectID: e.ObjectID, Detail: e.Detail, PrevHash: e.PrevHash, Hash: e.Hash})
				})
				if err != nil {
					return err
				}
				return w.Flush()
			})
		},
	}
	for _, c := range []*cobra.Command{verify, export} {
		addServerFlags(c)
		c.Flags().String("since", "", "only rows at or after this time (RFC 3339, or a duration ago such as 24h)")
	}
	verify.Flags().String("expect-head", "", "SEQ:HASH printed by an earlier verify: fail unless that row is still in the chain, unchanged (catches a cut-off tail)")
	export.Flags().String("format", "jsonl", "output format (jsonl: one JSON object a line)")
	audit.AddCommand(verify, export)
	return audit
}

// auditLine is one exported audit row. at_ms is what the hash covers; seq
// is 0 and the hashes empty for rows from before the chain.
type auditLine struct {
	Seq        int64  `json:"seq"`
	ID         string `json:"id"`
	At         string `json:"at"`
	AtMS       int64  `json:"at_ms"`
	Actor      string `json:"actor"`
	Action     string `json:"action"`
	ObjectType string `json:"object_type"`
	ObjectID   string `json:"object_id"`
	Detail     string `json:"detail"`
	PrevHash   string `json:"prev_hash"`
	Hash       string `json:"hash"`
}

// verifyAudit walks the chain (from since) and, with head set, checks that
// the head an earlier run printed is still in it: a chain that verifies
// but ends before that head lost its tail.
func verifyAudit(ctx context.Context, st *store.Store, since time.Time, head *store.AuditAnchor) (store.AuditVerification, error) {
	res, err := st.VerifyAuditChain(ctx, since)
	if err != nil {
		return res, err
	}
	if !res.OK {
		return res, fault.New(fault.Conflict, "audit chain broken at row %s (%s) after %d rows checked",
			res.FirstBroken, res.Reason, res.Checked)
	}
	if head == nil {
		return res, nil
	}
	if res.HeadSeq < head.Seq {
		return res, fault.New(fault.Conflict, "audit chain ends at seq %d, before the expected head %d: its tail was removed",
			res.HeadSeq, head.Seq)
	}
	from, err := st.VerifyAuditChainFrom(ctx, *head)
	if err != nil {
		return res, err
	}
	if !from.OK {
		return res, fault.New(fault.Conflict, "audit chain does not hold the expected head seq %d: %s (%s)",
			head.Seq, from.FirstBroken, from.Reason)
	}
	return res, nil
}

// expectHeadFlag parses --expect-head SEQ:HASH.
func expectHeadFlag(cmd *cobra.Command) (*store.AuditAnchor, error) {
	s := must(cmd.Flags().GetString("expect-head"))
	if s == "" {
		return nil, nil
	}
	seqText, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return nil, fault.New(fault.InvalidArgument, "--expect-head must be SEQ:HASH as printed by audit verify (a positive seq, 64 lowercase hex digits)")
	}
	return &store.AuditAnchor{Seq: seq, Hash: hash}, nil
}

func sinceFlag(cmd *cobra.Command) (time.Time, error) {
	s := must(cmd.Flags().GetString("since"))
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fault.New(fault.InvalidArgument, "--since must be an RFC 3339 time or a positive duration")
}

func withStore(cmd *cobra.Command, fn func(context.Context, *store.Store) error) error {
	v, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	st, err := openStore(ctx, v, newLogger(v))
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, st)
}
