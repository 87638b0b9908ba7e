// Command corral is the one corral binary: the agent and the tools that
// talk to it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "corral",
		Short:         "corral: a cluster framework",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(agentCmd(), keygenCmd(), membersCmd(), versionCmd(), joinCmd(), leaveCmd(), eventsCmd(), groupCmd(), operatorCmd(), removeCmd("force-leave"))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "corral:", err)
		os.Exit(1)
	}
}
