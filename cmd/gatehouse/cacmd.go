package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// The ca commands are the root's operations and the CA's own life cycle.
// sign-intermediate is made to run on an offline machine: it reads only
// the files it is given and touches no data directory.

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "CA key custody: sign and install intermediates"}
	cmd.AddCommand(newSignIntermediateCmd(), newInstallIntermediateCmd(), newRotateCmd())
	return cmd
}

func newSignIntermediateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign-intermediate",
		Short: "Certify an intermediate CSR with the (offline) root key; needs no data directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			paths := map[string]string{}
			for _, name := range []string{"root-cert", "root-key", "csr", "out"} {
				if paths[name], _ = f.GetString(name); paths[name] == "" {
					return fault.New(fault.InvalidArgument, "--%s is required", name)
				}
			}
			pass, err := rootPassphrase(f)
			if err != nil {
				return err
			}
			if pass == nil {
				v, err := loadConfig(cmd)
				if err != nil {
					return err
				}
				if pass, err = readPassphrase(v); err != nil {
					return err
				}
			}
			validity, _ := f.GetDuration("validity")
			return signIntermediateFiles(cmd, paths, pass, validity)
		},
	}
	f := cmd.Flags()
	f.String("root-cert", "", "root certificate (PEM)")
	f.String("root-key", "", "root key written by init --root-offline (encrypted PEM)")
	f.String("csr", "", "intermediate certificate request (PEM), e.g. <data-dir>/ca/intermediate_ca.csr")
	f.String("out", "", "where to write the intermediate certificate (PEM); must not exist")
	f.Duration("validity", 5*365*24*time.Hour, "intermediate validity (never past the root's expiry)")
	f.String("root-passphrase-file", "", "file holding the root key passphrase (default GATEHOUSE_CA_PASSPHRASE or --ca-passphrase-file)")
	f.String("ca-passphrase-file", "", "file holding the CA key passphrase (or set GATEHOUSE_CA_PASSPHRASE)")
	return cmd
}

func signIntermediateFiles(cmd *cobra.Command, paths map[string]string, pass []byte, validity time.Duration) error {
	rootPEM, err := os.ReadFile(paths["root-cert"])
	if err != nil {
		return fault.Wrap(err, fault.InvalidArgument, "root certificate: %v", err)
	}
	roots, err := ca.ParseCertsPEM(rootPEM)
	if err != nil {
		return err
	}
	csrPEM, err := os.ReadFile(paths["csr"])
	if err != nil {
		return fault.Wrap(err, fault.InvalidArgument, "CSR: %v", err)
	}
	csr, err := ca.ParseCSRPEM(csrPEM)
	if err != nil {
		return err
	}
	key, err := ca.LoadKey(paths["root-key"], pass)
	if err != nil {
		return err
	}
	inter, err := ca.SignIntermediate(ca.SignRequest{Root: roots[0], RootKey: key, CSR: csr, Validity: validity})
	if err != nil {
		return err
	}
	if err := writeNewFile(paths["out"], ca.EncodePEM(inter), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "signed %q (serial %s, valid until %s) into %s\n", inter.Subject.CommonName,
		ca.SerialHex(inter.SerialNumber), inter.NotAfter.UTC().Format(time.RFC3339), paths["out"])
	return nil
}

func newInstallIntermediateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install-intermediate",
		Short: "Install the intermediate certificate an external or offline root signed for init --intermediate-from-csr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, pass, err := configAndPassphrase(cmd)
			if err != nil {
				return err
			}
			certFile, _ := cmd.Flags().GetString("cert")
			rootFile, _ := cmd.Flags().GetString("root-cert")
			if certFile == "" {
				return fault.New(fault.InvalidArgument, "--cert is required")
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fault.Wrap(err, fault.InvalidArgument, "certificate: %v", err)
			}
			var rootPEM []byte
			if rootFile != "" {
				if rootPEM, err = os.ReadFile(rootFile); err != nil {
					return fault.Wrap(err, fault.InvalidArgument, "root certificate: %v", err)
				}
			}
			if err := ca.InstallIntermediate(caDir(v), pass, certPEM, rootPEM, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed the intermediate and root certificates in %s; serve can start\n", caDir(v))
			return nil
		},
	}
	addServerFlags(cmd)
	cmd.Flags().String("cert", "", "the signed intermediate certificate (PEM; may be followed by the root)")
	cmd.Flags().String("root-cert", "", "the root certificate that signed it (PEM), unless --cert carries it")
	return cmd
}

func newRotateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new issuing intermediate (new key, same root); the old one keeps its CRL and OCSP until it expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, pass, err := configAndPassphrase(cmd)
			if err != nil {
				return err
			}
			req := ca.RotateRequest{Dir: caDir(v), Passphrase: pass, KMS: v.GetString(keyKMS)}
			req.Validity, _ = cmd.Flags().GetDuration("validity")
			if keyFile, _ := cmd.Flags().GetString("root-key"); keyFile != "" {
				rootPass, err := rootPassphrase(cmd.Flags())
				if err != nil {
					return err
				}
				if rootPass == nil {
					rootPass = pass
				}
				if req.RootKey, err = ca.LoadKey(keyFile, rootPass); err != nil {
					return err
				}
			}
			inter, err := ca.Rotate(req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new issuing intermediate %q (serial %s, valid until %s); restart serve (every replica) to issue with it\n",
				inter.Subject.CommonName, ca.SerialHex(inter.SerialNumber), inter.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	addServerFlags(cmd)
	f := cmd.Flags()
	f.String("root-key", "", "the root key, when it is kept offline (default <data-dir>/ca/root_ca.key)")
	f.String("root-passphrase-file", "", "file holding the root key passphrase (default: the CA passphrase)")
	f.Duration("validity", 5*365*24*time.Hour, "new intermediate validity (never past the root's expiry)")
	return cmd
}

// configAndPassphrase loads the configuration and the CA passphrase.
func configAndPassphrase(cmd *cobra.Command) (*viper.Viper, []byte, error) {
	v, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	pass, err := readPassphrase(v)
	return v, pass, err
}

// rootPassphrase reads --root-passphrase-file; nil when the flag is unset
// (the CA passphrase then applies).
func rootPassphrase(f *pflag.FlagSet) ([]byte, error) {
	path, _ := f.GetString("root-passphrase-file")
	if path == "" {
		return nil, nil
	}
	return readPassphraseFile("root", path)
}

// writeNewFile writes data to a path that must not exist yet.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fault.Wrap(err, fault.AlreadyExists, "write %s: %v", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// checkCustody stops serve before the CA loads when its keys are not kept
// as configured: an intermediate still waiting for its certificate, or a
// root key within reach of the server although the root is offline
// (ca.root_offline, or init --root-offline's marker).
func checkCustody(v *viper.Viper) ([]byte, error) {
	pass, err := readPassphrase(v)
	if err != nil {
		return nil, err
	}
	return pass, checkKeys(v, pass)
}

func checkKeys(v *viper.Viper, pass []byte) error {
	dir := caDir(v)
	if ca.Pending(dir) {
		return fault.New(fault.Conflict, "the intermediate in %s waits for its certificate: run `gatehouse ca install-intermediate --data-dir %s --cert FILE --root-cert FILE`", dir, dataDir(v))
	}
	if !v.GetBool(keyRootOffline) && !ca.RootOffline(dir) {
		return nil
	}
	roots, err := readCertFile(filepath.Join(dir, ca.RootCertFile))
	if err != nil {
		return err
	}
	// Before the scan, which looks for the key of this certificate.
	pinned, err := ca.CheckRootPin(dir, roots[0])
	if err != nil {
		return err
	}
	if !pinned && ca.RootOffline(dir) {
		newLogger(v).Warn("the offline-root marker does not pin the root's key (written by an older gatehouse): a replaced root certificate goes unnoticed",
			"marker", filepath.Join(dir, ca.RootOfflineFile))
	}
	found, err := ca.FindRootKey(dataDir(v), roots[0], pass)
	if err != nil {
		return err
	}
	if found != "" {
		return fault.New(fault.PermissionDenied, "the root is offline (%s) but its key lies in the data directory at %s: move it to offline storage", keyRootOffline, found)
	}
	return nil
}

func readCertFile(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ca.ParseCertsPEM(b)
}
