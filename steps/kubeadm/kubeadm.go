// Package kubeadm implements the kubeadm step kind: `kubeadm upgrade plan`,
// `upgrade apply` (first control-plane node) and `upgrade node` (the others),
// with kubeadm's own version checked against the target first and the
// post-conditions checked after every attempt (field case F06).
package kubeadm

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/internal/noderun"
	"github.com/zclconf/go-cty/cty"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
			if by := kubeadmInstalledBefore(req, want); by != "" {
				ch.Warnings = append(ch.Warnings, fmt.Sprintf("kubeadm on %s is %s now; step %q installs %s before this step", req.NodeName(), kv, by, want))
			} else {
				ch.Blockers = append(ch.Blockers, fmt.Sprintf("kubeadm on %s is %s, older than the target %s: install kubeadm %s first", req.NodeName(), kv, t, want))
			}
		}
	}
	if action == UpgradeApply && t != "" {
		// Resume after an interrupted or "failed" apply: the post-conditions
		// decide whether it is done.
		if kc, err := req.Env.KubeClient(ctx); err == nil && postconditions(ctx, req, r, kc, t) == nil {
			ch.Action, ch.Summary = engine.ActionNoOp, fmt.Sprintf("the control plane on %s already runs %s", req.NodeName(), t)
		}
	}
	return ch, nil
}

// kubeadmInstalledBefore names an earlier apt step of the same phase that
// installs kubeadm at least at want on this node, or "".
func kubeadmInstalledBefore(req *engine.Request, want plans.Version) string {
	if req.Step.Phase == nil || req.Program == nil {
		return ""
	}
	for _, s := range req.Step.Phase.Steps {
		if s == req.Step {
			return ""
		}
		if s.Kind != "apt" {
			continue
		}
		cfg, diags := req.Program.Decode(s, req.Node)
		if diags.HasErrors() {
			continue
		}
		if v, err := plans.ParseVersion((engine.Args{V: cfg.Args}).StringMap("packages")["kubeadm"]); err == nil && v.Compare(want) >= 0 {
			return s.Name
		}
	}
	return ""
}

// HealthWait bounds how long a failed upgrade waits for the control plane
// to answer again before it records what it sees and fails.
var HealthWait = 3 * time.Minute

var applyRE = regexp.MustCompile(`kubeadm upgrade apply (v[0-9][0-9A-Za-z.+-]*)`)

// Apply implements engine.Kind. kubeadm's own version is checked first;
// after every attempt of upgrade apply the post-conditions are checked
// (static pod image tags, kubeadm-config, apiserver readiness), so that a
// kubeadm that failed after doing its work, or a connection lost before the
// exit status arrived, is judged by the cluster's state (field case F06).
func (Kind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	res, err := noderun.Run(ctx, req, r, engine.Command{Argv: []string{"kubeadm", "version", "-o", "short"}})
	if err != nil {
		return cty.NilVal, err
	}
	kv := strings.TrimSpace(res.Stdout)
	t := target(req)
	if t != "" {
		have, err1 := plans.ParseVersion(kv)
		want, err2 := plans.ParseVersion(t)
		if err1 != nil || err2 != nil {
			return cty.NilVal, fmt.Errorf("comparing kubeadm %q with the target %q: %v %v", kv, t, err1, err2)
		}
		if have.Compare(want) < 0 {
			return cty.NilVal, fmt.Errorf("kubeadm on %s is %s, older than the target %s: install kubeadm %s first", req.NodeName(), kv, t, want)
		}
	}
	out := map[string]cty.Value{"kubeadm_version": cty.StringVal(kv), "available_version": cty.StringVal("")}
	cmd := Command(req)
	switch req.Args.String("action") {
	case UpgradePlan:
		res, err := noderun.Run(ctx, req, r, cmd)
		if err != nil {
			return cty.NilVal, err
		}
		if m := applyRE.FindStringSubmatch(res.Stdout); m != nil {
			out["available_version"] = cty.StringVal(m[1])
		}
		return cty.ObjectVal(out), nil
	case UpgradeNode:
		if _, err := noderun.Run(ctx, req, r, cmd); err != nil {
			return cty.NilVal, err
		}
		return cty.ObjectVal(out), nil
	}
	// upgrade apply
	_, runErr := noderun.Run(ctx, req, r, cmd)
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	if runErr != nil {
		// kubeadm rolls back on failure, or the connection dropped: wait,
		// bounded, for the control plane to answer, then judge by what is
		// there.
		req.Emit("waiting", "kubeadm upgrade apply did not succeed; waiting for the control plane to be healthy again", nil)
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), HealthWait)
		herr := waitReady(wctx, kc)
		cancel()
		seen := observed(context.WithoutCancel(ctx), req, r, kc)
		if herr != nil {
			return cty.NilVal, fmt.Errorf("%w; then the control plane did not become healthy within %s (%v); observed: %s", runErr, HealthWait, herr, seen)
		}
		if post := postconditions(ctx, req, r, kc, t); post == nil {
			req.Emit("postconditions", "kubeadm reported a failure, but every post-condition holds: the upgrade is done; observed: "+seen, nil)
			return cty.ObjectVal(out), nil
		}
		return cty.NilVal, fmt.Errorf("%w; the control plane is healthy again; observed: %s", runErr, seen)
	}
	if err := postconditions(ctx, req, r, kc, t); err != nil {
		return cty.NilVal, fmt.Errorf("kubeadm upgrade apply exited 0 but %w; observed: %s", err, observed(ctx, req, r, kc))
	}
	return cty.ObjectVal(out), nil
}

