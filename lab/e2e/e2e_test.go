// Package e2e runs the runbook-lab binary end to end: up, status, drain,
// kubelet and control-plane version changes, down. It needs the binary
// (make lab); it skips, saying so, when the binary is not built and
// RUNBOOK_LAB_BIN is not set.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubectl/pkg/drain"
)

// binary finds runbook-lab: $RUNBOOK_LAB_BIN, else bin/runbook-lab at the
// repository root.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RUNBOOK_LAB_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RUNBOOK_LAB_BIN=%s: %v", p, err)
		}
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "bin", "runbook-lab"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("runbook-lab is not built (%s missing): run `make lab` or set RUNBOOK_LAB_BIN", p)
	}
	return p
}

type lab struct {
	bin string
	dir string
	cs  kubernetes.Interface
}

// run runs the binary with args and returns its output and exit code.
func (l *lab) run(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("runbook-lab %s did not finish within %s:\n%s", strings.Join(args, " "), timeout, out.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("runbook-lab %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// startLab runs `up` in a fresh directory and registers `down --purge`.
func startLab(t *testing.T, scenario string) *lab {
	t.Helper()
	bin := binary(t)
	dir, err := os.MkdirTemp("", "runbook-lab-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{bin: bin, dir: filepath.Join(dir, "lab")}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"supervisor.log", "kubelets.log"} {
				b, _ := os.ReadFile(filepath.Join(l.dir, "logs", f))
				lines := strings.Split(string(b), "\n")
				t.Logf("last lines of %s:\n%s", f, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
		if out, code := l.run(t, 2*time.Minute, "down", "--dir", l.dir); code != 0 {
			t.Errorf("down: exit %d\n%s", code, out)
		}
		if left := processesMentioning(l.dir); len(left) > 0 {
			t.Errorf("processes left after down (lab kept in %s): %v", l.dir, left)
			return
		}
		os.RemoveAll(dir)
	})
	start := time.Now()
	out, code := l.run(t, 5*time.Minute, "up", "--dir", l.dir, "--scenario", scenario)
	if code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	t.Logf("up (%s scenario) took %.1fs:\n%s", scenario, time.Since(start).Seconds(), out)
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(l.dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	if l.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return l
}

// processesMentioning lists live processes whose command line contains s.
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// eventually polls check until it reports done, failing the test after
// timeout with what it waited for and the last state seen.
func eventually(t *testing.T, timeout time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := check()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ctx() context.Context { return context.Background() }

func nodeReady(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (l *lab) podsOn(t *testing.T, node string) []corev1.Pod {
	t.Helper()
	list, err := l.cs.CoreV1().Pods("").List(ctx(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func ownedBy(p corev1.Pod, kind string) bool {
	ref := metav1.GetControllerOf(&p)
	return ref != nil && ref.Kind == kind
}

func (l *lab) writeKubelet(t *testing.T, node, version, state string) {
	t.Helper()
	p := filepath.Join(l.dir, "nodes", node, "run", "kubelet.json")
	b, _ := json.Marshal(map[string]string{"version": version, "state": state, "restartedAt": time.Now().Format(time.RFC3339Nano)})
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
}

func (l *lab) serverVersion() (string, error) {
	v, err := l.cs.Discovery().ServerVersion()
	if err != nil {
		return "", err
	}
	return v.GitVersion, nil
}

func newDrainer(cs kubernetes.Interface, force bool, timeout time.Duration, log *bytes.Buffer) *drain.Helper {
	return &drain.Helper{
		Ctx: ctx(), Client: cs, Force: force, GracePeriodSeconds: -1,
		IgnoreAllDaemonSets: true, DeleteEmptyDirData: true, Timeout: timeout,
		Out: log, ErrOut: log,
	}
}

func (l *lab) cordonAndDrain(h *drain.Helper, node string) error {
	n, err := l.cs.CoreV1().Nodes().Get(ctx(), node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := drain.RunCordonOrUncordon(h, n, true); err != nil {
		return err
	}
	return drain.RunNodeDrain(h, node)
}

func TestDefaultLab(t *testing.T) {
	t.Parallel()
	l := startLab(t, "default")

	t.Run("nodes", func(t *testing.T) {
		nodes, err := l.cs.CoreV1().Nodes().List(ctx(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"cp-1": "127.0.1.1", "worker-1": "127.0.1.2", "worker-2": "127.0.1.3"}
		if len(nodes.Items) != len(want) {
			t.Fatalf("%d nodes, want %d", len(nodes.Items), len(want))
		}
		for _, n := range nodes.Items {
			if nodeReady(&n) != corev1.ConditionTrue || n.Status.NodeInfo.KubeletVersion != "v1.27.6" {
				t.Errorf("%s: Ready=%s kubelet %s", n.Name, nodeReady(&n), n.Status.NodeInfo.KubeletVersion)
			}
			if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Type != corev1.NodeInternalIP || n.Status.Addresses[0].Address != want[n.Name] {
				t.Errorf("%s: addresses %v, want InternalIP %s", n.Name, n.Status.Addresses, want[n.Name])
			}
			_, isCP := n.Labels["node-role.kubernetes.io/control-plane"]
			tainted := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
				return t.Key == "node-role.kubernetes.io/control-plane" && t.Effect == corev1.TaintEffectNoSchedule
			})
			if isCP != (n.Name == "cp-1") || tainted != isCP {
				t.Errorf("%s: control-plane label %v, taint %v", n.Name, isCP, tainted)
			}
		}
	})

	t.Run("reported version", func(t *testing.T) {
		v, err := l.cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != "v1.27.6" || v.Major != "1" || v.Minor != "27" {
			t.Errorf("/version = %+v, want v1.27.6", v)
		}
		cm, err := l.cs.CoreV1().ConfigMaps("kube-system").Get(ctx(), "kubeadm-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cm.Data["ClusterConfiguration"], "kubernetesVersion: v1.27.6") {
			t.Errorf("kubeadm-config:\n%s", cm.Data["ClusterConfiguration"])
		}
		for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			p, err := l.cs.CoreV1().Pods("kube-system").Get(ctx(), c+"-cp-1", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("mirror pod of %s: %v", c, err)
			}
			if img := p.Spec.Containers[0].Image; img != "registry.k8s.io/"+c+":v1.27.6" || !podReady(p) {
				t.Errorf("mirror pod %s: image %s ready %v", p.Name, img, podReady(p))
			}
		}
	})

	t.Run("a deleted mirror pod comes back", func(t *testing.T) {
		pods := l.cs.CoreV1().Pods("kube-system")
		old, err := pods.Get(ctx(), "kube-scheduler-cp-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := pods.Delete(ctx(), old.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the kubelet to recreate mirror pod kube-scheduler-cp-1", func() (bool, string) {
			p, err := pods.Get(ctx(), old.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return p.UID != old.UID && podReady(p), fmt.Sprintf("uid %s ready %v", p.UID, podReady(p))
		})
	})

	t.Run("status", func(t *testing.T) {
		out, code := l.run(t, time.Minute, "status", "--dir", l.dir, "-o", "json")
		if code != 0 {
			t.Fatalf("status: exit %d\n%s", code, out)
		}
		var st struct {
			Running       bool   `json:"running"`
			ServerVersion string `json:"serverVersion"`
			Processes     []struct {
				Name    string `json:"name"`
				Running bool   `json:"running"`
			} `json:"processes"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var running []string
		for _, p := range st.Processes {
			if p.Running {
				running = append(running, p.Name)
			}
		}
		slices.Sort(running)
		// Part 2: every node runs its sshd.
		want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelets", "sshd-cp-1", "sshd-worker-1", "sshd-worker-2"}
		if !st.Running || st.ServerVersion != "v1.27.6" || !slices.Equal(running, want) {
			t.Errorf("status: running %v version %s processes %v", st.Running, st.ServerVersion, running)
		}
	})

	t.Run("drain", func(t *testing.T) {
		eventually(t, time.Minute, "PodDisruptionBudgets to allow one disruption each", func() (bool, string) {
			pdbs, err := l.cs.PolicyV1().PodDisruptionBudgets("").List(ctx(), metav1.ListOptions{})
			if err != nil || len(pdbs.Items) < 3 {
				return false, fmt.Sprint(err)
			}
			for _, p := range pdbs.Items {
				if p.Status.DisruptionsAllowed != 1 {
					return false, fmt.Sprintf("%s allows %d", p.Name, p.Status.DisruptionsAllowed)
				}
			}
			return true, ""
		})
		evicted := map[types.UID]string{}
		for _, p := range l.podsOn(t, "worker-1") {
			if !ownedBy(p, "DaemonSet") {
				evicted[p.UID] = p.Namespace + "/" + p.Name
			}
		}
		if len(evicted) == 0 {
			t.Fatal("no evictable pod on worker-1 before the drain; the test would prove nothing")
		}
		var log bytes.Buffer
		start := time.Now()
		if err := l.cordonAndDrain(newDrainer(l.cs, false, 2*time.Minute, &log), "worker-1"); err != nil {
			t.Fatalf("drain: %v\n%s", err, log.String())
		}
		t.Logf("drain of worker-1 (%d pods) took %.1fs:\n%s", len(evicted), time.Since(start).Seconds(), log.String())
		for _, p := range l.podsOn(t, "worker-1") {
			if !ownedBy(p, "DaemonSet") {
				t.Errorf("pod %s/%s still on worker-1 after the drain", p.Namespace, p.Name)
			}
		}
		eventually(t, 2*time.Minute, "evicted pods recreated on worker-2 by their controllers", func() (bool, string) {
			pods, err := l.cs.CoreV1().Pods("").List(ctx(), metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			count := map[string]int{}
			for _, p := range pods.Items {
				if _, old := evicted[p.UID]; old {
					return false, "evicted pod " + p.Name + " still exists"
				}
				if (p.Namespace == "app" || p.Namespace == "data") && !ownedBy(p, "DaemonSet") {
					if p.Spec.NodeName != "worker-2" || !podReady(&p) || p.DeletionTimestamp != nil {
						return false, fmt.Sprintf("%s on %q ready=%v", p.Name, p.Spec.NodeName, podReady(&p))
					}
					count[strings.Split(p.Name, "-")[0]]++
				}
			}
			want := map[string]int{"web": 3, "cache": 2, "db": 3}
			for k, n := range want {
				if count[k] != n {
					return false, fmt.Sprintf("ready pods on worker-2: %v, want %v", count, want)
				}
			}
			return true, ""
		})
		eventually(t, time.Minute, "the disruption controller to report web healthy again", func() (bool, string) {
			pdb, err := l.cs.PolicyV1().PodDisruptionBudgets("app").Get(ctx(), "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			s := pdb.Status
			return s.CurrentHealthy == 3 && s.DesiredHealthy == 2 && s.ExpectedPods == 3 && s.DisruptionsAllowed == 1,
				fmt.Sprintf("%+v", s)
		})
		n, err := l.cs.CoreV1().Nodes().Get(ctx(), "worker-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := drain.RunCordonOrUncordon(newDrainer(l.cs, false, time.Minute, &log), n, false); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kubelet restart reports the new version", func(t *testing.T) {
		l.writeKubelet(t, "worker-2", "v1.28.0", "running")
		sawNotReady := false
		eventually(t, time.Minute, "worker-2 to go NotReady and come back Ready at v1.28.0", func() (bool, string) {
			n, err := l.cs.CoreV1().Nodes().Get(ctx(), "worker-2", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if nodeReady(n) != corev1.ConditionTrue {
				sawNotReady = true
			}
			return sawNotReady && nodeReady(n) == corev1.ConditionTrue && n.Status.NodeInfo.KubeletVersion == "v1.28.0",
				fmt.Sprintf("Ready=%s kubelet %s, saw NotReady %v", nodeReady(n), n.Status.NodeInfo.KubeletVersion, sawNotReady)
		})

		l.writeKubelet(t, "worker-1", "v1.27.6", "broken")
		eventually(t, time.Minute, "worker-1 NotReady with a broken kubelet", func() (bool, string) {
			n, err := l.cs.CoreV1().Nodes().Get(ctx(), "worker-1", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return nodeReady(n) == corev1.ConditionUnknown, "Ready=" + string(nodeReady(n))
		})
		time.Sleep(3 * time.Second)
		if n, err := l.cs.CoreV1().Nodes().Get(ctx(), "worker-1", metav1.GetOptions{}); err != nil || nodeReady(n) == corev1.ConditionTrue {
			t.Fatalf("a broken kubelet came back Ready by itself (err %v)", err)
		}
		l.writeKubelet(t, "worker-1", "v1.27.6", "running")
		eventually(t, time.Minute, "worker-1 Ready again", func() (bool, string) {
			n, err := l.cs.CoreV1().Nodes().Get(ctx(), "worker-1", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return nodeReady(n) == corev1.ConditionTrue, "Ready=" + string(nodeReady(n))
		})
	})

	t.Run("control plane upgrade", func(t *testing.T) {
		start := time.Now()
		out, code := l.run(t, 3*time.Minute, "restart-control-plane", "--dir", l.dir, "--version", "v1.28.0")
		if code != 0 {
			t.Fatalf("restart-control-plane: exit %d\n%s", code, out)
		}
		t.Logf("restart-control-plane took %.1fs: %s", time.Since(start).Seconds(), out)
		if v, err := l.serverVersion(); err != nil || v != "v1.28.0" {
			t.Fatalf("after restart /version = %q, %v", v, err)
		}
		eventually(t, time.Minute, "the kube-apiserver mirror pod at v1.28.0", func() (bool, string) {
			p, err := l.cs.CoreV1().Pods("kube-system").Get(ctx(), "kube-apiserver-cp-1", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return p.Spec.Containers[0].Image == "registry.k8s.io/kube-apiserver:v1.28.0" && podReady(p), p.Spec.Containers[0].Image
		})
	})

	t.Run("moving the apiserver manifest away stops it", func(t *testing.T) {
		manifest := filepath.Join(l.dir, "nodes", "cp-1", "etc", "kubernetes", "manifests", "kube-apiserver.yaml")
		aside := filepath.Join(l.dir, "kube-apiserver.yaml.aside")
		if err := os.Rename(manifest, aside); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the apiserver to stop", func() (bool, string) {
			_, err := l.serverVersion()
			return err != nil && strings.Contains(err.Error(), "connection refused"), fmt.Sprint(err)
		})
		if err := os.Rename(aside, manifest); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "the apiserver to serve v1.28.0 again", func() (bool, string) {
			v, err := l.serverVersion()
			return err == nil && v == "v1.28.0", fmt.Sprint(v, err)
		})
	})

	t.Run("up on a running lab", func(t *testing.T) {
		out, code := l.run(t, 3*time.Minute, "up", "--dir", l.dir)
		if code != 0 || !strings.Contains(out, "already running") {
			t.Errorf("second up: exit %d\n%s", code, out)
		}
		out, code = l.run(t, time.Minute, "up", "--dir", l.dir, "--workers", "5")
		if code != 1 || !strings.Contains(out, "2 worker(s), not 5") {
			t.Errorf("up with another shape: exit %d, want 1\n%s", code, out)
		}
	})

	t.Run("down", func(t *testing.T) {
		out, code := l.run(t, 2*time.Minute, "down", "--dir", l.dir)
		if code != 0 {
			t.Fatalf("down: exit %d\n%s", code, out)
		}
		if left := processesMentioning(l.dir); len(left) > 0 {
			t.Errorf("processes left after down: %v", left)
		}
		if out, code := l.run(t, time.Minute, "status", "--dir", l.dir); code != 3 {
			t.Errorf("status of a stopped lab: exit %d, want 3\n%s", code, out)
		}
	})
}

func TestFieldCasesLab(t *testing.T) {
	t.Parallel()
	l := startLab(t, "field-cases")
	pods := l.cs.CoreV1().Pods("field-cases")
	get := func(name string) *corev1.Pod {
		t.Helper()
		p, err := pods.Get(ctx(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s: %v", name, err)
		}
		return p
	}

	t.Run("edge-case pods", func(t *testing.T) {
		for _, n := range []string{"bare", "scratch", "orphan", "owned"} {
			if p := get(n); p.Spec.NodeName != "worker-1" || !podReady(p) {
				t.Errorf("%s on %q ready=%v", n, p.Spec.NodeName, podReady(p))
			}
		}
		if p := get("completed"); p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("completed pod phase %s", p.Status.Phase)
		}
		// The garbage collector must leave the pod with a dangling controller.
		time.Sleep(3 * time.Second)
		ref := metav1.GetControllerOf(get("orphan"))
		if ref == nil || ref.Kind != "ReplicaSet" {
			t.Errorf("orphan controller %v", ref)
		}
		owner, err := l.cs.CoreV1().ConfigMaps("field-cases").Get(ctx(), "owner", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		owned := get("owned")
		if len(owned.OwnerReferences) != 1 || owned.OwnerReferences[0].UID != owner.UID || metav1.GetControllerOf(owned) != nil {
			t.Errorf("owned pod owner references %v", owned.OwnerReferences)
		}
	})

	var solo corev1.Pod
	t.Run("zero-disruption budget answers 429", func(t *testing.T) {
		list, err := pods.List(ctx(), metav1.ListOptions{LabelSelector: "app=solo"})
		if err != nil || len(list.Items) != 1 {
			t.Fatalf("solo pods: %v %v", list, err)
		}
		solo = list.Items[0]
		if solo.Spec.NodeName != "worker-1" {
			t.Fatalf("solo runs on %s, want worker-1", solo.Spec.NodeName)
		}
		eventually(t, time.Minute, "the disruption controller to compute solo's budget", func() (bool, string) {
			pdb, err := l.cs.PolicyV1().PodDisruptionBudgets("field-cases").Get(ctx(), "solo", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.CurrentHealthy == 1 && pdb.Status.DisruptionsAllowed == 0,
				fmt.Sprintf("%+v", pdb.Status)
		})
		err = pods.EvictV1(ctx(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: solo.Name, Namespace: solo.Namespace}})
		if !apierrors.IsTooManyRequests(err) {
			t.Fatalf("evicting solo: %v, want 429 TooManyRequests", err)
		}
	})

	t.Run("drain refuses, then passes once scaled up", func(t *testing.T) {
		var log bytes.Buffer
		err := l.cordonAndDrain(newDrainer(l.cs, false, 30*time.Second, &log), "worker-1")
		if err == nil || !strings.Contains(err.Error(), "declare no controller") {
			t.Fatalf("drain without --force: %v, want a refusal of pods without a controller", err)
		}
		for _, n := range []string{"field-cases/bare", "field-cases/owned", "field-cases/scratch"} {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("refusal does not name %s: %v", n, err)
			}
		}
		err = l.cordonAndDrain(newDrainer(l.cs, true, 10*time.Second, &log), "worker-1")
		if err == nil || !strings.Contains(log.String()+err.Error(), "disruption budget") {
			t.Fatalf("forced drain with a zero-disruption budget: %v\n%s", err, log.String())
		}
		if p := get(solo.Name); p.UID != solo.UID || p.DeletionTimestamp != nil {
			t.Fatal("the budget did not protect solo")
		}
		scale, err := l.cs.AppsV1().Deployments("field-cases").GetScale(ctx(), "solo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = 2
		if _, err := l.cs.AppsV1().Deployments("field-cases").UpdateScale(ctx(), "solo", scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "solo's budget to allow a disruption after scaling to 2", func() (bool, string) {
			pdb, err := l.cs.PolicyV1().PodDisruptionBudgets("field-cases").Get(ctx(), "solo", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return pdb.Status.DisruptionsAllowed == 1, fmt.Sprintf("%+v", pdb.Status)
		})
		log.Reset()
		if err := l.cordonAndDrain(newDrainer(l.cs, true, time.Minute, &log), "worker-1"); err != nil {
			t.Fatalf("drain after scale-up: %v\n%s", err, log.String())
		}
		eventually(t, time.Minute, "two ready solo pods on worker-2", func() (bool, string) {
			list, err := pods.List(ctx(), metav1.ListOptions{LabelSelector: "app=solo"})
			if err != nil {
				return false, err.Error()
			}
			var on []string
			for _, p := range list.Items {
				if podReady(&p) && p.DeletionTimestamp == nil {
					on = append(on, p.Spec.NodeName)
				}
			}
			return slices.Equal(on, []string{"worker-2", "worker-2"}), fmt.Sprint(on)
		})
	})
}
