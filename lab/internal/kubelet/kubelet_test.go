package kubelet

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

func TestNewNodeKubeadmShape(t *testing.T) {
	cp := NewNode(layout.Node{Name: "cp-1", Role: layout.RoleControlPlane, IP: "127.0.1.1"})
	if _, ok := cp.Labels[LabelControlPlane]; !ok {
		t.Error("control plane lacks the control-plane role label")
	}
	if len(cp.Spec.Taints) != 1 || cp.Spec.Taints[0].Key != TaintControlPlane || cp.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("control plane taints %v", cp.Spec.Taints)
	}
	w := NewNode(layout.Node{Name: "worker-1", Role: layout.RoleWorker, IP: "127.0.1.2"})
	if _, ok := w.Labels[LabelControlPlane]; ok || len(w.Spec.Taints) != 0 {
		t.Errorf("worker has control-plane label or taints: %v %v", w.Labels, w.Spec.Taints)
	}
	if w.Labels["kubernetes.io/hostname"] != "worker-1" {
		t.Errorf("hostname label %q", w.Labels["kubernetes.io/hostname"])
	}
}

func condition(n *corev1.Node, t corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func TestApplyNodeStatus(t *testing.T) {
	info := layout.Node{Name: "worker-1", Role: layout.RoleWorker, IP: "127.0.1.2"}
	n := NewNode(info)
	t0 := metav1.NewTime(time.Unix(1000, 0))
	ApplyNodeStatus(n, info, ready, "v1.27.6", t0)
	if NodeReady(n) != corev1.ConditionTrue || n.Status.NodeInfo.KubeletVersion != "v1.27.6" {
		t.Fatalf("ready: %v %s", NodeReady(n), n.Status.NodeInfo.KubeletVersion)
	}
	if n.Status.Addresses[0].Type != corev1.NodeInternalIP || n.Status.Addresses[0].Address != "127.0.1.2" {
		t.Errorf("addresses %v", n.Status.Addresses)
	}
	t1 := metav1.NewTime(time.Unix(2000, 0))
	ApplyNodeStatus(n, info, ready, "v1.27.6", t1)
	c := condition(n, corev1.NodeReady)
	if !c.LastTransitionTime.Equal(&t0) || !c.LastHeartbeatTime.Equal(&t1) {
		t.Errorf("unchanged Ready: transition %v heartbeat %v", c.LastTransitionTime, c.LastHeartbeatTime)
	}
	t2 := metav1.NewTime(time.Unix(3000, 0))
	ApplyNodeStatus(n, info, starting, "v1.28.0", t2)
	c = condition(n, corev1.NodeReady)
	if c.Status != corev1.ConditionFalse || !c.LastTransitionTime.Equal(&t2) || n.Status.NodeInfo.KubeletVersion != "v1.28.0" {
		t.Errorf("starting: %+v %s", c, n.Status.NodeInfo.KubeletVersion)
	}
	t3 := metav1.NewTime(time.Unix(4000, 0))
	ApplyNodeStatus(n, info, silent, "v1.28.0", t3)
	c = condition(n, corev1.NodeReady)
	if c.Status != corev1.ConditionUnknown || !c.LastHeartbeatTime.Equal(&t2) {
		t.Errorf("silent kubelet: %+v (heartbeat must stay at the last real one)", c)
	}
}

func TestHostAddresses(t *testing.T) {
	a, err := hostAddresses("10.244.3.0/24", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 3 || a[0] != "10.244.3.2" || a[2] != "10.244.3.4" {
		t.Errorf("addresses %v", a)
	}
	all, _ := hostAddresses("10.244.3.0/24", 1000)
	if len(all) != 253 || all[len(all)-1] != "10.244.3.254" {
		t.Errorf("a /24 has %d usable addresses ending %s", len(all), all[len(all)-1])
	}
	if _, err := hostAddresses("nope", 1); err == nil {
		t.Error("bad CIDR: no error")
	}
	if got := PodCIDR(nil, 5); got != "10.244.5.0/24" {
		t.Errorf("fallback PodCIDR %s", got)
	}
}

func podCond(p corev1.PodStatus, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestDesiredPodStatus(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app", UID: "u1", Generation: 2},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "a", Image: "nginx"}, {Name: "b", Image: "redis"}},
		},
	}
	if podUpToDate(pod) {
		t.Fatal("a new pod is up to date")
	}
	now := metav1.Now()
	st := DesiredPodStatus(pod, "127.0.1.2", "10.244.1.2", now)
	if st.Phase != corev1.PodRunning || st.PodIP != "10.244.1.2" || st.HostIP != "127.0.1.2" || st.ObservedGeneration != 2 {
		t.Errorf("status %+v", st)
	}
	if podCond(st, corev1.PodReady) != corev1.ConditionTrue || podCond(st, corev1.ContainersReady) != corev1.ConditionTrue {
		t.Errorf("conditions %+v", st.Conditions)
	}
	if len(st.ContainerStatuses) != 2 || st.ContainerStatuses[0].State.Running == nil || !st.ContainerStatuses[1].Ready {
		t.Errorf("container statuses %+v", st.ContainerStatuses)
	}
	if len(st.InitContainerStatuses) != 1 || st.InitContainerStatuses[0].State.Terminated == nil {
		t.Errorf("init container statuses %+v", st.InitContainerStatuses)
	}
	pod.Status = st
	if !podUpToDate(pod) {
		t.Error("pod with the desired status is not up to date")
	}

	done := pod.DeepCopy()
	done.Status = corev1.PodStatus{}
	done.Annotations = map[string]string{AnnotationExitCode: "0"}
	st = DesiredPodStatus(done, "127.0.1.2", "10.244.1.3", now)
	if st.Phase != corev1.PodSucceeded || podCond(st, corev1.PodReady) != corev1.ConditionFalse ||
		st.ContainerStatuses[0].State.Terminated == nil || st.ContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("exit 0: %+v", st)
	}
	done.Annotations[AnnotationExitCode] = "3"
	if st = DesiredPodStatus(done, "127.0.1.2", "10.244.1.3", now); st.Phase != corev1.PodFailed {
		t.Errorf("exit 3: phase %s", st.Phase)
	}
}

