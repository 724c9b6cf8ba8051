package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// printWarnings shows on stderr what the server said lags after a committed
// revoke, suspend or reinstate (the "warnings" of its 200 answer): the
// change stands, the listed follow-ups catch up by themselves.
func printWarnings(cmd *cobra.Command, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
}
