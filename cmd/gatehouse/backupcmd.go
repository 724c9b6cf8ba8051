package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/backup"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// crlRestoreGap is how far above the backup's CRL number (or --last-crl's)
// a restored CA numbers its next list at the least: lists published after
// the backup (one per revocation and per refresh) carry numbers the backup
// never saw, and a CRL number must not go back. 2^20 covers a million.
const crlRestoreGap = 1 << 20

// restoreFloor is the number a restored CA's first list goes above: the
// larger of base+crlRestoreGap plus a millisecond per millisecond since the
// backup was taken, and the current Unix time in milliseconds. The time
// terms keep a second restore of the same backup (the lists the first
// restored server published are unknown to it) above the first one's
// lists, as long as that server published less than a list per
// millisecond on average: a fixed gap alone would number them again. The
// arithmetic is checked, since base comes from files a restore reads.
func restoreFloor(base int64, backupAt, now time.Time) (int64, error) {
	elapsed := max(now.Sub(backupAt).Milliseconds(), 0)
	floor, ok := addInt64(base, crlRestoreGap)
	if ok {
		floor, ok = addInt64(floor, elapsed)
	}
	// A CRL number has room for 159 bits; the store keeps 63, and the
	// restored CA signs floor+1 and counts on from there.
	if !ok || floor > math.MaxInt64/2 {
		return 0, fault.New(fault.InvalidArgument, "CRL number %d is too large to restore above", base)
	}
	return max(floor, now.UnixMilli()), nil
}

// addInt64 returns a+b and whether it did not overflow (a, b >= 0).
func addInt64(a, b int64) (int64, bool) {
	if a < 0 || b < 0 || a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}

// sqliteSnapshotName is the database's name in a backup and in a restored
// data directory (databaseDSN's default).
const sqliteSnapshotName = backup.DatabaseName

func newBackupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent online backup: SQLite snapshot, CA certificates and encrypted keys, hook secret, config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				return fault.New(fault.InvalidArgument, "--out is required")
			}
			return runBackup(cmd.Context(), cmd, v, out)
		},
	}
	addServerFlags(cmd)
	cmd.Flags().String("out", "", "backup file to write (mode 0600); must not exist")
	return cmd
}

func runBackup(ctx context.Context, cmd *cobra.Command, v *viper.Viper, out string) (err error) {
	if !ca.Initialized(caDir(v)) {
		return fault.New(fault.NotFound, "%s holds no CA to back up", dataDir(v))
	}
	// The manifest's MAC is keyed from the CA passphrase: the secret a
	// restore needs anyway, and one the archive never holds.
	pass, err := readPassphrase(v)
	if err != nil {
		return err
	}
	// A passphrase that does not open the keys would authenticate a backup
	// that the restore, which needs the keys' passphrase, cannot check.
	if key := filepath.Join(caDir(v), ca.IntermediateKeyFile); fileExists(key) {
		if _, err := ca.LoadKey(key, pass); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fault.Wrap(err, fault.AlreadyExists, "backup file: %v", err)
	}
	defer func() {
		if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
			_ = os.Remove(out)
		}
	}()
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".gatehouse-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	set, err := snapshot(ctx, v, tmp)
	if err != nil {
		return err
	}
	m := set.m
	if err := backup.Write(f, m, set.sources, pass); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	for _, s := range set.skipped {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: not backed up: %s\n", s)
	}
	fmt.Fprintf(w, "backup written to %s: %d files, CRL number %d; the CA passphrase is not in it, and a restore needs it to authenticate the archive\n",
		out, len(set.sources), m.CRLNumber)
	if len(set.removed) > 0 {
		fmt.Fprintf(w, "removed from the config file's copy (set them again after a restore): %s\n", strings.Join(set.removed, ", "))
	}
	if m.Database == "postgresql" {
		fmt.Fprintf(w, "the PostgreSQL database is not in the backup: dump it with `pg_dump --format=custom --file gatehouse.pgdump '%s'`\n", redactDSN(databaseDSN(v)))
	}
	return nil
}

// snapshot takes the database snapshot (SQLite) into tmp, then lists what
// the backup holds. The CA files never change while serve runs, so the
// snapshot is what must be consistent.
func snapshot(ctx context.Context, v *viper.Viper, tmp string) (backupSet, error) {
	set := backupSet{m: backup.Manifest{CreatedAt: time.Now().UTC(), Version: version, Database: "sqlite"}}
	st, err := store.New(ctx, store.Config{DSN: databaseDSN(v), Logger: newLogger(v)})
	if err != nil {
		return set, err
	}
	defer st.Close()
	if st.Postgres() {
		set.m.Database = "postgresql"
	} else {
		db := filepath.Join(tmp, sqliteSnapshotName)
		if err := st.Snapshot(ctx, db); err != nil {
			return set, err
		}
		set.sources = append(set.sources, backup.Source{Name: sqliteSnapshotName, Path: db})
	}
	// Read after the snapshot: a list stored in between only raises it,
	// and a restore numbers above it.
	if set.m.CRLNumber, err = st.CRLNumber(ctx); err != nil {
		return set, err
	}
	return set, backupFiles(v, tmp, &set)
}

