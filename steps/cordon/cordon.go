// Package cordon implements the cordon and uncordon step kinds: marking a
// node unschedulable and back, through the Kubernetes API.
//
// Cordons the run makes are its own: they carry an annotation naming the run,
// and uncordon only undoes cordons the run owns unless told otherwise, so a
// node a person cordoned before the run stays cordoned (field case F03).
package cordon

import (
	"context"
	"fmt"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OwnerAnnotation marks a cordon made by runbook; its value is the run id.
const OwnerAnnotation = "runbook.dev/cordoned-by"

var nodeArg = plans.ArgSchema{Name: "node", Type: cty.String, Doc: "Node name; inside a phase, the phase's node by default."}

// Cordon is the cordon kind.
type Cordon struct{}

// Uncordon is the uncordon kind.
type Uncordon struct{}

var cordonSchema = &plans.KindSchema{
	Name:    "cordon",
	Summary: "Mark a node unschedulable (kubectl cordon); the cordon is recorded as the run's own.",
	Target:  plans.TargetCluster,
	Args:    []plans.ArgSchema{nodeArg},
	Outputs: []plans.OutputSchema{
		{Name: "was_unschedulable", Type: cty.Bool, Doc: "Whether the node was already cordoned before this step."},
	},
	Revertible: true,
}

var uncordonSchema = &plans.KindSchema{
	Name:    "uncordon",
	Summary: "Mark a node schedulable again (kubectl uncordon), only if this run cordoned it unless force is set.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		nodeArg,
		{Name: "force", Type: cty.Bool, Default: cty.False, Doc: "Uncordon even if the node was cordoned by someone else before the run."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "uncordoned", Type: cty.Bool, Doc: "Whether this step made the node schedulable."},
	},
}

func (Cordon) Schema() *plans.KindSchema   { return cordonSchema }
func (Uncordon) Schema() *plans.KindSchema { return uncordonSchema }

// Plan implements engine.Kind.
func (Cordon) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	name := req.NodeName()
	ch := &engine.Change{Action: engine.ActionChange, Summary: "cordon " + name,
		Details: []string{fmt.Sprintf("set spec.unschedulable=true on node %s and annotate %s=<run id>", name, OwnerAnnotation)}}
	kc, err := req.Env.KubeClient(ctx)
	if err == engine.ErrOffline {
		ch.Warnings = append(ch.Warnings, "offline: the node's current schedulability was not read")
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading node %s: %w", name, err)
	}
	if n.Spec.Unschedulable {
		ch.Action = engine.ActionNoOp
		ch.Summary = name + " is already cordoned"
		ch.Details = nil
		if owner := n.Annotations[OwnerAnnotation]; owner != "" {
			ch.Details = append(ch.Details, "cordoned by runbook run "+owner)
		} else {
			ch.Details = append(ch.Details, "cordoned before this run (not by runbook): uncordon will leave it cordoned")
		}
	}
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"was_unschedulable": cty.BoolVal(n.Spec.Unschedulable)})
	return ch, nil
}

// Apply implements engine.Kind.
func (Cordon) Apply(context.Context, *engine.Request, *engine.Change) (cty.Value, error) {
	return cty.NilVal, &engine.ErrNotImplemented{Kind: "cordon", What: "apply"}
}

// Plan implements engine.Kind.
func (Uncordon) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	name := req.NodeName()
	force := req.Args.Bool("force")
	ch := &engine.Change{Action: engine.ActionChange, Summary: "uncordon " + name}
	if force {
		ch.Details = []string{"force: uncordon even if someone else cordoned the node"}
	} else {
		ch.Details = []string{"only if this run cordoned it (annotation " + OwnerAnnotation + ")"}
	}
	kc, err := req.Env.KubeClient(ctx)
	if err == engine.ErrOffline {
		ch.Warnings = append(ch.Warnings, "offline: the node's current schedulability was not read")
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading node %s: %w", name, err)
	}
	switch {
	case !n.Spec.Unschedulable:
		// A cordon earlier in this plan will change that; only a plan in
		// isolation would be a no-op.
		if !cordonedEarlier(req) {
			ch.Action, ch.Summary, ch.Details = engine.ActionNoOp, name+" is already schedulable", nil
		}
	case n.Annotations[OwnerAnnotation] == "" && !force:
		ch.Action, ch.Summary = engine.ActionNoOp, name+" stays cordoned"
		ch.Details = []string{"it was cordoned before this run, not by runbook; set force = true to uncordon it anyway"}
	}
	return ch, nil
}

// cordonedEarlier reports whether an earlier step of the same node's phase
// cordons or drains it, so that the node will be unschedulable by then.
func cordonedEarlier(req *engine.Request) bool {
	if req.Step.Phase == nil {
		return false
	}
	for _, s := range req.Step.Phase.Steps {
		if s == req.Step {
			return false
		}
		if s.Kind == "cordon" || s.Kind == "drain" {
			return true
		}
	}
	return false
}

// Apply implements engine.Kind.
func (Uncordon) Apply(context.Context, *engine.Request, *engine.Change) (cty.Value, error) {
	return cty.NilVal, &engine.ErrNotImplemented{Kind: "uncordon", What: "apply"}
}
