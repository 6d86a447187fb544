// Package cli is the runbook-lab command line: the user commands (up,
// status, down, restart-control-plane, kubectl) and the multi-call
// dispatch to the real components (apiserver, controller-manager,
// scheduler, etcd) and to the lab's own long-running processes
// (supervise, kubelets), which the supervisor starts as children.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/runbookhq/runbook/lab/internal/components"
	"github.com/runbookhq/runbook/lab/internal/nodeshell"
	"github.com/runbookhq/runbook/lab/internal/nodetools"
)

// nodeShell is sshd's ForceCommand: node-shell --lab DIR --node NAME.
func nodeShell(args []string, stderr io.Writer) int {
	var dir, node string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--lab":
			dir = args[i+1]
		case "--node":
			node = args[i+1]
		}
	}
	if dir == "" || node == "" {
		fmt.Fprintln(stderr, "runbook-lab node-shell: usage: node-shell --lab DIR --node NAME")
		return ExitUsage
	}
	err := nodeshell.Exec(dir, node)
	fmt.Fprintln(stderr, "runbook-lab node-shell:", err)
	return ExitError
}

// Exit codes.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitUsage   = 2
	ExitStopped = 3 // status: the lab is not running
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// Main runs the binary with os.Args-style args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	// On a node, the tools are symlinks to this binary.
	if len(args) > 0 {
		base := filepath.Base(args[0])
		if nodetools.IsTool(base) {
			return nodetools.Main(base, args[1:])
		}
		if base == "kubectl" {
			code, _ := runComponent("kubectl", args[1:])
			return code
		}
	}
	if len(args) > 1 && args[1] == "node-shell" {
		return nodeShell(args[2:], stderr)
	}
	if len(args) > 1 {
		if code, ok := runComponent(args[1], args[2:]); ok {
			return code
		}
	}
	root := newRoot(stdout, stderr)
	root.SetArgs(args[1:])
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "runbook-lab:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "runbook-lab:", err)
	return ExitError
}

// runComponent runs a real component in this process, with os.Args set
// as if it were its own binary (their flag parsing and kubectl's plugin
// lookup read os.Args).
func runComponent(name string, args []string) (int, bool) {
	switch name {
	case "apiserver", "controller-manager", "scheduler", "kubectl":
		components.SetBuildVersion()
	}
	run := func(argv0 string, c *cobra.Command) int {
		os.Args = append([]string{argv0}, args...)
		c.SetArgs(args)
		return cli.Run(c)
	}
	switch name {
	case "apiserver":
		c, err := components.APIServer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "runbook-lab apiserver:", err)
			return ExitError, true
		}
		return run("kube-apiserver", c), true
	case "controller-manager":
		return run("kube-controller-manager", components.ControllerManager()), true
	case "scheduler":
		return run("kube-scheduler", components.Scheduler()), true
	case "etcd":
		os.Args = append([]string{"etcd"}, args...)
		components.Etcd(args)
		return ExitOK, true
	case "kubectl":
		os.Args = append([]string{"kubectl"}, args...)
		_, _ = logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args))
		c := components.Kubectl()
		c.SetArgs(args)
		if err := cli.RunNoErrOutput(c); err != nil {
			kubectlutil.CheckErr(err)
		}
		return ExitOK, true
	}
	return 0, false
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "runbook-lab",
		Short: "A local kubeadm-like cluster built from real control-plane parts",
		Long: `runbook-lab runs a local rehearsal cluster: real etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, and simulated kubelets, with
the cluster reporting a simulated Kubernetes version.

Components (each run by the supervisor as its own process):
  runbook-lab apiserver|controller-manager|scheduler|etcd [flags]
  runbook-lab kubectl [args]   kubectl at the lab's client release`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// component-base registers --version on the global flag set, which
	// cobra shows on every command; it means nothing for the lab's own.
	_ = pflag.CommandLine.MarkHidden("version")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newUp(), newStatus(), newDown(), newRestartControlPlane(), newSupervise(), newKubelets(), newFault())
	// Listed for help only; Main dispatches them before cobra runs.
	for _, c := range []struct{ name, short string }{
		{"apiserver", "Run kube-apiserver (k8s.io/kubernetes)"},
		{"controller-manager", "Run kube-controller-manager (k8s.io/kubernetes)"},
		{"scheduler", "Run kube-scheduler (k8s.io/kubernetes)"},
		{"etcd", "Run etcd (go.etcd.io/etcd/server/v3)"},
		{"kubectl", "Run kubectl (k8s.io/kubectl)"},
	} {
		root.AddCommand(&cobra.Command{Use: c.name, Short: c.short, DisableFlagParsing: true, RunE: func(*cobra.Command, []string) error {
			return errors.New("unreachable: components are dispatched before the command tree")
		}})
	}
	return root
}
