package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/kube"
	"github.com/runbookhq/runbook/internal/nodes"
	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/plans"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/kubernetes"
)

func newTrustHost(stdio *IO) *cobra.Command {
	var vf varFlags
	var yes, offline bool
	var nodesFile string
	cmd := &cobra.Command{
		Use:   "trust-host PLAN NODE",
		Short: "Record a node's new SSH host key in known_hosts, after showing both fingerprints",
		Long: `A node rebuilt with the same address presents a new host key, and runbook
refuses it (field case F08). After checking the new fingerprint out of band,
trust-host replaces the node's entry in the first known_hosts file of the
plan's ssh settings. It shows the expected and presented fingerprints and
asks for confirmation (or --yes); it is never done silently.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l := load(stdio, args[0], vf, false)
			if l.diags.HasErrors() {
				l.writeDiags(stdio)
				return errQuiet(ExitError, "invalid plan")
			}
			var inv engine.Inventories
			if offline {
				si := engine.StaticInventories{}
				if nodesFile != "" {
					ns, err := kube.ReadNodeList(nodesFile)
					if err != nil {
						return &exitError{code: ExitError, err: err}
					}
					si.Nodes = ns
				}
				inv = si
			} else {
				cs, _ := l.vals.Cluster()
				cfg, err := kube.Config(cs.Kubeconfig, cs.Context)
				if err != nil {
					return &exitError{code: ExitError, err: err}
				}
				kc, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					return &exitError{code: ExitError, err: err}
				}
				inv = kube.Inventories{Client: kc}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			prog, diags := engine.Expand(ctx, l.vals, inv)
			if diags.HasErrors() {
				l.diags = diags
				l.writeDiags(stdio)
				return errQuiet(ExitError, "invalid plan")
			}
			var node *plans.Node
			for _, ns := range prog.Inventories {
				for i := range ns {
					if ns[i].Name == args[1] {
						node = &ns[i]
					}
				}
			}
			if node == nil {
				return &exitError{code: ExitError, err: fmt.Errorf("node %s is in none of the plan's inventories", args[1])}
			}
			d := nodes.New(nil, nil)
			defer d.Close()
			pf := d.Pool.Preflight(ctx, nodes.Config(node))
			var mm *sshconn.HostKeyMismatchError
			var uh *sshconn.UnknownHostError
			var file, host string
			var key ssh.PublicKey
			switch {
			case errors.As(pf.Err, &mm):
				if mm.Revoked {
					return &exitError{code: ExitError, err: fmt.Errorf("%s presents a revoked key; refusing to trust it", node.Name)}
				}
				file, host, key = mm.TrustFile, mm.Host, mm.Presented
				fmt.Fprintf(stdio.Out, "%s (%s) presents a new host key.\n", node.Name, host)
				for _, k := range mm.Known {
					fmt.Fprintf(stdio.Out, "  expected: %s  (%s:%d)\n", k.Fingerprint, k.File, k.Line)
				}
			case errors.As(pf.Err, &uh):
				file, host, key = uh.TrustFile, uh.Host, uh.Presented
				fmt.Fprintf(stdio.Out, "%s (%s) is not in known_hosts.\n", node.Name, host)
			case pf.Err != nil:
				return &exitError{code: ExitError, err: pf.Err}
			default:
				fmt.Fprintf(stdio.Out, "%s's host key %s is already trusted; nothing to do.\n", node.Name, pf.HostKey)
				return nil
			}
			if key == nil {
				return &exitError{code: ExitError, err: fmt.Errorf("%s offered no key type known_hosts can record", node.Name)}
			}
			fmt.Fprintf(stdio.Out, "  presented: %s\n", ssh.FingerprintSHA256(key))
			if !yes {
				ok, err := confirm(stdio, fmt.Sprintf("Trust %s for %s in %s?", ssh.FingerprintSHA256(key), host, file))
				if err != nil {
					return &exitError{code: ExitError, err: fmt.Errorf("%w (or --yes)", err)}
				}
				if !ok {
					return errQuiet(ExitError, "not trusted")
				}
			}
			if _, err := sshconn.TrustHost(file, host, key); err != nil {
				return &exitError{code: ExitError, err: err}
			}
			fmt.Fprintf(stdio.Out, "Trusted %s for %s in %s.\n", ssh.FingerprintSHA256(key), host, file)
			return nil
		},
	}
	vf.register(cmd)
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask (the fingerprints are still printed)")
	cmd.Flags().BoolVar(&offline, "offline", false, "resolve inventories without the cluster (static, or --nodes)")
	cmd.Flags().StringVar(&nodesFile, "nodes", "", "with --offline: a saved node list")
	return cmd
}
