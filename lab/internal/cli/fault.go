package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/runbookhq/runbook/lab/internal/bootstrap"
	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodessh"
	"github.com/runbookhq/runbook/lab/internal/nodestate"
	"github.com/runbookhq/runbook/lab/internal/supervisor"
)

// Faults that can be set on a node.
var Faults = []string{"sshd-down", "kubelet-broken", "kubeadm-fail", "kubeadm-fail-after", "sudo-password", "sudo-tty", "sudo-denied", "hostkey-changed"}

func newFault() *cobra.Command {
	var (
		dir  string
		undo bool
		wait time.Duration
	)
	c := &cobra.Command{
		Use:   "fault NODE FAULT|clear [--undo] | fault apiserver restart | fault NODE",
		Short: "Inject or undo a fault on a node (field cases F06, F08)",
		Long: `fault sets a fault on a node, or undoes it with --undo; "clear" undoes every
fault of the node; with only NODE it lists the node's faults.

  sshd-down           the node's sshd stops and is not restarted (connection refused)
  kubelet-broken      the kubelet crash-loops (NotReady; systemctl restart keeps it broken)
  kubeadm-fail        the next kubeadm upgrade apply waits (--wait, default 10s), rolls back, exits 1
  kubeadm-fail-after  the next kubeadm upgrade apply does the upgrade, then exits 1
  sudo-password       sudo wants a password (sudo -n: "sudo: a password is required")
  sudo-tty            sudo requires a tty ("sudo: sorry, you must have a tty to run sudo")
  sudo-denied         sudo refuses ("Sorry, user root is not allowed to execute ...")
  hostkey-changed     the node gets a new host key; known_hosts keeps the old one

  fault apiserver restart   restarts the kube-apiserver process and waits until it is ready`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			cfg, err := l.ReadConfig()
			if err != nil {
				return exitError{ExitError, fmt.Errorf("no lab in %s: %w", l.Dir, err)}
			}
			out := cmd.OutOrStdout()
			if args[0] == "apiserver" && len(args) == 2 && args[1] == "restart" {
				return restartAPIServer(cmd.Context(), l, out)
			}
			var node *layout.Node
			for i := range cfg.Nodes {
				if cfg.Nodes[i].Name == args[0] {
					node = &cfg.Nodes[i]
				}
			}
			if node == nil {
				return exitError{ExitUsage, fmt.Errorf("no node %q in the lab", args[0])}
			}
			if len(args) == 1 {
				for _, f := range activeFaults(l, node.Name) {
					fmt.Fprintln(out, f)
				}
				return nil
			}
			if args[1] == "clear" {
				for _, f := range activeFaults(l, node.Name) {
					if err := undoFault(l, *node, f, out); err != nil {
						return err
					}
				}
				fmt.Fprintf(out, "%s: no faults\n", node.Name)
				return nil
			}
			known := false
			for _, f := range Faults {
				known = known || f == args[1]
			}
			if !known {
				return exitError{ExitUsage, fmt.Errorf("unknown fault %q; faults: %s, clear", args[1], strings.Join(Faults, ", "))}
			}
			if undo {
				return undoFault(l, *node, args[1], out)
			}
			return setFault(l, *node, args[1], wait, out)
		},
	}
	c.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	c.Flags().BoolVar(&undo, "undo", false, "undo the fault")
	c.Flags().DurationVar(&wait, "wait", 10*time.Second, "kubeadm-fail: how long upgrade apply waits before failing")
	return c
}

