package cli

import (
	"net"
	"strconv"

	"context"
	"fmt"
	"github.com/runbookhq/runbook/lab/internal/nodessh"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/runbookhq/runbook/lab/internal/bootstrap"
	"github.com/runbookhq/runbook/lab/internal/layout"
)

// waiter polls the lab until it is ready, printing each milestone once.
type waiter struct {
	lab       layout.Lab
	cfg       layout.Config
	pid       int
	out       io.Writer
	start     time.Time
	fresh     time.Time // node heartbeats must be from this time on
	workloads bool
}

// stage is one readiness check; pending says what is still missing.
type stage struct {
	name  string
	check func(ctx context.Context, cs kubernetes.Interface) (pending string, err error)
}

func (w waiter) stages() []stage {
	st := []stage{
		{"apiserver healthy", func(ctx context.Context, cs kubernetes.Interface) (string, error) {
			body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err != nil {
				return "apiserver /readyz: " + firstLine(err.Error()+" "+string(body)), nil
			}
			return "", nil
		}},
		{"all nodes Ready", func(ctx context.Context, cs kubernetes.Interface) (string, error) {
			return pendingNodes(ctx, cs, w.cfg, w.fresh)
		}},
		{"sshd on every node", func(context.Context, kubernetes.Interface) (string, error) {
			return w.pendingSSHDs(), nil
		}},
		{"scenario seeded", func(context.Context, kubernetes.Interface) (string, error) {
			if _, err := os.Stat(w.lab.SeededFile()); err == nil {
				return "", nil
			}
			if b, err := os.ReadFile(w.lab.SeedErrorFile()); err == nil {
				return "scenario not seeded yet; last error: " + firstLine(string(b)), nil
			}
			return "scenario not seeded yet", nil
		}},
	}
	if w.workloads {
		st = append(st, stage{"workloads ready", func(ctx context.Context, cs kubernetes.Interface) (string, error) {
			return PendingWorkloads(ctx, cs)
		}})
	}
	return st
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func (w waiter) wait(ctx context.Context, timeout time.Duration) error {
	rc, err := bootstrap.RESTConfig(w.lab)
	if err != nil {
		return err
	}
	rc.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	deadline := time.Now().Add(timeout)
	stages := w.stages()
	done := 0
	pending := "supervisor starting"
	for {
		if !alive(w.pid) || !isLabProcess(w.pid, w.lab, true) {
			return fmt.Errorf("the lab supervisor (pid %d) exited while waiting for %s; see %s and %s",
				w.pid, stages[done].name, w.lab.LogFile("supervisor"), w.lab.LogFile("supervisor.out"))
		}
		for done < len(stages) {
			p, err := stages[done].check(ctx, cs)
			if err != nil {
				return err
			}
			if p != "" {
				pending = p
				break
			}
			fmt.Fprintf(w.out, "  %-18s after %.1fs\n", stages[done].name, time.Since(w.start).Seconds())
			done++
		}
		if done == len(stages) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %s (logs in %s)", timeout, stages[done].name, pending, w.lab.LogDir())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s: %s", stages[done].name, pending)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pendingNodes names the nodes of cfg that are missing or not Ready with
// a heartbeat since since (so that a restarted lab's stale Node objects
// do not count).
func pendingNodes(ctx context.Context, cs kubernetes.Interface, cfg layout.Config, since time.Time) (string, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list nodes: " + firstLine(err.Error()), nil
	}
	ready := map[string]bool{}
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)) {
				ready[n.Name] = true
			}
		}
	}
	var missing []string
	for _, n := range cfg.Nodes {
		if !ready[n.Name] {
			missing = append(missing, n.Name)
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d/%d nodes Ready; not Ready: %s", len(cfg.Nodes)-len(missing), len(cfg.Nodes), abbreviate(missing, 8)), nil
}

func abbreviate(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
}

// PendingWorkloads names every Deployment, StatefulSet and DaemonSet that
// is not fully rolled out and ready; "" when all are.
func PendingWorkloads(ctx context.Context, cs kubernetes.Interface) (string, error) {
	var pending []string
	deps, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list deployments: " + firstLine(err.Error()), nil
	}
	for _, d := range deps.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want {
			pending = append(pending, fmt.Sprintf("deployment %s/%s %d/%d", d.Namespace, d.Name, d.Status.AvailableReplicas, want))
		}
	}
	sts, err := cs.AppsV1().StatefulSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list statefulsets: " + firstLine(err.Error()), nil
	}
	for _, s := range sts.Items {
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		if s.Status.ObservedGeneration < s.Generation || s.Status.ReadyReplicas < want {
			pending = append(pending, fmt.Sprintf("statefulset %s/%s %d/%d", s.Namespace, s.Name, s.Status.ReadyReplicas, want))
		}
	}
	dss, err := cs.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list daemonsets: " + firstLine(err.Error()), nil
	}
	for _, d := range dss.Items {
		if d.Status.ObservedGeneration < d.Generation || d.Status.DesiredNumberScheduled == 0 || d.Status.NumberReady < d.Status.DesiredNumberScheduled {
			pending = append(pending, fmt.Sprintf("daemonset %s/%s %d/%d", d.Namespace, d.Name, d.Status.NumberReady, d.Status.DesiredNumberScheduled))
		}
	}
	sort.Strings(pending)
	if len(pending) == 0 {
		return "", nil
	}
	return "not ready: " + abbreviate(pending, 6), nil
}

// pendingSSHDs lists the nodes whose sshd does not answer yet (none when
// sshd is not installed: the supervisor logs that).
func (w waiter) pendingSSHDs() string {
	if nodessh.Available() != nil {
		return ""
	}
	ports, err := w.lab.ReadPorts()
	if err != nil || ports.SSH == nil {
		return "ssh ports not chosen yet"
	}
	var missing []string
	for _, n := range w.cfg.Nodes {
		if w.lab.HasFault(n.Name, "sshd-down") {
			continue
		}
		if !sshBanner(net.JoinHostPort(n.IP, strconv.Itoa(ports.SSH[n.Name]))) {
			missing = append(missing, n.Name)
		}
	}
	if len(missing) > 0 {
		return "sshd not answering on " + abbreviate(missing, 5)
	}
	return ""
}
