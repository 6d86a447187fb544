// Command runbook runs declarative maintenance plans for self-managed
// Kubernetes clusters. Everything but the exit lives in internal/cli.
package main

import (
	"os"

	"github.com/runbookhq/runbook/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
