package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// printWarnings shows on stderr what the server said lags after a committed
// revoke, suspend or reinstate (the "warnings" of its 200 answer): the
// change stands, the listed follow-ups catch up by themselves.
func printWarnings(cmd *cobra.Command, warnings any) {
	list, _ := warnings.([]any)
	for _, w := range list {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", w)
	}
}
