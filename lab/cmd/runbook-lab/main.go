// Command runbook-lab runs a local rehearsal cluster for runbook; it is
// also the multi-call binary of the cluster's components.
package main

import (
	"os"

	"github.com/runbookhq/runbook/lab/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdout, os.Stderr))
}
