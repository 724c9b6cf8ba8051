package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Web UI users, managed directly on the database like admin token-create:
// for the first user on an existing install, and for recovery when every
// admin has lost their password.

func newUserCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user-create",
		Short: "Create a web UI user directly in the database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			username, _ := cmd.Flags().GetString("username")
			role := auth.Role(must(cmd.Flags().GetString("role")))
			return withUsers(cmd, func(ctx context.Context, users *auth.Service) error {
				password, generated, err := passwordInput(cmd)
				if err != nil {
					return err
				}
				if _, err := users.CreateUser(ctx, "local-cli", username, password, role); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created user %s (role %s)\n", username, role)
				if generated {
					fmt.Fprintf(cmd.OutOrStdout(), "password: %s\n", password)
				}
				return nil
			})
		},
	}
	addServerFlags(cmd)
	cmd.Flags().String("username", "", "username: lowercase letters, digits, . _ - @")
	cmd.Flags().String("role", "viewer", "admin, operator or viewer")
	cmd.Flags().Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one")
	_ = cmd.MarkFlagRequired("username")
	return cmd
}

func newUserPasswdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user-passwd",
		Short: "Set a web UI user's password directly in the database (ends the user's sessions)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			username, _ := cmd.Flags().GetString("username")
			return withUsers(cmd, func(ctx context.Context, users *auth.Service) error {
				password, generated, err := passwordInput(cmd)
				if err != nil {
					return err
				}
				upd := auth.UserUpdate{Password: &password}
				if enable, _ := cmd.Flags().GetBool("enable"); enable {
					no := false
					upd.Disabled = &no
				}
				if _, err := users.UpdateUser(ctx, "local-cli", username, upd); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "set the password of %s\n", username)
				if generated {
					fmt.Fprintf(cmd.OutOrStdout(), "password: %s\n", password)
				}
				return nil
			})
		},
	}
	addServerFlags(cmd)
	cmd.Flags().String("username", "", "the user")
	cmd.Flags().Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one")
	cmd.Flags().Bool("enable", false, "also re-enable the user if disabled")
	_ = cmd.MarkFlagRequired("username")
	return cmd
}

// withUsers opens the database and runs fn with a users service on it.
func withUsers(cmd *cobra.Command, fn func(context.Context, *auth.Service) error) error {
	v, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	ctx := context.Background()
	log := newLogger(v)
	st, err := openStore(ctx, v, log)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := newUsers(st, v)
	if err != nil {
		return err
	}
	return fn(ctx, users)
}

func newUsers(st *store.Store, v *viper.Viper) (*auth.Service, error) {
	log := newLogger(v)
	return auth.New(auth.Config{Users: st, Sessions: st, Log: log})
}

// passwordInput reads the password from stdin's first line with
// --password-stdin, else generates one (generated reports which).
func passwordInput(cmd *cobra.Command) (password string, generated bool, err error) {
	if fromStdin, _ := cmd.Flags().GetBool("password-stdin"); !fromStdin {
		return auth.GeneratePassword(), true, nil
	}
	line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", false, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", false, fault.New(fault.InvalidArgument, "no password on stdin")
	}
	return line, false, nil
}
