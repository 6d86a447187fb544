// Package cli is runbook's command line: subcommands, flags, exit codes and
// the choice of view. It wires the plan language, the engine, the step
// kinds and the transports together and holds no maintenance logic itself.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, in one place. `plan --detailed-exitcode` uses ExitChanges.
const (
	ExitOK      = 0 // success; with --detailed-exitcode: nothing to do
	ExitError   = 1 // the plan is invalid, or planning or applying failed
	ExitChanges = 2 // plan --detailed-exitcode: there are changes
	ExitUsage   = 3 // wrong flags or arguments
)

// exitError carries an exit code; quiet means the details were printed
// already (diagnostics).
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errQuiet is a failure whose explanation is already on the screen.
func errQuiet(code int, msg string) error {
	return &exitError{code: code, err: errors.New(msg), quiet: true}
}

func usageError(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// IO is where a command reads and writes; tests give buffers.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	Environ  []string
}

// Version is set at build time (-ldflags "-X .../internal/cli.Version=...").
var Version = "dev"

// Main runs runbook with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdio IO) int {
	if stdio.In == nil {
		stdio.In = os.Stdin
	}
	if stdio.Environ == nil {
		stdio.Environ = os.Environ()
	}
	root := newRoot(&stdio)
	root.SetArgs(terraformStyle(root, args))
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.quiet {
			fmt.Fprintf(stdio.Err, "Error: %v\n", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors (unknown flag, wrong number of arguments) are usage
	// errors.
	fmt.Fprintf(stdio.Err, "Error: %v\nRun 'runbook --help' for usage.\n", err)
	return ExitUsage
}

func newRoot(stdio *IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "runbook",
		Short: "Declarative maintenance plans for self-managed Kubernetes clusters",
		Long: `runbook turns cluster maintenance checklists (drain, packages, kubeadm upgrade,
kubelet restart, uncordon; etcd snapshot and restore; resource backup) into
declarative HCL plans: 'runbook plan' shows, read-only, what would happen on
every node; 'runbook apply' carries it out.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetVersionTemplate("runbook {{.Version}}\n")
	root.AddCommand(
		newValidate(stdio),
		newPlan(stdio),
		newApply(stdio),
		newResume(stdio),
		newDrill(stdio),
		newUnlock(stdio),
		newReport(stdio),
		newTrustHost(stdio),
		newKinds(stdio),
		newFmt(stdio),
		newVersion(stdio),
	)
	return root
}

func newVersion(stdio *IO) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print runbook's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(stdio.Out, "runbook %s\n", Version)
			return nil
		},
	}
}

// terraformStyle accepts terraform's single-dash long flags (-var, -var-file,
// -out, -detailed-exitcode) by rewriting them to the double-dash form pflag
// expects; single letters stay shorthands (-o json).
func terraformStyle(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(root)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && long[name] {
				out[i] = "-" + a
			}
		}
	}
	return out
}