// backupSet is what a backup holds, and what it left out.
type backupSet struct {
	m       backup.Manifest
	sources []backup.Source
	removed []string // config keys removed from the config file's copy
	skipped []string // files left out, with why
}

// backupFiles lists the CA directory (certificates, keys as encrypted at
// rest), the generated hook secret and the config file with its secrets
// removed (redactedConfig, written into tmp; it returns the keys removed).
// The generated CA passphrase stays out: with it the backup would hold the
// keys in clear.
func backupFiles(v *viper.Viper, tmp string, set *backupSet) error {
	entries, err := os.ReadDir(caDir(v))
	if err != nil {
		return err
	}
	var out []backup.Source
	for _, e := range entries {
		path := filepath.Join(caDir(v), e.Name())
		switch {
		case strings.HasPrefix(e.Name(), ".next."):
			set.skipped = append(set.skipped, path+": left by a ca rotate that did not finish")
		case !e.Type().IsRegular():
			// A link or directory would be restored as something else, or
			// not at all: the operator decides what it stands for.
			return fault.New(fault.InvalidArgument, "cannot back up %s: not a regular file (%s)", path, e.Type())
		default:
			out = append(out, backup.Source{Name: "ca/" + e.Name(), Path: path})
		}
	}
	if p := filepath.Join(dataDir(v), hooksSecretFileName); fileExists(p) {
		out = append(out, backup.Source{Name: hooksSecretFileName, Path: p})
	}
	if p := v.ConfigFileUsed(); p != "" {
		cfgDir := filepath.Join(tmp, "config")
		if err := os.Mkdir(cfgDir, 0o700); err != nil {
			return err
		}
		redacted, removed, err := redactedConfig(p, cfgDir)
		if err != nil {
			return err
		}
		set.removed = removed
		out = append(out, backup.Source{Name: "config/" + filepath.Base(p), Path: redacted})
	}
	for _, s := range out {
		if !backup.ValidName(s.Name) {
			return fault.New(fault.InvalidArgument, "cannot back up %s: its name is not one a backup holds", s.Path)
		}
	}
	set.sources = append(set.sources, out...)
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func newRestoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup into a new data directory and sign a CRL numbered above every list published before",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			in, _ := cmd.Flags().GetString("in")
			lastCRL, _ := cmd.Flags().GetString("last-crl")
			lossOK, _ := cmd.Flags().GetBool("accept-data-loss")
			unauthOK, _ := cmd.Flags().GetBool("accept-unauthenticated")
			if in == "" || !cmd.Flags().Changed("data-dir") {
				return fault.New(fault.InvalidArgument, "--in and --data-dir are required")
			}
			if lastCRL == "" && !lossOK {
				return fault.New(fault.InvalidArgument, "--last-crl is required: without the newest published CRL, devices revoked after the backup "+
					"would be valid again; pass --accept-data-loss only when no published list survives")
			}
			return runRestore(cmd.Context(), cmd.OutOrStdout(), v, restoreArgs{in: in, lastCRL: lastCRL, acceptUnauthenticated: unauthOK})
		},
	}
	addServerFlags(cmd)
	cmd.Flags().String("in", "", "backup file written by gatehouse backup")
	cmd.Flags().String("last-crl", "", "the newest CRL the old installation published (PEM or DER, e.g. its crl.file): its revocations are restored and the next number goes above it")
	cmd.Flags().Bool("accept-data-loss", false, "restore without --last-crl: revocations made after the backup are lost")
	cmd.Flags().Bool("accept-unauthenticated", false, "restore an archive written before backups carried a MAC (format 1): nothing shows it was not altered")
	return cmd
}

// restoreArgs are restore's flags.
type restoreArgs struct {
	in, lastCRL           string
	acceptUnauthenticated bool
}

func runRestore(ctx context.Context, w io.Writer, v *viper.Viper, args restoreArgs) (err error) {
	in, lastCRL := args.in, args.lastCRL
	dir := dataDir(v)
	if err := newEmptyDir(dir); err != nil {
		return err
	}
	// Before anything is extracted: the archive is authenticated with it.
	pass, err := readPassphrase(v)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Only what this restore wrote: dir was empty.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}()
	f, err := os.Open(in)
	if err != nil {
		return fault.Wrap(err, fault.InvalidArgument, "backup file: %v", err)
	}
	defer f.Close()
	m, err := backup.Extract(f, dir, backup.Verify{Passphrase: pass, AcceptUnauthenticated: args.acceptUnauthenticated})
	if err != nil {
		return err
	}
	if m.Format == backup.FormatUnauthenticated {
		fmt.Fprintf(w, "WARNING: %s has no MAC (format %d): restored with --accept-unauthenticated, nothing shows it was not altered\n", in, m.Format)
	}
	if m.Database == "postgresql" && v.GetString(keyDatabase) == "" {
		return fault.New(fault.InvalidArgument, "the backup's database is PostgreSQL: restore the pg_dump first and pass --database")
	}
	res, err := restoreCRL(ctx, v, pass, m, lastCRL)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "restored %d files from %s (taken %s) into %s; the new CRL is number %d\n", len(m.Files), in,
		m.CreatedAt.Format(time.RFC3339), dir, res.number)
	if lastCRL == "" {
		fmt.Fprintln(w, "WARNING: restored without --last-crl: certificates revoked after the backup are valid again until revoked anew")
	} else {
		fmt.Fprintf(w, "revocations from %s: %d certificates of the backup marked revoked, %d issued after it recorded as revoked\n",
			lastCRL, res.revoked.Known, res.revoked.Unknown)
	}
	fmt.Fprintf(w, "%d unused bootstrap tokens marked used: they may have been spent after the backup; issue new ones\n", res.tokens)
	for _, f := range m.Files {
		if filepath.Dir(f.Name) == "config" {
			fmt.Fprintf(w, "the config file is in %s: check its paths and pass it with --config\n", filepath.Join(dir, f.Name))
		}
	}
	return nil
}

