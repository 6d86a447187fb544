package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

func newUp() *cobra.Command {
	var (
		dir           string
		o             createOptions
		timeout       time.Duration
		waitWorkloads bool
	)
	c := &cobra.Command{
		Use:   "up",
		Short: "Create (or resume) a lab and wait until it is ready",
		Long: `up creates a lab in --dir (certificates, kubeconfig, static pod manifests,
node state), starts its supervisor in the background, and waits until the
apiserver is healthy, every node is Ready, the scenario is seeded and its
workloads are ready.

On a stopped lab (after down) it starts the same lab again with its data.
On a running lab it only waits for readiness and exits 0; asking a running
or stopped lab for a different shape (--workers, --version, ...) is an
error (exit 1): run down --purge first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := NormalizeVersion(o.Version)
			if err != nil {
				return exitError{ExitUsage, err}
			}
			o.Version = v
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return up(ctx, cmd, l, o, timeout, waitWorkloads)
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "dir", ".lab", "lab directory")
	f.IntVar(&o.ControlPlanes, "control-planes", 1, "number of control-plane nodes (the first runs the real control plane)")
	f.IntVar(&o.Workers, "workers", 2, "number of worker nodes")
	f.StringVar(&o.Version, "version", "1.27.6", "simulated Kubernetes version of the new cluster")
	f.StringVar(&o.Scenario, "scenario", "default", "workloads to seed: default, field-cases, none, or a YAML file or directory")
	f.DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the lab to be ready")
	f.BoolVar(&waitWorkloads, "wait-workloads", true, "also wait for the seeded Deployments, StatefulSets and DaemonSets to be ready")
	return c
}

func up(ctx context.Context, cmd *cobra.Command, l layout.Lab, o createOptions, timeout time.Duration, waitWorkloads bool) error {
	out := cmd.OutOrStdout()
	start := time.Now()
	pid, err := supervisorPID(l)
	if err != nil {
		return err
	}
	cfg, cfgErr := l.ReadConfig()
	exists := cfgErr == nil
	if exists {
		if err := sameShape(cmd, cfg, o); err != nil {
			return exitError{ExitError, err}
		}
	}
	running := pid != 0
	switch {
	case running:
		fmt.Fprintf(out, "lab %s is already running (supervisor pid %d)\n", l.Dir, pid)
	case exists:
		cp, err := cfg.FirstControlPlane()
		if err != nil {
			return err
		}
		ports, err := l.ReadPorts()
		if err != nil {
			return err
		}
		if err := checkPortsFree(cp.IP, ports); err != nil {
			return exitError{ExitError, fmt.Errorf("cannot restart lab %s: %w", l.Dir, err)}
		}
		fmt.Fprintf(out, "starting stopped lab %s\n", l.Dir)
		if pid, err = startSupervisor(l); err != nil {
			return err
		}
	default:
		fmt.Fprintf(out, "creating lab %s: %d control plane(s), %d worker(s), Kubernetes %s, scenario %s\n",
			l.Dir, o.ControlPlanes, o.Workers, o.Version, o.Scenario)
		if cfg, err = createLab(l, o, time.Now()); err != nil {
			return exitError{ExitError, err}
		}
		if pid, err = startSupervisor(l); err != nil {
			return err
		}
	}
	// Nodes count as Ready only with a heartbeat from this start, so that a
	// restarted lab's stale Node objects do not; a lab that was already
	// running heartbeats on its own schedule.
	fresh := start
	if running {
		fresh = time.Time{}
	}
	w := waiter{lab: l, cfg: cfg, pid: pid, out: out, start: start, fresh: fresh, workloads: waitWorkloads}
	if err := w.wait(ctx, timeout); err != nil {
		return exitError{ExitError, err}
	}
	fmt.Fprintf(out, "lab ready in %.1fs\n  export KUBECONFIG=%s\n  ssh -F %s %s\n  runbook plan -var-file %s ...\n",
		time.Since(start).Seconds(), l.Kubeconfig(), l.SSHConfig(), cfg.Nodes[0].Name, l.TFVars())
	return nil
}

// sameShape rejects flags that contradict an existing lab.
func sameShape(cmd *cobra.Command, cfg layout.Config, o createOptions) error {
	var cps, workers int
	for _, n := range cfg.Nodes {
		if n.Role == layout.RoleControlPlane {
			cps++
		} else {
			workers++
		}
	}
	f := cmd.Flags()
	switch {
	case f.Changed("control-planes") && o.ControlPlanes != cps:
		return fmt.Errorf("the lab has %d control plane(s), not %d; run down --purge to recreate it", cps, o.ControlPlanes)
	case f.Changed("workers") && o.Workers != workers:
		return fmt.Errorf("the lab has %d worker(s), not %d; run down --purge to recreate it", workers, o.Workers)
	case f.Changed("version") && o.Version != cfg.InitialVersion:
		return fmt.Errorf("the lab was created at %s, not %s; use restart-control-plane, or down --purge to recreate it", cfg.InitialVersion, o.Version)
	case f.Changed("scenario") && o.Scenario != cfg.Scenario:
		return fmt.Errorf("the lab was seeded with scenario %s, not %s; run down --purge to recreate it", cfg.Scenario, o.Scenario)
	}
	return nil
}

// startSupervisor starts `runbook-lab supervise` in its own session (so it
// and all its children form one process group that down can stop, and
// none of them holds the caller's terminal).
func startSupervisor(l layout.Lab) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(l.LogFile("supervisor.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open supervisor log: %w", err)
	}
	defer logf.Close()
	_ = os.Remove(l.SeedErrorFile())
	c := exec.Command(exe, "supervise", "--dir", l.Dir)
	c.Dir = l.Dir
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return 0, fmt.Errorf("start supervisor: %w", err)
	}
	pid := c.Process.Pid
	if err := os.WriteFile(l.PIDFile(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return 0, fmt.Errorf("write pid file: %w", err)
	}
	// Reap it if it dies while up is still waiting, so alive() sees it go.
	go func() { _ = c.Wait() }()
	return pid, nil
}
