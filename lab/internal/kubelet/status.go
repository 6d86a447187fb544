package kubelet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

// Labels, annotations and taints of kubeadm-made nodes.
const (
	LabelControlPlane   = "node-role.kubernetes.io/control-plane"
	LabelExcludeFromLB  = "node.kubernetes.io/exclude-from-external-load-balancers"
	TaintControlPlane   = "node-role.kubernetes.io/control-plane"
	AnnotationExitCode  = "lab.runbook.dev/exit-code"
	annotationMirror    = "kubernetes.io/config.mirror"
	annotationHash      = "kubernetes.io/config.hash"
	annotationSource    = "kubernetes.io/config.source"
	annotationSeen      = "kubernetes.io/config.seen"
	kubeletPort         = 10250
	containerRuntimeVer = "containerd://1.7.24"
)

// NewNode is the Node object a kubelet registers, with kubeadm's labels,
// annotations and (for control planes) taint.
func NewNode(n layout.Node) *corev1.Node {
	labels := map[string]string{
		"beta.kubernetes.io/arch": "amd64",
		"beta.kubernetes.io/os":   "linux",
		"kubernetes.io/arch":      "amd64",
		"kubernetes.io/hostname":  n.Name,
		"kubernetes.io/os":        "linux",
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   n.Name,
			Labels: labels,
			Annotations: map[string]string{
				"kubeadm.alpha.kubernetes.io/cri-socket":                 "unix:///var/run/containerd/containerd.sock",
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
	}
	if n.Role == layout.RoleControlPlane {
		labels[LabelControlPlane] = ""
		labels[LabelExcludeFromLB] = ""
		node.Spec.Taints = []corev1.Taint{{Key: TaintControlPlane, Effect: corev1.TaintEffectNoSchedule}}
	}
	return node
}

func stableID(name, salt string) string {
	s := sha256.Sum256([]byte(salt + "/" + name))
	return hex.EncodeToString(s[:16])
}

// readiness is what the simulated kubelet says about the node.
type readiness int

const (
	// ready: the kubelet runs and reports Ready=True.
	ready readiness = iota
	// starting: the kubelet (re)started and does not report Ready yet.
	starting
	// silent: the kubelet is not running; the node is Unknown, as the node
	// lifecycle controller marks it once heartbeats stop.
	silent
)

// ApplyNodeStatus sets the kubelet-owned parts of node.Status for the
// given readiness and kubelet version, keeping transition times of
// conditions whose status did not change.
func ApplyNodeStatus(node *corev1.Node, n layout.Node, r readiness, version string, now metav1.Time) {
	st := &node.Status
	st.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.IP},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	st.Capacity = corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	st.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("7800Mi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("90Gi"),
	}
	st.DaemonEndpoints.KubeletEndpoint.Port = kubeletPort
	st.NodeInfo = corev1.NodeSystemInfo{
		MachineID:               stableID(n.Name, "machine"),
		SystemUUID:              stableID(n.Name, "uuid"),
		BootID:                  stableID(n.Name, "boot"),
		KernelVersion:           "6.1.0-28-amd64",
		OSImage:                 "Debian GNU/Linux 12 (bookworm)",
		ContainerRuntimeVersion: containerRuntimeVer,
		KubeletVersion:          version,
		OperatingSystem:         "linux",
		Architecture:            "amd64",
	}
	type cond struct {
		t               corev1.NodeConditionType
		status          corev1.ConditionStatus
		reason, message string
	}
	var conds []cond
	switch r {
	case ready, starting:
		conds = []cond{
			{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
			{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
			{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
		}
		if r == ready {
			conds = append(conds, cond{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"})
		} else {
			conds = append(conds, cond{corev1.NodeReady, corev1.ConditionFalse, "KubeletNotReady", "container runtime status check may not have completed yet"})
		}
	case silent:
		for _, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeReady} {
			conds = append(conds, cond{t, corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."})
		}
	}
	old := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range st.Conditions {
		old[c.Type] = c
	}
	st.Conditions = st.Conditions[:0]
	for _, c := range conds {
		nc := corev1.NodeCondition{Type: c.t, Status: c.status, Reason: c.reason, Message: c.message,
			LastHeartbeatTime: now, LastTransitionTime: now}
		if o, ok := old[c.t]; ok {
			if o.Status == c.status {
				nc.LastTransitionTime = o.LastTransitionTime
			}
			if r == silent {
				// Nobody heartbeats for a silent kubelet.
				nc.LastHeartbeatTime = o.LastHeartbeatTime
			}
		}
		st.Conditions = append(st.Conditions, nc)
	}
}

// NodeReady reports the node's Ready condition status.
func NodeReady(node *corev1.Node) corev1.ConditionStatus {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// PodCIDR returns the node's pod CIDR, or 10.244.<index>.0/24 while the
// node IPAM controller has not assigned one.
func PodCIDR(node *corev1.Node, index int) string {
	if node != nil && node.Spec.PodCIDR != "" {
		return node.Spec.PodCIDR
	}
	return fmt.Sprintf("10.244.%d.0/24", index%256)
}

// hostAddresses lists the usable pod addresses of a CIDR (.2 upwards; .1
// is the bridge in kubeadm+flannel clusters), at most limit of them.
func hostAddresses(cidr string, limit int) ([]string, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	ip = ip.Mask(n.Mask).To4()
	if ip == nil {
		return nil, fmt.Errorf("pod CIDR %q is not IPv4", cidr)
	}
	ones, bits := n.Mask.Size()
	size := 1 << (bits - ones)
	var out []string
	for i := 2; i < size-1 && len(out) < limit; i++ {
		a := make(net.IP, 4)
		copy(a, ip)
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		v += uint32(i)
		a[0], a[1], a[2], a[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		out = append(out, a.String())
	}
	return out, nil
}
