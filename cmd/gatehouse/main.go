// Command gatehouse is the Gatehouse control plane and its factory-line
// tools in one binary: init, serve, enroll, token, version.
//
// This is the composition root: the only place that reads configuration
// (viper) and wires concrete types together.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var ce cliError
		if errors.As(err, &ce) && ce.silent {
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "gatehouse: %s\n", describe(err))
		os.Exit(1)
	}
}

// describe shows a fault's code and message; other errors as they are.
func describe(err error) string {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fmt.Sprintf("%s (%s)", fe.Message, fe.Code)
	}
	return err.Error()
}

// cliError is an error whose report was already printed (e.g. as --json).
type cliError struct {
	error
	silent bool
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "Device PKI and MQTT access control",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInitCmd(), newServeCmd(), newEnrollCmd(), newRenewCmd(), newTokenCmd(), newRevokeCmd(), newAdminCmd(), newCACmd(), newBackupCmd(), newRestoreCmd(), newAuditCmd(), newBenchCmd(), newVendorCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "gatehouse %s\n", version)
		},
	}
}