func activeFaults(l layout.Lab, node string) []string {
	ents, _ := os.ReadDir(l.FaultDir(node))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func setFault(l layout.Lab, n layout.Node, f string, wait time.Duration, out io.Writer) error {
	if strings.HasPrefix(f, "sudo-") {
		for _, o := range []string{"sudo-password", "sudo-tty", "sudo-denied"} {
			_ = os.Remove(l.FaultFile(n.Name, o))
		}
	}
	content := ""
	if f == "kubeadm-fail" {
		content = wait.String()
	}
	if err := layout.WriteFileAtomic(l.FaultFile(n.Name, f), []byte(content+"\n"), 0o644); err != nil {
		return err
	}
	switch f {
	case "sshd-down":
		if err := waitSSH(l, n, false, 15*time.Second); err != nil {
			return err
		}
	case "kubelet-broken":
		if err := setKubelet(l, n.Name, nodestate.Broken); err != nil {
			return err
		}
	case "hostkey-changed":
		if _, err := nodessh.NewKey(nodessh.HostKeyFile(l, n.Name), "root@"+n.Name); err != nil {
			return err
		}
		if err := waitSSHDRestart(l, n, 15*time.Second); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%s: %s set\n", n.Name, f)
	return nil
}

func undoFault(l layout.Lab, n layout.Node, f string, out io.Writer) error {
	if !l.HasFault(n.Name, f) {
		fmt.Fprintf(out, "%s: %s was not set\n", n.Name, f)
		return nil
	}
	if err := os.Remove(l.FaultFile(n.Name, f)); err != nil {
		return err
	}
	switch f {
	case "sshd-down":
		if err := waitSSH(l, n, true, 15*time.Second); err != nil {
			return err
		}
	case "kubelet-broken":
		if err := setKubelet(l, n.Name, nodestate.Running); err != nil {
			return err
		}
	case "hostkey-changed":
		k := nodessh.HostKeyFile(l, n.Name)
		for _, sfx := range []string{"", ".pub"} {
			b, err := os.ReadFile(k + ".orig" + sfx)
			if err != nil {
				return err
			}
			if err := layout.WriteFileAtomic(k+sfx, b, map[string]os.FileMode{"": 0o600, ".pub": 0o644}[sfx]); err != nil {
				return err
			}
		}
		if err := waitSSHDRestart(l, n, 15*time.Second); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%s: %s undone\n", n.Name, f)
	return nil
}

func setKubelet(l layout.Lab, node, state string) error {
	k, err := nodestate.Read(l.KubeletStateFile(node))
	if err != nil {
		return err
	}
	k.State = state
	k.RestartedAt = time.Now().UTC().Format(time.RFC3339Nano)
	return nodestate.Write(l.KubeletStateFile(node), k)
}

// waitSSH waits until the node's sshd answers (up) or refuses (down); a
// stopped lab needs no wait.
func waitSSH(l layout.Lab, n layout.Node, up bool, timeout time.Duration) error {
	if pid, _ := supervisorPID(l); pid == 0 {
		return nil
	}
	ports, err := l.ReadPorts()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(n.IP, strconv.Itoa(ports.SSH[n.Name]))
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if sshBanner(addr) == up {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	state := map[bool]string{true: "answer", false: "stop"}[up]
	return fmt.Errorf("sshd of %s (%s) did not %s within %s", n.Name, addr, state, timeout)
}

func sshBanner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}

// waitSSHDRestart waits until the supervisor runs the node's sshd with its
// current config and host key.
func waitSSHDRestart(l layout.Lab, n layout.Node, timeout time.Duration) error {
	if pid, _ := supervisorPID(l); pid == 0 {
		return nil
	}
	want := nodessh.Hash(l, n.Name)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		procs, _ := supervisor.ReadProcesses(l)
		for _, p := range procs {
			if p.Name == supervisor.SSHDProc(n.Name) && p.Hash == want && p.Running {
				return waitSSH(l, n, true, time.Until(deadline))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("sshd of %s did not restart with its new host key within %s", n.Name, timeout)
}

func restartAPIServer(ctx context.Context, l layout.Lab, out io.Writer) error {
	procs, err := supervisor.ReadProcesses(l)
	if err != nil {
		return exitError{ExitError, fmt.Errorf("the lab is not running: %w", err)}
	}
	pid := 0
	for _, p := range procs {
		if p.Name == "kube-apiserver" && p.Running {
			pid = p.PID
		}
	}
	if pid == 0 || !isLabProcess(pid, l, false) {
		return exitError{ExitError, errors.New("no kube-apiserver of this lab is running")}
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	rc, err := bootstrap.RESTConfig(l)
	if err != nil {
		return err
	}
	rc.Timeout = 2 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	for deadline := start.Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if alive(pid) {
			continue
		}
		if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err == nil {
			fmt.Fprintf(out, "kube-apiserver restarted (was pid %d) and ready in %.1fs\n", pid, time.Since(start).Seconds())
			return nil
		}
	}
	return exitError{ExitError, fmt.Errorf("kube-apiserver not ready again within 90s of its restart")}
}
