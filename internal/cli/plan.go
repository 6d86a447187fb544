package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"

	"github.com/hashicorp/hcl/v2"
	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/kube"
	"github.com/runbookhq/runbook/internal/nodes"
	"github.com/runbookhq/runbook/internal/view"
	"github.com/runbookhq/runbook/plans"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

type planOptions struct {
	vf               varFlags
	offline          bool
	nodesFile        string
	output           string
	detailedExitcode bool
	out              string
	kubeconfig       string
	context          string
}

func newPlan(stdio *IO) *cobra.Command {
	var o planOptions
	cmd := &cobra.Command{
		Use:   "plan PLAN",
		Short: "Show, read-only, what a plan would do on every node",
		Long: `Show what a plan would do, step by step and node by node, without changing
anything: inventories are resolved against the cluster, and each step reads
what it needs (the pods a drain would evict, the package versions a node's
repositories offer) to say what it would do.

--offline contacts nothing: inventories are static, or come from a saved
'kubectl get nodes -o json' given with --nodes.

PLAN is a file, or a directory whose .hcl files form one plan.`,
		Example: `  runbook plan examples/upgrade-1.28.hcl -var-file lab.tfvars
  runbook plan --offline --nodes nodes.json examples/upgrade-1.28.hcl -o markdown`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd.Context(), stdio, args[0], o)
		},
	}
	o.vf.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.offline, "offline", false, "contact no cluster and no node; inventories from the plan or --nodes")
	f.StringVar(&o.nodesFile, "nodes", "", "with --offline: a saved node list (kubectl get nodes -o json) for selector inventories")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, markdown or json")
	f.BoolVar(&o.detailedExitcode, "detailed-exitcode", false, "exit 0 when there is nothing to do, 2 when there are changes, 1 on error")
	f.StringVar(&o.out, "out", "", "also save the plan to this file for a later 'runbook apply FILE'")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the plan's cluster block, then as kubectl)")
	f.StringVar(&o.context, "context", "", "kubeconfig context")
	return cmd
}

func runPlan(ctx context.Context, stdio *IO, arg string, o planOptions) error {
	switch o.output {
	case "text", "markdown", "json":
	default:
		return usageError("-o %q: plan writes text, markdown or json", o.output)
	}
	if o.nodesFile != "" && !o.offline {
		return usageError("--nodes is for --offline plans; online plans read nodes from the cluster")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	l := load(stdio, arg, o.vf, false)
	if !l.diags.HasErrors() {
		l.diags = append(l.diags, engine.Validate(l.vals)...)
	}
	if l.diags.HasErrors() {
		return failPlan(stdio, l, o)
	}
	env := &engine.Env{Offline: o.offline}
	var inv engine.Inventories
	if o.offline {
		si := engine.StaticInventories{Source: o.nodesFile}
		if o.nodesFile != "" {
			nodes, err := kube.ReadNodeList(o.nodesFile)
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			si.Nodes = nodes
		}
		inv = si
	} else {
		cs, d := l.vals.Cluster()
		l.diags = append(l.diags, d...)
		if o.kubeconfig != "" {
			cs.Kubeconfig = o.kubeconfig
		}
		if o.context != "" {
			cs.Context = o.context
		}
		cfg, err := kube.Config(cs.Kubeconfig, cs.Context)
		if err != nil {
			return &exitError{code: ExitError, err: fmt.Errorf("%w (or plan with --offline)", err)}
		}
		kc, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return &exitError{code: ExitError, err: err}
		}
		env.Kube = func(context.Context) (kubernetes.Interface, error) { return kc, nil }
		env.REST = func(context.Context) (*rest.Config, error) { return cfg, nil }
		inv = kube.Inventories{Client: kc}
	}
	prog, diags := engine.Expand(ctx, l.vals, inv)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return failPlan(stdio, l, o)
	}
	h := header(l, o.offline)
	if !o.offline {
		dialer := nodes.New(nil, nil)
		defer dialer.Close()
		env.Node = dialer.Runner
		lines, d := preflight(ctx, dialer, prog)
		h.Preflight = lines
		l.diags = append(l.diags, d...)
		if d.HasErrors() {
			view.WriteDiags(stdio.Err, l.plan.Files, d, false)
			return errQuiet(ExitError, "node pre-flight failed")
		}
	}
	res := (&engine.Planner{Kinds: l.kinds, Env: env}).Plan(ctx, prog)
	res.Diags = append(res.Diags, l.diags...)
	// Warnings go to stderr so that stdout stays a clean document.
	view.WriteDiags(stdio.Err, l.plan.Files, onlyWarnings(l.diags), false)
	switch o.output {
	case "json":
		if err := view.JSON(stdio.Out, h, res); err != nil {
			return err
		}
	case "markdown":
		view.Markdown(stdio.Out, h, res)
	default:
		view.Text(stdio.Out, h, res)
	}
	if o.out != "" {
		var ns map[string]nodeState
		if kc, err := env.KubeClient(ctx); err == nil {
			if ns, err = snapshotNodes(ctx, kc, prog); err != nil {
				return &exitError{code: ExitError, err: err}
			}
		}
		if err := savePlan(o.out, l, h, res, ns); err != nil {
			return &exitError{code: ExitError, err: fmt.Errorf("saving the plan: %w", err)}
		}
	}
	if res.Failed() || view.Count(res).Failed > 0 {
		return errQuiet(ExitError, "the plan has errors or refusals")
	}
	if o.detailedExitcode && res.HasChanges() {
		return errQuiet(ExitChanges, "changes")
	}
	return nil
}

