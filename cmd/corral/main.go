// Command corral is the one corral binary: the agent and the tools that
// talk to it.
package main

import (
	"errors"
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
	root.AddCommand(agentCmd(), keygenCmd(), membersCmd(), routesCmd(), versionCmd(), joinCmd(), leaveCmd(), eventsCmd(), groupCmd(), operatorCmd(), removeCmd("force-leave"), pntadmCmd(), dhtadmCmd(), dsvcCmd(), dhcpCmd(), addrCmd(), meshCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "corral:", err)
		var xe *exitError // the data-service tools' Solaris exit statuses
		if errors.As(err, &xe) {
			os.Exit(xe.code)
		}
		os.Exit(1)
	}
}
