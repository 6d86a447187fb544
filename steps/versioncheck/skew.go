package versioncheck

import (
	"fmt"
	"sort"

	"github.com/runbookhq/runbook/plans"
)

// Cluster is what the preflight read from the cluster; a zero APIServer means
// it was not read (offline).
type Cluster struct {
	APIServer     plans.Version            // the oldest kube-apiserver seen
	Kubelets      map[string]plans.Version // node name -> kubelet version
	ControlPlanes map[string]bool          // control-plane node names
}

// Op is a version-changing operation of the plan, in execution order.
type Op struct {
	Address string
	Node    string
	Kind    OpKind
	Version plans.Version // target of the operation; zero for upgrade_node
}

// OpKind is a kind of version-changing operation.
type OpKind int

const (
	OpUpgradeApply OpKind = iota // kubeadm upgrade apply: the control plane moves to Version
	OpUpgradeNode                // kubeadm upgrade node
	OpKubelet                    // the kubelet package moves to Version
)

// AllowedKubeletLag is how many minors behind the target a kubelet may be
// when kubeadm upgrades the control plane: kubeadm up to 1.28 allows one,
// from 1.29 on three (the skew policy widened in 1.28, kubeadm followed).
func AllowedKubeletLag(target plans.Version) int {
	if target.Major == 1 && target.Minor <= 28 {
		return 1
	}
	return 3
}

// Check applies the upgrade rules: one minor at a time, kubelets within the
// allowed lag, the control plane first (kubeadm upgrade apply on the first
// control-plane node, upgrade node on the others), and no kubelet newer
// than the oldest kube-apiserver at any point.
func Check(target plans.Version, c Cluster, ops []Op) []string {
	var out []string
	known := c.APIServer != (plans.Version{})
	if known {
		switch d := c.APIServer.MinorsAfter(target); {
		case d > 1:
			var path []string
			for m := c.APIServer.Minor + 1; m <= target.Minor; m++ {
				path = append(path, fmt.Sprintf("%d.%d", target.Major, m))
			}
			out = append(out, fmt.Sprintf("the cluster is at %s and the plan targets %s, which skips %s: upgrade one minor at a time (%s -> %s); target %s first",
				c.APIServer, target, joinArrow(path[:len(path)-1]), c.APIServer.MinorString(), joinArrow(path), path[0]))
		case d < 0:
			out = append(out, fmt.Sprintf("the cluster is at %s and the plan targets %s: kubeadm does not downgrade", c.APIServer, target))
		}
		lag := AllowedKubeletLag(target)
		names := make([]string, 0, len(c.Kubelets))
		for n := range c.Kubelets {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			kv := c.Kubelets[n]
			if behind := kv.MinorsAfter(target); behind > lag {
				out = append(out, fmt.Sprintf("node %s runs kubelet %s, %d minors behind the target %s: kubeadm %d.%d allows kubelets at most %d minor(s) behind the target (up to 1.28: one; from 1.29: three); upgrade %s to %d.%d first",
					n, kv, behind, target, target.Major, target.Minor, lag, n, target.Major, target.Minor-lag))
			}
		}
	}
	api := c.APIServer
	applied := false
	for _, op := range ops {
		switch op.Kind {
		case OpUpgradeApply:
			if len(c.ControlPlanes) > 0 && !c.ControlPlanes[op.Node] {
				out = append(out, fmt.Sprintf("%s runs kubeadm upgrade apply on %s, which is not a control-plane node", op.Address, op.Node))
			}
			if applied {
				out = append(out, fmt.Sprintf("%s runs kubeadm upgrade apply a second time; other control-plane nodes use kubeadm upgrade node", op.Address))
			}
			applied, api = true, op.Version
		case OpUpgradeNode:
			if !applied && (!known || api.Compare(target) < 0) {
				out = append(out, fmt.Sprintf("%s runs kubeadm upgrade node on %s before kubeadm upgrade apply has upgraded the control plane; upgrade the first control-plane node first", op.Address, op.Node))
			}
		case OpKubelet:
			if (known || applied) && op.Version.Compare(api) <= 0 {
				continue
			}
			what := "before the control plane is upgraded"
			if known || applied {
				what = fmt.Sprintf("while kube-apiserver is at %s", api)
			}
			out = append(out, fmt.Sprintf("%s installs kubelet %s on %s %s: a kubelet must never be newer than the oldest kube-apiserver; upgrade the control plane (kubeadm upgrade apply) first", op.Address, op.Version, op.Node, what))
		}
	}
	return out
}

func joinArrow(p []string) string {
	s := ""
	for i, x := range p {
		if i > 0 {
			s += " -> "
		}
		s += x
	}
	return s
}
