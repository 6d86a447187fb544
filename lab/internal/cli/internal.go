package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/runbookhq/runbook/lab/internal/kubelet"
	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/supervisor"
)

func fileLogger(path string) (*slog.Logger, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	return slog.New(slog.NewTextHandler(f, nil)), func() { f.Close() }, nil
}

func newSupervise() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:    "supervise",
		Short:  "Run the lab supervisor in the foreground (up starts it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			log, closeLog, err := fileLogger(l.LogFile("supervisor"))
			if err != nil {
				return err
			}
			defer closeLog()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := supervisor.Run(ctx, l, log); err != nil {
				log.Error("supervisor failed", "err", err)
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	return c
}

func newKubelets() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:    "kubelets",
		Short:  "Run the simulated kubelets of a lab in the foreground (the supervisor starts it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			cfg, err := l.ReadConfig()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			rc, err := clientcmd.BuildConfigFromFlags("", l.KubeletSimKubeconfig())
			if err != nil {
				return fmt.Errorf("kubelet credentials: %w", err)
			}
			rc.QPS, rc.Burst = 100, 200
			rc.UserAgent = "runbook-lab-kubelet-sim"
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return kubelet.New(l, cfg, cs, log, kubelet.Options{}).Run(ctx)
		},
	}
	c.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	return c
}