// newEmptyDir creates dir (0700) or accepts it empty.
func newEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fault.New(fault.AlreadyExists, "%s is not empty: restore only into a new data directory", dir)
	}
	return os.Chmod(dir, 0o700)
}

// restored is what restoreCRL did.
type restored struct {
	number  int64
	revoked store.RestoredRevocations
	tokens  int
}

// restoreCRL opens the restored CA (which checks the passphrase opens the
// intermediate key), records the revocations of lastCRL (when given),
// spends every unused bootstrap token, and signs a CRL numbered above
// restoreFloor of the larger of the backup's number and lastCRL's.
func restoreCRL(ctx context.Context, v *viper.Viper, pass []byte, m backup.Manifest, lastCRL string) (restored, error) {
	var out restored
	st, err := openStore(ctx, v, newLogger(v))
	if err != nil {
		return out, err
	}
	defer st.Close()
	cfg, err := caConfig(v, pass, st)
	if err != nil {
		return out, err
	}
	cfg.CRLStore = st
	authority, err := ca.New(cfg)
	if err != nil {
		return out, err
	}
	floor := m.CRLNumber
	if lastCRL != "" {
		last, err := readLastCRL(lastCRL, authority.Issuers())
		if err != nil {
			return out, err
		}
		floor = max(floor, last.number)
		if out.revoked, err = st.RecordRestoredRevocations(ctx, last.entries); err != nil {
			return out, err
		}
	}
	// Whether or not a list survived: no list tells which tokens were
	// spent after the backup.
	if out.tokens, err = st.SpendUnusedTokens(ctx, time.Now()); err != nil {
		return out, err
	}
	if floor, err = restoreFloor(floor, m.CreatedAt, time.Now()); err != nil {
		return out, err
	}
	l, err := authority.GenerateCRLAbove(ctx, floor)
	out.number = l.Number
	return out, err
}

// lastCRL is what a restore takes from the newest published list.
type lastCRL struct {
	number  int64
	entries []store.RevokedCert
}

// readLastCRL reads the lists the old installation published (PEM, one or
// more as in crl.file, or one DER); each must be signed by one of the
// restored intermediates. Revoked serials unknown to the restored database
// are kept until the latest issuer's expiry, since a list does not carry
// the leaves' own.
func readLastCRL(path string, issuers []*x509.Certificate) (lastCRL, error) {
	var out lastCRL
	b, err := os.ReadFile(path)
	if err != nil {
		return out, fault.Wrap(err, fault.InvalidArgument, "last CRL: %v", err)
	}
	ders := [][]byte{b}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		ders = nil
		for p, rest := pem.Decode(b); p != nil; p, rest = pem.Decode(rest) {
			ders = append(ders, p.Bytes)
		}
	}
	var until time.Time
	for _, is := range issuers {
		if is.NotAfter.After(until) {
			until = is.NotAfter
		}
	}
	seen := map[string]bool{}
	for _, der := range ders {
		l, err := parseLastCRL(der, issuers)
		if err != nil {
			return out, err
		}
		out.number = max(out.number, l.Number.Int64())
		for _, e := range l.RevokedCertificateEntries {
			s := ca.SerialHex(e.SerialNumber)
			if !seen[s] {
				seen[s] = true
				out.entries = append(out.entries, store.RevokedCert{Serial: s, RevokedAt: e.RevocationTime, Reason: e.ReasonCode, NotAfter: until})
			}
		}
	}
	if len(ders) == 0 {
		return out, fault.New(fault.InvalidArgument, "last CRL: %s holds no list", path)
	}
	return out, nil
}

// parseLastCRL parses one published list and checks it was signed by one
// of the restored intermediates and carries a usable number.
func parseLastCRL(der []byte, issuers []*x509.Certificate) (*x509.RevocationList, error) {
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "last CRL: %v", err)
	}
	if l.Number == nil || !l.Number.IsInt64() || l.Number.Sign() < 0 {
		return nil, fault.New(fault.InvalidArgument, "last CRL has no usable CRL number")
	}
	for _, is := range issuers {
		if l.CheckSignatureFrom(is) == nil {
			return l, nil
		}
	}
	return nil, fault.New(fault.InvalidArgument, "last CRL is not signed by the restored CA")
}
