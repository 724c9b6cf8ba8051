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
	cmd.Flags().Bool("if-missing", false, "on an initialised data directory, only add what is missing (the hook secret)")
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
	if err := ca.Init(ca.InitConfig{Dir: caDir(vp), Passphrase: pass}); err != nil {
		return err
	}
	fmt.Fprintf(out, "created root and issuing CA in %s (keys encrypted)\n", caDir(vp))
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

// createAdminToken makes an admin API token (auth stores only its hash and
// audits the creation) and returns its secret.
func createAdminToken(ctx context.Context, st *store.Store, name string, role auth.Role, actor string) (string, error) {
	tokens, err := auth.NewTokens(auth.TokensConfig{Store: st})
	if err != nil {
		return "", err
	}
	return tokens.Issue(ctx, actor, name, role)
}
