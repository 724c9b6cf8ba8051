package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/store"
)

func newInitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA, the database, a default fleet and profile, the first admin token and the first web UI user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ifMissing, _ := cmd.Flags().GetBool("if-missing")
			if ca.Initialized(caDir(v)) {
				if ifMissing {
					fmt.Fprintf(cmd.OutOrStdout(), "%s is already initialised\n", dataDir(v))
					// A data directory from before init generated hook
					// secrets gets one now: serve refuses to start without.
					return ensureHookSecret(v, cmd.OutOrStdout())
				}
				return fault.New(fault.AlreadyExists, "%s is already initialised; refusing to create a second CA over it", dataDir(v))
			}
			return runInit(cmd, v)
		},
	}
	addServerFlags(cmd)
	f := cmd.Flags()
	f.Bool("if-missing", false, "on an initialised data directory, only add what is missing (the hook secret)")
	f.Bool("root-offline", false, "write the root key outside the data directory (--root-key-out); serve then refuses to run beside it")
	f.String("root-key-out", "", "where --root-offline writes the root key (default gatehouse-root-ca.key next to the data directory)")
	f.String("root-passphrase-file", "", "file holding the offline root key's own passphrase (required with --root-offline; must differ from the CA passphrase)")
	f.String("kms", "", "generate the issuing key inside a PKCS#11 token under this pkcs11: URI (PIN from ca.kms_pin or ca.kms_pin_file; build tag pkcs11); set ca.kms to it for serve")
	f.Bool("intermediate-from-csr", false, "make no root: write the intermediate key and a CSR for an external root; finish with `gatehouse ca install-intermediate`")
	return cmd
}

func runInit(cmd *cobra.Command, vp *viper.Viper) error {
	ctx := context.Background()
	out := cmd.OutOrStdout()
	if err := os.MkdirAll(dataDir(vp), 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	pass, err := readPassphrase(vp)
	if fault.Is(err, fault.InvalidArgument) && vp.GetString(keyPassphrase) == "" && vp.GetString(keyPassphraseFile) == "" {
		path := filepath.Join(dataDir(vp), passphraseFileName)
		if pass, err = generatePassphrase(path); err != nil {
			return err
		}
		fmt.Fprintf(out, "generated a CA key passphrase into %s (mode 0600); for production, keep it elsewhere and pass GATEHOUSE_CA_PASSPHRASE or --ca-passphrase-file\n", path)
	} else if err != nil {
		return err
	}
	if err := initCA(cmd, vp, pass); err != nil {
		return err
	}
	if err := ensureHookSecret(vp, out); err != nil {
		return err
	}
	log := newLogger(vp)
	st, err := openStore(ctx, vp, log)
	if err != nil {
		return err
	}
	defer st.Close()
	inv, err := inventory.New(inventory.Config{Fleets: st, Profiles: st, Devices: st, Certificates: st,
		Roles: nil})
	if err != nil {
		return err
	}
	if _, err := inv.CreateFleet(ctx, "init", store.Fleet{Name: "default", Description: "Created by gatehouse init"}); err != nil && !fault.Is(err, fault.AlreadyExists) {
		return err
	}
	if _, err := inv.CreateProfile(ctx, "init", inventory.DefaultProfile()); err != nil && !fault.Is(err, fault.AlreadyExists) {
		return err
	}
	fmt.Fprintf(out, "database ready at %s with fleet \"default\" and profile \"default\" (P-256, 30 days)\n", redactDSN(databaseDSN(vp)))
	secret, err := createAdminToken(ctx, st, "initial-admin", auth.RoleAdmin, "init")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "the first admin token follows; it is shown once and stored only as a hash:")
	fmt.Fprintf(out, "admin-token: %s\n", secret)
	users, err := newUsers(st, vp)
	if err != nil {
		return err
	}
	password := auth.GeneratePassword()
	if _, err := users.CreateUser(ctx, "init", "admin", password, auth.RoleAdmin); fault.Is(err, fault.AlreadyExists) {
		// A new data directory on a shared PostgreSQL database that already
		// has its users: keep them.
		fmt.Fprintln(out, "web UI user admin already exists; its password is unchanged (reset it with `gatehouse admin user-passwd`)")
		return nil
	} else if err != nil {
		return err
	}
	fmt.Fprintln(out, "the first web UI user follows; the password is shown once and stored only as an argon2id hash:")
	fmt.Fprintln(out, "admin-user: admin")
	fmt.Fprintf(out, "admin-password: %s\n", password)
	return nil
}

// initCA creates the CA as the flags ask: root and intermediate in the data
// directory, the root key outside it (--root-offline), or only the
// intermediate key and its CSR (--intermediate-from-csr).
func initCA(cmd *cobra.Command, vp *viper.Viper, pass []byte) error {
	out, f := cmd.OutOrStdout(), cmd.Flags()
	offline, _ := f.GetBool("root-offline")
	fromCSR, _ := f.GetBool("intermediate-from-csr")
	keyOut, _ := f.GetString("root-key-out")
	if keyOut != "" && !offline {
		return fault.New(fault.InvalidArgument, "--root-key-out needs --root-offline")
	}
	cfg := ca.InitConfig{Dir: caDir(vp), Passphrase: pass, IntermediateFromCSR: fromCSR}
	if uri, _ := f.GetString("kms"); uri != "" {
		vp.Set(keyKMS, uri)
		var err error
		if cfg.KMS, cfg.KMSPin, err = kmsConfig(vp); err != nil {
			return err
		}
	}
	if offline {
		var err error
		if cfg.RootKeyOut, err = offlineRootKeyPath(vp, keyOut); err != nil {
			return err
		}
		if cfg.RootPassphrase, err = rootPassphrase(f); err != nil {
			return err
		}
		if cfg.RootPassphrase == nil {
			return fault.New(fault.InvalidArgument, "--root-offline needs --root-passphrase-file: the offline root key must not open with the online CA passphrase")
		}
	}
	if err := ca.Init(cfg); err != nil {
		return err
	}
	switch {
	case fromCSR:
		fmt.Fprintf(out, "created the issuing CA key in %s (encrypted); have your root sign %s, then run `gatehouse ca install-intermediate --cert FILE --root-cert FILE`\n",
			caDir(vp), filepath.Join(caDir(vp), ca.IntermediateCSRFile))
	case offline:
		fmt.Fprintf(out, "created root and issuing CA in %s (keys encrypted)\n", caDir(vp))
		fmt.Fprintf(out, "root-key: %s\nmove the root key to offline storage now; serve never reads it and refuses to run while it is in the data directory\n", cfg.RootKeyOut)
	default:
		fmt.Fprintf(out, "created root and issuing CA in %s (keys encrypted)\n", caDir(vp))
	}
	return nil
}

// offlineRootKeyPath is --root-key-out, or gatehouse-root-ca.key beside
// (never inside) the data directory.
func offlineRootKeyPath(vp *viper.Viper, keyOut string) (string, error) {
	if keyOut == "" {
		abs, err := filepath.Abs(dataDir(vp))
		if err != nil {
			return "", err
		}
		keyOut = filepath.Join(filepath.Dir(abs), "gatehouse-root-ca.key")
	}
	return keyOut, ca.CheckOutside(keyOut, dataDir(vp))
}

// createAdminToken makes an admin API token (auth stores only its hash and
// audits the creation) and returns its secret.
func createAdminToken(ctx context.Context, st *store.Store, name string, role auth.Role, actor string) (string, error) {
	tokens, err := auth.NewTokens(auth.TokensConfig{Store: st})
	if err != nil {
		return "", err
	}
	return tokens.Issue(ctx, actor, name, role)
}
