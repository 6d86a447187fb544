// Package versioncheck implements the version_check step kind, the upgrade
// preflight: it reads the versions of the control plane and of every
// kubelet, simulates how the plan's steps change them, in order, and applies
// the skew policy of the target version (field case F04). It refuses in the
// dry-run and before the first change of an apply.
package versioncheck

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Kind is the version_check kind.
type Kind struct{}

var schema = &plans.KindSchema{
	Name:    "version_check",
	Summary: "Upgrade preflight: read control-plane and kubelet versions, simulate the plan's steps, refuse what breaks the version-skew policy.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "target_version", Type: cty.String, Required: true, Format: plans.FormatVersion, Doc: "The Kubernetes version the plan upgrades to."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "current_version", Type: cty.String, Doc: "The oldest kube-apiserver version found."},
	},
}

// Schema implements engine.Kind.
func (Kind) Schema() *plans.KindSchema { return schema }

// Ops extracts the version-changing operations of a program, in order.
func Ops(prog *engine.Program) []Op {
	var ops []Op
	prog.Walk(func(s *plans.Step, node *plans.Node) {
		if node == nil || (s.Kind != "kubeadm" && s.Kind != "apt") {
			return
		}
		cfg, diags := prog.Decode(s, node)
		if diags.HasErrors() || (cfg.When.IsKnown() && cfg.When.False()) {
			return
		}
		a := engine.Args{V: cfg.Args}
		addr := engine.Address(s, node)
		switch s.Kind {
		case "kubeadm":
			switch a.String("action") {
			case "upgrade_apply":
				if v, err := plans.ParseVersion(a.String("version")); err == nil {
					ops = append(ops, Op{Address: addr, Node: node.Name, Kind: OpUpgradeApply, Version: v})
				}
			case "upgrade_node":
				ops = append(ops, Op{Address: addr, Node: node.Name, Kind: OpUpgradeNode})
			}
		case "apt":
			if v, err := plans.ParseVersion(a.StringMap("packages")["kubelet"]); err == nil {
				ops = append(ops, Op{Address: addr, Node: node.Name, Kind: OpKubelet, Version: v})
			}
		}
	})
	return ops
}

// Plan implements engine.Kind.
func (Kind) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	target, err := plans.ParseVersion(req.Args.String("target_version"))
	if err != nil {
		return nil, err
	}
	ch := &engine.Change{Action: engine.ActionRead, Summary: "version skew preflight for v" + target.String()}
	var c Cluster
	kc, err := req.Env.KubeClient(ctx)
	switch {
	case err == engine.ErrOffline:
		ch.Warnings = append(ch.Warnings, "offline: cluster versions were not read; only the order of the plan's steps was checked")
		c.ControlPlanes = map[string]bool{}
		for _, nodes := range req.Program.Inventories {
			for _, n := range nodes {
				if n.IsControlPlane() {
					c.ControlPlanes[n.Name] = true
				}
			}
		}
		ch.Outputs = cty.ObjectVal(map[string]cty.Value{"current_version": cty.UnknownVal(cty.String)})
	case err != nil:
		return nil, err
	default:
		c, err = Read(ctx, kc)
		if err != nil {
			return nil, err
		}
		ch.Details = append(ch.Details, Describe(c)...)
		ch.Outputs = cty.ObjectVal(map[string]cty.Value{"current_version": cty.StringVal("v" + c.APIServer.String())})
	}
	ops := Ops(req.Program)
	for _, op := range ops {
		if op.Kind == OpUpgradeApply && op.Version.Compare(target) != 0 {
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s upgrades to %s, but version_check targets %s", op.Address, op.Version, target))
		}
	}
	ch.Blockers = append(ch.Blockers, Check(target, c, ops)...)
	return ch, nil
}

// Read collects versions from the cluster: the apiserver's own, the image
// tags of the kube-apiserver static pods, and every node's kubelet.
func Read(ctx context.Context, kc kubernetes.Interface) (Cluster, error) {
	c := Cluster{Kubelets: map[string]plans.Version{}, ControlPlanes: map[string]bool{}}
	sv, err := kc.Discovery().ServerVersion()
	if err != nil {
		return c, fmt.Errorf("reading the apiserver's version: %w", err)
	}
	if c.APIServer, err = plans.ParseVersion(sv.GitVersion); err != nil {
		return c, fmt.Errorf("apiserver version: %w", err)
	}
	pods, err := kc.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "component=kube-apiserver"})
	if err != nil {
		return c, fmt.Errorf("listing kube-apiserver pods: %w", err)
	}
	for _, p := range pods.Items {
		for _, ctr := range p.Spec.Containers {
			if i := strings.LastIndexByte(ctr.Image, ':'); i >= 0 {
				if v, err := plans.ParseVersion(ctr.Image[i+1:]); err == nil && v.Compare(c.APIServer) < 0 {
					c.APIServer = v
				}
			}
		}
	}
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return c, fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		v, err := plans.ParseVersion(n.Status.NodeInfo.KubeletVersion)
		if err != nil {
			return c, fmt.Errorf("node %s: kubelet version: %w", n.Name, err)
		}
		c.Kubelets[n.Name] = v
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
			c.ControlPlanes[n.Name] = true
		}
	}
	return c, nil
}

// Describe lists the versions read, sorted.
func Describe(c Cluster) []string {
	out := []string{"kube-apiserver (oldest): v" + c.APIServer.String()}
	names := make([]string, 0, len(c.Kubelets))
	for n := range c.Kubelets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		role := ""
		if c.ControlPlanes[n] {
			role = " (control plane)"
		}
		out = append(out, fmt.Sprintf("kubelet on %s%s: v%s", n, role, c.Kubelets[n]))
	}
	return out
}

// Apply implements engine.Kind: the preflight is re-run; a refusal fails
// the step before anything changes.
func (k Kind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	ch, err := k.Plan(ctx, req)
	if err != nil {
		return cty.NilVal, err
	}
	if len(ch.Blockers) > 0 {
		return cty.NilVal, fmt.Errorf("version skew preflight refused the plan:\n  - %s", strings.Join(ch.Blockers, "\n  - "))
	}
	return ch.Outputs, nil
}
