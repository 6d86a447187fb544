package kubelet

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func containerID(pod *corev1.Pod, name string) string {
	s := sha256.Sum256([]byte(string(pod.UID) + "/" + name))
	return "containerd://" + hex.EncodeToString(s[:])
}

func imageID(image string) string {
	s := sha256.Sum256([]byte(image))
	return image + "@sha256:" + hex.EncodeToString(s[:])
}

// ExitCode returns the simulated exit code a pod asked for with the
// lab.runbook.dev/exit-code annotation.
func ExitCode(pod *corev1.Pod) (int32, bool) {
	v, ok := pod.Annotations[AnnotationExitCode]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 1, true
	}
	return int32(n), true
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, reason string, now metav1.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == t {
			if c.Status != s {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason = s, reason
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now})
}

// DesiredPodStatus is the status the simulated kubelet reports for a pod
// bound to its node: Running and Ready with an address, or, for a pod
// annotated with an exit code, Succeeded (0) or Failed.
func DesiredPodStatus(pod *corev1.Pod, hostIP, podIP string, now metav1.Time) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	st.HostIP = hostIP
	st.HostIPs = []corev1.HostIP{{IP: hostIP}}
	st.PodIP = podIP
	st.PodIPs = []corev1.PodIP{{IP: podIP}}
	st.ObservedGeneration = pod.Generation
	if st.StartTime == nil {
		t := now
		st.StartTime = &t
	}
	started := *st.StartTime
	code, terminal := ExitCode(pod)

	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name),
			Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started, ContainerID: containerID(pod, c.Name)}},
		})
	}
	old := map[string]corev1.ContainerStatus{}
	for _, cs := range pod.Status.ContainerStatuses {
		old[cs.Name] = cs
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name)}
		if terminal {
			reason := "Completed"
			if code != 0 {
				reason = "Error"
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
				StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}
		} else {
			t := true
			cs.Ready, cs.Started = true, &t
			startedAt := now
			if o, ok := old[c.Name]; ok && o.State.Running != nil {
				startedAt = o.State.Running.StartedAt
			}
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: startedAt}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	setCondition(&st, corev1.PodReadyToStartContainers, corev1.ConditionTrue, "", now)
	setCondition(&st, corev1.PodInitialized, corev1.ConditionTrue, "", now)
	if terminal {
		st.Phase = corev1.PodSucceeded
		if code != 0 {
			st.Phase = corev1.PodFailed
		}
		setCondition(&st, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", now)
		setCondition(&st, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", now)
		setCondition(&st, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "", now)
	} else {
		st.Phase = corev1.PodRunning
		setCondition(&st, corev1.ContainersReady, corev1.ConditionTrue, "", now)
		setCondition(&st, corev1.PodReady, corev1.ConditionTrue, "", now)
	}
	return st
}

// podUpToDate reports whether the pod already shows what the kubelet
// would report, so that no write is needed.
func podUpToDate(pod *corev1.Pod) bool {
	if pod.Status.PodIP == "" || pod.Status.HostIP == "" {
		return false
	}
	if _, terminal := ExitCode(pod); terminal {
		return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	}
	if pod.Status.Phase != corev1.PodRunning || len(pod.Status.ContainerStatuses) != len(pod.Spec.Containers) {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// IsMirrorPod reports whether pod is a kubelet's mirror of a static pod.
func IsMirrorPod(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[annotationMirror]
	return ok
}