// postconditions checks that the control plane on the node runs the target:
// the kube-apiserver manifest's image tag, kubeadm-config's
// kubernetesVersion, and /readyz.
func postconditions(ctx context.Context, req *engine.Request, r engine.Runner, kc kubernetes.Interface, t string) error {
	tag, err := manifestTag(ctx, req, r, "kube-apiserver")
	if err != nil {
		return err
	}
	if tag != t {
		return fmt.Errorf("the kube-apiserver manifest runs %s, not %s", tag, t)
	}
	cv, err := clusterVersion(ctx, kc)
	if err != nil {
		return err
	}
	if cv != t {
		return fmt.Errorf("kubeadm-config says kubernetesVersion %s, not %s", cv, t)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitReady(wctx, kc); err != nil {
		return fmt.Errorf("the apiserver is not ready: %w", err)
	}
	return nil
}

var imageRE = regexp.MustCompile(`image:\s*\S+/([a-z-]+):(\S+)`)

func manifestTag(ctx context.Context, req *engine.Request, r engine.Runner, component string) (string, error) {
	p := req.Args.String("manifests_dir") + "/" + component + ".yaml"
	res, err := r.Run(ctx, engine.Command{Argv: []string{"cat", p}, Sudo: req.Node.SSH.Sudo})
	if err != nil {
		return "", fmt.Errorf("reading %s on %s: %w", p, req.NodeName(), err)
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("reading %s on %s: %s", p, req.NodeName(), noderun.LastLine(res.Stderr))
	}
	for _, m := range imageRE.FindAllStringSubmatch(res.Stdout, -1) {
		if m[1] == component {
			return m[2], nil
		}
	}
	return "", fmt.Errorf("%s on %s names no %s image", p, req.NodeName(), component)
}

var versionRE = regexp.MustCompile(`(?m)^kubernetesVersion:\s*(\S+)`)

func clusterVersion(ctx context.Context, kc kubernetes.Interface) (string, error) {
	cm, err := kc.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading kubeadm-config: %w", err)
	}
	m := versionRE.FindStringSubmatch(cm.Data["ClusterConfiguration"])
	if m == nil {
		return "", fmt.Errorf("kubeadm-config has no kubernetesVersion")
	}
	return strings.Trim(m[1], `"'`), nil
}

// waitReady polls /readyz every second until it answers ok.
func waitReady(ctx context.Context, kc kubernetes.Interface) error {
	var last error
	for {
		body, err := kc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return last
		case <-time.After(time.Second):
		}
	}
}

// observed records the versions the node and the cluster show now.
func observed(ctx context.Context, req *engine.Request, r engine.Runner, kc kubernetes.Interface) string {
	var parts []string
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		tag, err := manifestTag(ctx, req, r, c)
		if err != nil {
			tag = "unknown (" + err.Error() + ")"
		}
		parts = append(parts, c+" manifest "+tag)
	}
	cv, err := clusterVersion(ctx, kc)
	if err != nil {
		cv = "unknown"
	}
	parts = append(parts, "kubeadm-config "+cv)
	if sv, err := kc.Discovery().ServerVersion(); err == nil {
		parts = append(parts, "apiserver reports "+sv.GitVersion)
	} else {
		parts = append(parts, "apiserver unreachable")
	}
	return strings.Join(parts, ", ")
}