func TestStaticPodsAndMirror(t *testing.T) {
	dir := t.TempDir()
	pods := staticpod.Manifests(staticpod.Params{Version: "v1.27.6", NodeName: "cp-1", NodeIP: "127.0.1.1",
		APIPort: 1, EtcdClient: 2, EtcdPeer: 3, CMPort: 4, SchedPort: 5, ServiceCIDR: "10.96.0.0/12", PodCIDR: "10.244.0.0/16"})
	if err := staticpod.Write(dir, pods); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("kind: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".hidden.yaml"), []byte("kind: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	got, errs := ReadStaticPods(dir)
	if len(got) != 4 || len(errs) != 1 {
		t.Fatalf("read %d pods, %d errors (%v); want 4 and 1", len(got), len(errs), errs)
	}
	sp := got["kube-system/kube-apiserver"]
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-1", UID: "n1"}}
	m := MirrorPod(sp.pod, sp.hash, node, time.Now())
	if m.Name != "kube-apiserver-cp-1" || m.Spec.NodeName != "cp-1" || !IsMirrorPod(m) || m.Annotations[annotationHash] != sp.hash {
		t.Errorf("mirror pod %s on %s annotations %v", m.Name, m.Spec.NodeName, m.Annotations)
	}
	if len(m.OwnerReferences) != 1 || m.OwnerReferences[0].Kind != "Node" || m.OwnerReferences[0].UID != "n1" {
		t.Errorf("owner %v", m.OwnerReferences)
	}
	if m.Spec.Containers[0].Image != "registry.k8s.io/kube-apiserver:v1.27.6" {
		t.Errorf("image %s", m.Spec.Containers[0].Image)
	}
	if missing, errs := ReadStaticPods(filepath.Join(dir, "nope")); len(missing) != 0 || len(errs) != 0 {
		t.Errorf("missing dir: %v %v", missing, errs)
	}
}
