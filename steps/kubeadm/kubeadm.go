// Package kubeadm implements the kubeadm step kind: `kubeadm upgrade plan`,
// `upgrade apply` (first control-plane node) and `upgrade node` (the others),
// with kubeadm's own version checked against the target first and the
// post-conditions checked after every attempt (field case F06).
package kubeadm

import (
	"context"
	"fmt"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// Kind is the kubeadm kind.
type Kind struct{}

// Actions of the kubeadm kind.
const (
	UpgradePlan  = "upgrade_plan"
	UpgradeApply = "upgrade_apply"
	UpgradeNode  = "upgrade_node"
)

var schema = &plans.KindSchema{
	Name:    "kubeadm",
	Summary: "kubeadm upgrade plan | apply (first control-plane node) | node (other nodes), with version and post-condition checks.",
	Target:  plans.TargetNode,
	Args: []plans.ArgSchema{
		{Name: "action", Type: cty.String, Required: true, OneOf: []string{UpgradePlan, UpgradeApply, UpgradeNode}, Doc: "upgrade_plan, upgrade_apply or upgrade_node."},
		{Name: "version", Type: cty.String, Format: plans.FormatVersion, Doc: "Target Kubernetes version; required for upgrade_apply, checked against kubeadm's own version for every action."},
		{Name: "extra_args", Type: cty.List(cty.String), Doc: "More arguments for kubeadm, each quoted."},
		{Name: "manifests_dir", Type: cty.String, Default: cty.StringVal("/etc/kubernetes/manifests"), Format: plans.FormatAbsPath, Doc: "Static pod manifests, read for the post-conditions."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "kubeadm_version", Type: cty.String, Doc: "kubeadm's own version."},
		{Name: "available_version", Type: cty.String, Doc: "upgrade_plan: the newest version kubeadm can upgrade to."},
	},
	NoContinue: true,
	Check: func(args cty.Value) []plans.ArgError {
		a, v := args.GetAttr("action"), args.GetAttr("version")
		if a.IsKnown() && !a.IsNull() && a.AsString() == UpgradeApply && v.IsKnown() && v.IsNull() {
			return []plans.ArgError{{Arg: "action", Summary: "upgrade_apply needs version", Detail: "kubeadm upgrade apply takes the target version: set version = \"1.28.0\"."}}
		}
		return nil
	},
}

// Schema implements engine.Kind.
func (Kind) Schema() *plans.KindSchema { return schema }

// target is "v1.28.0" or "".
func target(req *engine.Request) string {
	v := req.Args.String("version")
	if v == "" || v == engine.UnknownText {
		return v
	}
	if pv, err := plans.ParseVersion(v); err == nil {
		return "v" + pv.String()
	}
	return v
}

// Command is the kubeadm command of the step.
func Command(req *engine.Request) engine.Command {
	var argv []string
	switch req.Args.String("action") {
	case UpgradePlan:
		argv = []string{"kubeadm", "upgrade", "plan"}
		if t := target(req); t != "" {
			argv = append(argv, t)
		}
	case UpgradeApply:
		argv = []string{"kubeadm", "upgrade", "apply", target(req), "-y"}
	default:
		argv = []string{"kubeadm", "upgrade", "node"}
	}
	return req.Cmd(append(argv, req.Args.Strings("extra_args")...)...)
}

// Plan implements engine.Kind.
func (Kind) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	action, t := req.Args.String("action"), target(req)
	version := engine.Command{Argv: []string{"kubeadm", "version", "-o", "short"}}
	cmd := Command(req)
	ch := &engine.Change{Action: engine.ActionChange, Summary: fmt.Sprintf("%s on %s", cmd.Shell(), req.NodeName()),
		Commands: engine.Shells(version, cmd)}
	md := req.Args.String("manifests_dir")
	switch action {
	case UpgradePlan:
		ch.Action = engine.ActionRead
	case UpgradeApply:
		ch.Details = []string{
			"before: kubeadm's own version must be at least " + t + " and the target at most one minor above the cluster",
			fmt.Sprintf("after every attempt: %s/kube-apiserver.yaml image tag is %s, kubeadm-config kubernetesVersion is %s, the apiserver answers /readyz", md, t, t),
			"on failure: waits, bounded, for the control plane to be healthy again, records the versions it sees, and stops the run",
		}
	case UpgradeNode:
		ch.Details = []string{"after: the node's kubelet configuration is upgraded; control-plane nodes' static pod manifests match the cluster version"}
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err == engine.ErrOffline {
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	res, err := r.Run(ctx, version)
	if err != nil {
		return nil, fmt.Errorf("reading kubeadm's version: %w", err)
	}
	kv := strings.TrimSpace(res.Stdout)
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"kubeadm_version": cty.StringVal(kv), "available_version": cty.UnknownVal(cty.String)})
	if t != "" && t != engine.UnknownText {
		have, err1 := plans.ParseVersion(kv)
		want, err2 := plans.ParseVersion(t)
		if err1 == nil && err2 == nil && have.Compare(want) < 0 {
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("kubeadm on %s is %s, older than the target %s: install kubeadm %s first", req.NodeName(), kv, t, want))
		}
	}
	if action == UpgradeApply && t != "" {
		res, err := r.Run(ctx, engine.Command{Argv: []string{"cat", md + "/kube-apiserver.yaml"}})
		if err == nil && res.ExitCode == 0 && strings.Contains(res.Stdout, "kube-apiserver:"+t+"\n") {
			ch.Action, ch.Summary = engine.ActionNoOp, fmt.Sprintf("the control plane on %s already runs %s", req.NodeName(), t)
		}
	}
	return ch, nil
}

// Apply implements engine.Kind.
func (Kind) Apply(context.Context, *engine.Request, *engine.Change) (cty.Value, error) {
	return cty.NilVal, &engine.ErrNotImplemented{Kind: "kubeadm", What: "apply"}
}
