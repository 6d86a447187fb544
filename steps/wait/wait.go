// Package wait implements the gates of a rolling plan: wait_node (a node is
// Ready with a fresh heartbeat, optionally at a kubelet version) and
// wait_workloads (the disruption a drain caused has healed). Both only read
// the cluster and are always bounded by the step's timeout.
package wait

import (
	"context"
	"fmt"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node is the wait_node kind.
type Node struct{}

// Workloads is the wait_workloads kind.
type Workloads struct{}

var nodeSchema = &plans.KindSchema{
	Name:    "wait_node",
	Summary: "Wait until a node is Ready with a heartbeat newer than the step's start, optionally with its kubelet at a version.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "node", Type: cty.String, Doc: "Node name; inside a phase, the phase's node by default."},
		{Name: "kubelet_version", Type: cty.String, Format: plans.FormatVersion, Doc: "Also wait until the node reports this kubelet version."},
	},
	Outputs: []plans.OutputSchema{{Name: "kubelet_version", Type: cty.String, Doc: "The kubelet version the node reports."}},
}

var workloadsSchema = &plans.KindSchema{
	Name:    "wait_workloads",
	Summary: "Wait until the PodDisruptionBudgets a drain touched are back to their healthy counts and Deployments, StatefulSets and DaemonSets are available.",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "namespaces", Type: cty.List(cty.String), Doc: "Namespaces whose workloads must be available; all when unset."},
		{Name: "selector", Type: cty.String, Format: plans.FormatSelector, Doc: "Only workloads with these labels."},
		{Name: "pdb_healthy", Type: cty.Map(cty.Number), Doc: "Healthy pods each PDB (\"ns/name\") must have again, e.g. a drain's pdb_healthy output; PDBs not named must have all their expected pods healthy."},
	},
}

func (Node) Schema() *plans.KindSchema      { return nodeSchema }
func (Workloads) Schema() *plans.KindSchema { return workloadsSchema }

// Plan implements engine.Kind.
func (Node) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	name := req.NodeName()
	s := fmt.Sprintf("wait until %s is Ready with a heartbeat newer than the step's start", name)
	want := req.Args.String("kubelet_version")
	if want != "" {
		v, err := plans.ParseVersion(want)
		if err == nil {
			want = "v" + v.String()
		}
		s += " and kubelet " + want
	}
	ch := &engine.Change{Action: engine.ActionRead, Summary: s, Details: []string{fmt.Sprintf("gives up after %s and reports the node's conditions", req.Config.Timeout)}}
	kc, err := req.Env.KubeClient(ctx)
	if err == engine.ErrOffline {
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading node %s: %w", name, err)
	}
	ch.Details = append(ch.Details, "now: kubelet "+n.Status.NodeInfo.KubeletVersion+", "+Conditions(n.Status.Conditions))
	return ch, nil
}

// Conditions renders a node's conditions compactly: "Ready=True (KubeletReady), ...".
func Conditions(cs []corev1.NodeCondition) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		p := string(c.Type) + "=" + string(c.Status)
		if c.Reason != "" {
			p += " (" + c.Reason + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "no conditions reported"
	}
	return strings.Join(parts, ", ")
}

// Plan implements engine.Kind.
func (Workloads) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	ns := req.Args.Strings("namespaces")
	where := "all namespaces"
	if len(ns) > 0 {
		where = "namespaces " + strings.Join(ns, ", ")
	}
	return &engine.Change{Action: engine.ActionRead,
		Summary: "wait until the PDBs drained earlier are healthy again and workloads in " + where + " are available",
		Details: []string{fmt.Sprintf("gives up after %s naming what is not available", req.Config.Timeout)}}, nil
}
