package drain

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Decision is what a drain does with one pod.
type Decision string

const (
	Evict  Decision = "evict"  // through the eviction API, honouring PDBs
	Delete Decision = "delete" // deleted without eviction (unmanaged with force, or a named PDB bypass)
	Skip   Decision = "skip"   // left on the node (DaemonSet and mirror pods)
	Blocks Decision = "blocks" // the drain refuses to start because of it
)

// Options are the drain's choices about pods, as kubectl's flags.
type Options struct {
	IgnoreDaemonSets   bool
	DeleteEmptyDirData bool
	Force              bool
	// SkipDeletedAfter skips pods whose deletion started longer ago.
	SkipDeletedAfter time.Duration
	// Bypass lists the PDBs ("ns/name") and workloads ("ns/Kind/name")
	// whose pods may be deleted instead of evicted.
	Bypass []string
	Now    time.Time
}

// PodPlan is a pod's classification.
type PodPlan struct {
	Namespace, Name string
	UID             string
	Owner           string // "ReplicaSet/web-7d9c", "" when none
	Decision        Decision
	Reason          string
	Warning         string
}

// ID is "ns/name".
func (p PodPlan) ID() string { return p.Namespace + "/" + p.Name }

// OwnerExists answers whether a pod's controller still exists; drains treat
// a pod whose controller is gone as unmanaged (nothing will recreate it).
type OwnerExists func(namespace string, ref metav1.OwnerReference) (bool, error)

// Classify decides, before anything changes, what a drain does with each pod,
// following kubectl drain's rules: mirror pods are skipped, DaemonSet pods
// block unless ignored, emptyDir data blocks unless it may be deleted, pods
// without a controller block unless forced; completed pods never block.
func Classify(pods []corev1.Pod, o Options, owners OwnerExists) ([]PodPlan, error) {
	out := make([]PodPlan, 0, len(pods))
	for i := range pods {
		p := &pods[i]
		pp := PodPlan{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}
		ref := metav1.GetControllerOf(p)
		if ref != nil {
			pp.Owner = ref.Kind + "/" + ref.Name
		} else if len(p.OwnerReferences) > 0 {
			pp.Owner = p.OwnerReferences[0].Kind + "/" + p.OwnerReferences[0].Name + " (not a controller)"
		}
		finished := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		switch {
		case o.SkipDeletedAfter > 0 && p.DeletionTimestamp != nil && o.Now.Sub(p.DeletionTimestamp.Time) > o.SkipDeletedAfter:
			pp.Decision, pp.Reason = Skip, fmt.Sprintf("deletion started %s ago (skip_wait_for_delete_timeout)", o.Now.Sub(p.DeletionTimestamp.Time).Round(time.Second))
		case p.Annotations[corev1.MirrorPodAnnotationKey] != "":
			pp.Decision, pp.Reason = Skip, "static pod (mirror): the kubelet runs it from a manifest"
		case finished:
			pp.Decision, pp.Reason = Evict, "completed ("+string(p.Status.Phase)+"): removed, never blocks"
		case ref != nil && ref.Kind == "DaemonSet":
			ok, err := owners(p.Namespace, *ref)
			if err != nil {
				return nil, err
			}
			switch {
			case !ok && o.Force:
				pp.Decision, pp.Reason, pp.Warning = Delete, "DaemonSet "+ref.Name+" is gone: orphaned pod", "orphaned DaemonSet pod will be deleted"
			case !ok:
				pp.Decision, pp.Reason = Blocks, "orphaned DaemonSet pod (its DaemonSet "+ref.Name+" is gone; set force = true)"
			case o.IgnoreDaemonSets:
				pp.Decision, pp.Reason = Skip, "DaemonSet pod: the DaemonSet keeps it on the node"
			default:
				pp.Decision, pp.Reason = Blocks, "DaemonSet-managed (set ignore_daemonsets = true)"
			}
		default:
			pp.Decision, pp.Reason = Evict, "managed by "+pp.Owner
			if hasEmptyDir(p) {
				if !o.DeleteEmptyDirData {
					pp.Decision, pp.Reason = Blocks, "emptyDir data would be lost (set delete_emptydir_data = true)"
					break
				}
				pp.Warning = "its emptyDir data will be deleted"
			}
			managed := ref != nil
			if managed {
				ok, err := owners(p.Namespace, *ref)
				if err != nil {
					return nil, err
				}
				if !ok {
					managed = false
					pp.Warning = join(pp.Warning, fmt.Sprintf("its controller %s no longer exists: treated as unmanaged", pp.Owner))
				}
			}
			if !managed {
				if !o.Force {
					pp.Decision, pp.Reason = Blocks, "not managed by a controller: nothing would recreate it (set force = true to delete it)"
					if pp.Owner != "" && ref != nil {
						pp.Reason = "controller " + pp.Owner + " is gone: nothing would recreate it (set force = true to delete it)"
					}
					break
				}
				pp.Decision, pp.Reason = Delete, "unmanaged (force): deleted, not recreated"
				if bare := pp.Owner == ""; bare {
					pp.Reason = "bare pod (force): deleted, not recreated"
				}
			}
		}
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func hasEmptyDir(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}

// PDBBlock is a PodDisruptionBudget that allows no disruption of a pod the
// drain would evict.
type PDBBlock struct {
	PDB, Pod         string
	Healthy, Desired int32
	Bypassed         bool
}

func (b PDBBlock) String() string {
	s := fmt.Sprintf("PodDisruptionBudget %s allows no disruption now (healthy %d, desired %d): eviction of %s would be refused", b.PDB, b.Healthy, b.Desired, b.Pod)
	if b.Bypassed {
		s += " (bypassed: the plan names it, the pod will be deleted)"
	}
	return s
}

// BlockingPDBs finds the PDBs that would refuse the evictions planned now.
func BlockingPDBs(plans []PodPlan, pods []corev1.Pod, pdbs []policyv1.PodDisruptionBudget, bypass []string) []PDBBlock {
	byID := map[string]*corev1.Pod{}
	for i := range pods {
		byID[pods[i].Namespace+"/"+pods[i].Name] = &pods[i]
	}
	var out []PDBBlock
	for _, pp := range plans {
		if pp.Decision != Evict {
			continue
		}
		pod := byID[pp.ID()]
		if pod == nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, pdb := range pdbs {
			if pdb.Namespace != pod.Namespace || pdb.Status.DisruptionsAllowed > 0 {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			id := pdb.Namespace + "/" + pdb.Name
			out = append(out, PDBBlock{PDB: id, Pod: pp.ID(), Healthy: pdb.Status.CurrentHealthy, Desired: pdb.Status.DesiredHealthy, Bypassed: containsStr(bypass, id)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod+out[i].PDB < out[j].Pod+out[j].PDB })
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
