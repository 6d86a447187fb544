package cli

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

func newDown() *cobra.Command {
	var (
		dir     string
		purge   bool
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab's processes (and with --purge delete the lab)",
		Long: `down stops the supervisor and every process it started (its process group)
and nothing else. The lab directory stays, so up can start the same lab
again; --purge deletes it. Stopping a lab that is not running is not an
error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			if err := down(cmd, l, timeout); err != nil {
				return err
			}
			if purge {
				if _, err := os.Stat(l.ConfigFile()); err != nil {
					return fmt.Errorf("not purging %s: it holds no lab.json", l.Dir)
				}
				if err := os.RemoveAll(l.Dir); err != nil {
					return fmt.Errorf("purge: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", l.Dir)
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	c.Flags().BoolVar(&purge, "purge", false, "also delete the lab directory")
	c.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for a graceful stop before killing")
	return c
}

func down(cmd *cobra.Command, l layout.Lab, timeout time.Duration) error {
	out := cmd.OutOrStdout()
	pid, err := supervisorPID(l)
	if err != nil {
		return err
	}
	pgid := pid
	if pid == 0 {
		// The supervisor may have died and left children behind: they are
		// still in its process group, whose id is in the pid file.
		pgid = stalePGID(l)
	}
	members := ours(l, groupMembers(pgid))
	if pid == 0 && len(members) == 0 {
		fmt.Fprintf(out, "lab %s is not running\n", l.Dir)
		_ = os.Remove(l.PIDFile())
		return nil
	}
	start := time.Now()
	if pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	} else {
		for _, m := range members {
			_ = syscall.Kill(m, syscall.SIGTERM)
		}
	}
	deadline := start.Add(timeout)
	for len(ours(l, groupMembers(pgid))) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if left := ours(l, groupMembers(pgid)); len(left) > 0 {
		fmt.Fprintf(out, "killing %d process(es) that did not stop within %s\n", len(left), timeout)
		for _, m := range left {
			_ = syscall.Kill(m, syscall.SIGKILL)
		}
	}
	_ = os.Remove(l.PIDFile())
	fmt.Fprintf(out, "lab %s stopped in %.1fs\n", l.Dir, time.Since(start).Seconds())
	return nil
}

// stalePGID reads the pid file without checking that the process lives.
func stalePGID(l layout.Lab) int {
	var pid int
	if b, err := os.ReadFile(l.PIDFile()); err == nil {
		fmt.Sscan(string(b), &pid)
	}
	return pid
}

// ours keeps the runbook-lab processes among pids.
func ours(l layout.Lab, pids []int) []int {
	var out []int
	for _, p := range pids {
		if isLabProcess(p, l, false) {
			out = append(out, p)
		}
	}
	return out
}
