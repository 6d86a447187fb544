package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/runbookhq/runbook/lab/internal/bootstrap"
	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

func newRestartControlPlane() *cobra.Command {
	var (
		dir, version string
		timeout      time.Duration
	)
	c := &cobra.Command{
		Use:   "restart-control-plane --version v1.28.0",
		Short: "Move the control plane's static pods to another version",
		Long: `restart-control-plane rewrites the image tags of the kube-apiserver,
kube-controller-manager, kube-scheduler and etcd static pod manifests of
every control-plane node, as kubeadm upgrade apply/node does; the
supervisor then restarts the real processes and the apiserver reports the
new version. It changes nothing else: not kubeadm-config, not kubelets.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := NormalizeVersion(version)
			if err != nil {
				return exitError{ExitUsage, err}
			}
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			cfg, err := l.ReadConfig()
			if err != nil {
				return err
			}
			for _, n := range cfg.Nodes {
				if n.Role != layout.RoleControlPlane {
					continue
				}
				if err := SetManifestVersions(l.ManifestDir(n.Name), v); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "control-plane manifests now at %s\n", v)
			if pid, _ := supervisorPID(l); pid == 0 {
				return nil
			}
			return waitServerVersion(cmd.Context(), l, v, timeout, cmd)
		},
	}
	c.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	c.Flags().StringVar(&version, "version", "", "target Kubernetes version")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the apiserver to report the version")
	_ = c.MarkFlagRequired("version")
	return c
}

// RewriteImages replaces control-plane image tags in a manifest, leaving
// everything else byte for byte.
func RewriteImages(manifest []byte, version string) []byte {
	return staticpod.RewriteImages(manifest, version)
}

// SetManifestVersions rewrites every control-plane manifest in dir.
func SetManifestVersions(dir, version string) error {
	return staticpod.SetManifestVersions(dir, version)
}

func waitServerVersion(ctx context.Context, l layout.Lab, v string, timeout time.Duration, cmd *cobra.Command) error {
	rc, err := bootstrap.RESTConfig(l)
	if err != nil {
		return err
	}
	rc.Timeout = 3 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		info, err := cs.Discovery().ServerVersion()
		if err == nil && info.GitVersion == v {
			fmt.Fprintf(cmd.OutOrStdout(), "apiserver reports %s after %.1fs\n", v, time.Since(start).Seconds())
			return nil
		}
		if err != nil {
			last = firstLine(err.Error())
		} else {
			last = "reports " + info.GitVersion
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return exitError{ExitError, fmt.Errorf("timed out after %s waiting for the apiserver to report %s (%s)", timeout, v, last)}
}
