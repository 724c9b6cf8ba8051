package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
)

func newAdminCmd() *cobra.Command {
	admin := &cobra.Command{Use: "admin", Short: "Local administration on the database"}
	create := &cobra.Command{
		Use:   "token-create",
		Short: "Create an admin API token directly in the database (recovery, automation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			role := auth.Role(must(cmd.Flags().GetString("role")))
			if !role.Valid() {
				return fault.New(fault.InvalidArgument, "role must be admin, operator or viewer")
			}
			ctx := context.Background()
			st, err := openStore(ctx, v, newLogger(v))
			if err != nil {
				return err
			}
			defer st.Close()
			secret, err := createAdminToken(ctx, st, name, role, "local-cli")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin-token: %s\n", secret)
			return nil
		},
	}
	addServerFlags(create)
	create.Flags().String("name", "cli", "token name, shown in audit events")
	create.Flags().String("role", "admin", "admin, operator or viewer")
	admin.AddCommand(create, newUserCreateCmd(), newUserPasswdCmd())
	return admin
}

func must[T any](v T, _ error) T { return v }
