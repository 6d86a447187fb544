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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
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

// Apply implements engine.Kind: it cordons the node and marks the cordon
// as this run's own.
func (Cordon) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	was, err := Set(ctx, kc, req.NodeName(), true, req.Env.RunID)
	if err != nil {
		return cty.NilVal, err
	}
	req.Emit("cordoned", "cordoned "+req.NodeName(), map[string]any{"was_unschedulable": was})
	return cty.ObjectVal(map[string]cty.Value{"was_unschedulable": cty.BoolVal(was)}), nil
}

// Revert implements engine.Reverter: it undoes a cordon this run made.
func (Cordon) Revert(ctx context.Context, req *engine.Request) error {
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return err
	}
	return RevertOwn(ctx, kc, req.NodeName(), req.Env.RunID)
}

// Set makes a node unschedulable (annotated with the owning run) or
// schedulable (removing the annotation), with a conflict-safe update. It
// returns whether the node was unschedulable before. Cordoning a node that
// is already cordoned never takes ownership of that cordon.
func Set(ctx context.Context, kc kubernetes.Interface, name string, unschedulable bool, runID string) (bool, error) {
	var was bool
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		was = n.Spec.Unschedulable
		if was == unschedulable {
			return nil
		}
		n.Spec.Unschedulable = unschedulable
		if unschedulable {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[OwnerAnnotation] = runID
		} else {
			delete(n.Annotations, OwnerAnnotation)
		}
		_, err = kc.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		verb := "uncordoning"
		if unschedulable {
			verb = "cordoning"
		}
		return was, fmt.Errorf("%s %s: %w", verb, name, err)
	}
	return was, nil
}

// RevertOwn uncordons a node only if this run's cordon is on it.
func RevertOwn(ctx context.Context, kc kubernetes.Interface, name, runID string) error {
	n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w", name, err)
	}
	if !n.Spec.Unschedulable || n.Annotations[OwnerAnnotation] != runID {
		return nil
	}
	_, err = Set(ctx, kc, name, false, runID)
	return err
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

// Apply implements engine.Kind: it uncordons the node if a runbook run
// cordoned it (or force is set); a cordon made by someone else stays.
func (Uncordon) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	name := req.NodeName()
	n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return cty.NilVal, fmt.Errorf("reading node %s: %w", name, err)
	}
	done := false
	switch {
	case !n.Spec.Unschedulable:
	case n.Annotations[OwnerAnnotation] == "" && !req.Args.Bool("force"):
		req.Emit("left_cordoned", name+" was cordoned before this run, not by runbook: left cordoned", nil)
	default:
		if _, err := Set(ctx, kc, name, false, req.Env.RunID); err != nil {
			return cty.NilVal, err
		}
		done = true
		req.Emit("uncordoned", "uncordoned "+name, nil)
	}
	return cty.ObjectVal(map[string]cty.Value{"uncordoned": cty.BoolVal(done)}), nil
}