func onlyWarnings(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			out = append(out, d)
		}
	}
	return out
}

func failPlan(stdio *IO, l *loaded, o planOptions) error {
	if o.output == "json" {
		_ = view.WriteDiagsJSON(stdio.Out, l.diags)
	} else {
		l.writeDiags(stdio)
	}
	return errQuiet(ExitError, "invalid plan")
}

// savedPlan is what --out writes: the dry-run and the sources it was made
// from, so that apply can refuse when anything changed.
type savedPlan struct {
	FormatVersion string            `json:"format_version"`
	Plan          view.JSONPlan     `json:"plan"`
	Sources       map[string]string `json:"sources"`
	// Vars are the non-sensitive variable values, given again to apply;
	// sensitive ones must be given again by the user.
	Vars map[string]string `json:"vars"`
	// Nodes is the state of every node the plan touches, as it was when the
	// plan was made (online plans only).
	Nodes map[string]nodeState `json:"nodes,omitempty"`
}

func savePlan(path string, l *loaded, h view.Header, res *engine.PlanResult, nodes map[string]nodeState) error {
	sp := savedPlan{FormatVersion: "1", Plan: view.BuildJSON(h, res), Sources: map[string]string{}, Vars: map[string]string{}, Nodes: nodes}
	for _, v := range l.plan.Variables {
		val := l.vals.Vars[v.Name]
		if v.Sensitive || val.HasMark(plans.SensitiveMark) || !val.IsWhollyKnown() {
			continue
		}
		// As -var would take it: strings as they are, others as HCL.
		if uv, _ := val.Unmark(); uv.Type() == cty.String && !uv.IsNull() {
			sp.Vars[v.Name] = uv.AsString()
		} else {
			sp.Vars[v.Name] = valueString(val)
		}
	}
	for _, f := range l.plan.Filenames {
		if hf := l.plan.Files[f]; hf != nil {
			sp.Sources[f] = string(hf.Bytes)
		}
	}
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// nodesWithNodeSteps are the nodes some node-kind step will run on.
func nodesWithNodeSteps(prog *engine.Program) []plans.Node {
	seen := map[string]bool{}
	var out []plans.Node
	for _, u := range prog.Units {
		if u.Phase == nil {
			continue
		}
		hasNodeStep := false
		for _, s := range u.Phase.Steps {
			if s.Schema.Target == plans.TargetNode {
				hasNodeStep = true
			}
		}
		if !hasNodeStep {
			continue
		}
		for _, n := range u.Nodes {
			if !seen[n.Name] {
				seen[n.Name] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// preflight checks SSH to every node a node step will use, before any step
// is planned (field case F08): host key, login, and non-interactive sudo.
func preflight(ctx context.Context, d *nodes.Dialer, prog *engine.Program) ([]string, hcl.Diagnostics) {
	ns := nodesWithNodeSteps(prog)
	if len(ns) == 0 {
		return nil, nil
	}
	var lines []string
	var diags hcl.Diagnostics
	for _, pf := range d.Preflight(ctx, ns, true) {
		needSudo := true
		for _, n := range ns {
			if n.Name == pf.Node {
				needSudo = n.SSH.Sudo
			}
		}
		if p := nodes.Problem(pf, needSudo); p != "" {
			lines = append(lines, fmt.Sprintf("%s: FAILED: %s", pf.Node, p))
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Node pre-flight failed: " + pf.Node, Detail: p})
			continue
		}
		lines = append(lines, fmt.Sprintf("%s: ssh %s ok, host key %s, sudo %s", pf.Node, pf.Target, pf.HostKey, pf.Sudo))
	}
	return lines, diags
}
