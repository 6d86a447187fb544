package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/lab/internal/bootstrap"
	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/supervisor"
)

// Status is what `status -o json` prints.
type Status struct {
	Dir           string                  `json:"dir"`
	Running       bool                    `json:"running"`
	SupervisorPID int                     `json:"supervisorPID,omitempty"`
	Kubeconfig    string                  `json:"kubeconfig"`
	Ports         layout.Ports            `json:"ports"`
	Processes     []supervisor.ProcStatus `json:"processes,omitempty"`
	ServerVersion string                  `json:"serverVersion,omitempty"`
	Nodes         []NodeStatus            `json:"nodes,omitempty"`
	Error         string                  `json:"error,omitempty"`
}

// NodeStatus is one node as the API sees it.
type NodeStatus struct {
	Name           string `json:"name"`
	IP             string `json:"ip"`
	Ready          string `json:"ready"`
	KubeletVersion string `json:"kubeletVersion"`
	Unschedulable  bool   `json:"unschedulable,omitempty"`
}

func newStatus() *cobra.Command {
	var dir, output string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's processes, version and nodes",
		Long:  "status exits 0 when the lab runs, 3 when it is stopped and 1 on errors.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layout.New(dir)
			if err != nil {
				return err
			}
			st, err := readStatus(cmd.Context(), l)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), st)
			}
			if !st.Running {
				return exitError{code: ExitStopped}
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", ".lab", "lab directory")
	c.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return c
}

func readStatus(ctx context.Context, l layout.Lab) (Status, error) {
	st := Status{Dir: l.Dir, Kubeconfig: l.Kubeconfig()}
	if _, err := l.ReadConfig(); err != nil {
		return st, exitError{ExitError, fmt.Errorf("no lab in %s: %w", l.Dir, err)}
	}
	ports, err := l.ReadPorts()
	if err != nil {
		return st, err
	}
	st.Ports = ports
	pid, err := supervisorPID(l)
	if err != nil {
		return st, err
	}
	st.SupervisorPID, st.Running = pid, pid != 0
	if !st.Running {
		return st, nil
	}
	if procs, err := supervisor.ReadProcesses(l); err == nil {
		st.Processes = procs
	}
	rc, err := bootstrap.RESTConfig(l)
	if err != nil {
		return st, err
	}
	rc.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return st, err
	}
	if v, err := cs.Discovery().ServerVersion(); err == nil {
		st.ServerVersion = v.GitVersion
	} else {
		st.Error = "apiserver: " + firstLine(err.Error())
		return st, nil
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		st.Error = "list nodes: " + firstLine(err.Error())
		return st, nil
	}
	for _, n := range nodes.Items {
		ns := NodeStatus{Name: n.Name, Ready: "Unknown", KubeletVersion: n.Status.NodeInfo.KubeletVersion, Unschedulable: n.Spec.Unschedulable}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ns.IP = a.Address
			}
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ns.Ready = string(c.Status)
			}
		}
		st.Nodes = append(st.Nodes, ns)
	}
	return st, nil
}

func printStatus(w io.Writer, st Status) {
	state := "stopped"
	if st.Running {
		state = fmt.Sprintf("running (supervisor pid %d)", st.SupervisorPID)
	}
	fmt.Fprintf(w, "lab:        %s\nstate:      %s\nkubeconfig: %s\n", st.Dir, state, st.Kubeconfig)
	fmt.Fprintf(w, "ports:      apiserver %d, etcd %d/%d, controller-manager %d, scheduler %d\n",
		st.Ports.APIServer, st.Ports.EtcdClient, st.Ports.EtcdPeer, st.Ports.ControllerManager, st.Ports.Scheduler)
	if len(st.Ports.SSH) > 0 {
		byPort := map[int]int{}
		for _, p := range st.Ports.SSH {
			byPort[p]++
		}
		var parts []string
		for p, n := range byPort {
			parts = append(parts, fmt.Sprintf("%d (%d nodes)", p, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "ssh ports:  %s\n", strings.Join(parts, ", "))
	}
	if !st.Running {
		return
	}
	if st.ServerVersion != "" {
		fmt.Fprintf(w, "version:    %s\n", st.ServerVersion)
	}
	if len(st.Processes) > 0 {
		fmt.Fprintln(w, "processes:")
		var sshds, sshdUp []string
		for _, p := range st.Processes {
			if strings.HasPrefix(p.Name, "sshd-") {
				sshds = append(sshds, p.Name)
				if p.Running {
					sshdUp = append(sshdUp, p.Name)
				}
				if len(st.Processes) > 20 {
					continue
				}
			}
			state := "down"
			if p.Running {
				state = fmt.Sprintf("pid %d", p.PID)
			}
			fmt.Fprintf(w, "  %-24s %-10s %-10s restarts %d\n", p.Name, state, p.Version, p.Restarts)
		}
		if len(sshds) > 0 {
			total := max(len(sshds), len(st.Ports.SSH))
			fmt.Fprintf(w, "sshd:       %d of %d nodes running sshd; ssh -F %s <node>\n", len(sshdUp), total, filepath.Join(st.Dir, "ssh_config"))
		}
	}
	if len(st.Nodes) > 0 {
		fmt.Fprintln(w, "nodes:")
		for _, n := range st.Nodes {
			extra := ""
			if n.Unschedulable {
				extra = " SchedulingDisabled"
			}
			fmt.Fprintf(w, "  %-12s %-12s Ready=%-8s %s%s\n", n.Name, n.IP, n.Ready, n.KubeletVersion, extra)
		}
	}
	if st.Error != "" {
		fmt.Fprintf(w, "error:      %s\n", st.Error)
	}
}
