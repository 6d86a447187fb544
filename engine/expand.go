package engine

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// Inventories resolves inventories to nodes: from the cluster, or from a
// saved node list for offline plans.
type Inventories interface {
	Resolve(ctx context.Context, spec *plans.InventorySpec) ([]plans.Node, error)
}

// Program is a plan expanded over its nodes: units in file order, each a
// top-level step or a phase with its nodes in batches.
type Program struct {
	Values      *plans.Values
	Inventories map[string][]plans.Node
	Units       []*Unit
}

// Unit is one top-level item of the plan.
type Unit struct {
	Step      *plans.Step  // a top-level step, or nil
	Phase     *plans.Phase // a phase, or nil
	Nodes     []plans.Node
	Batches   [][]plans.Node
	MaxFailed int
}

// Instances counts the step instances of the program.
func (p *Program) Instances() int {
	n := 0
	for _, u := range p.Units {
		if u.Step != nil {
			n++
		} else {
			n += len(u.Nodes) * len(u.Phase.Steps)
		}
	}
	return n
}

// Address is the address of a step instance: step.NAME for top-level steps,
// phase.P.step.NAME["node"] inside phases.
func Address(s *plans.Step, node *plans.Node) string {
	if node == nil {
		return s.Address()
	}
	return s.Address() + "[" + strconv.Quote(node.Name) + "]"
}

// Expand resolves inventories and splits phases into batches.
func Expand(ctx context.Context, vals *plans.Values, inv Inventories) (*Program, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	prog := &Program{Values: vals, Inventories: map[string][]plans.Node{}}
	for _, decl := range vals.Plan.Inventories {
		spec, d := vals.Inventory(decl)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		nodes, err := inv.Resolve(ctx, spec)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot resolve inventory " + decl.Name, Detail: err.Error(), Subject: decl.DeclRange.Ptr()})
			continue
		}
		prog.Inventories[decl.Name] = nodes
	}
	if diags.HasErrors() {
		return prog, diags
	}
	for _, it := range vals.Plan.Items {
		switch it := it.(type) {
		case *plans.Step:
			prog.Units = append(prog.Units, &Unit{Step: it})
		case *plans.Phase:
			nodes, d := vals.PhaseNodes(it, prog.Inventories)
			diags = append(diags, d...)
			sizes, d := vals.Batches(it, len(nodes))
			diags = append(diags, d...)
			mf, d := vals.MaxFailed(it)
			diags = append(diags, d...)
			u := &Unit{Phase: it, Nodes: nodes, MaxFailed: mf}
			start := 0
			for _, s := range sizes {
				u.Batches = append(u.Batches, nodes[start:start+s])
				start += s
			}
			prog.Units = append(prog.Units, u)
		}
	}
	return prog, diags
}

// StaticInventories resolves static inventories, and selector inventories
// against a fixed list of nodes (a saved `kubectl get nodes -o json`); with
// no list, selector inventories are an error. Offline plans use it.
type StaticInventories struct {
	Nodes  []ClusterNode // nil: no saved list
	Source string        // where Nodes came from, for messages
}

// ClusterNode is what an inventory needs to know about a cluster node.
type ClusterNode struct {
	Name      string
	Labels    map[string]string
	Addresses map[string]string // by type: InternalIP, ExternalIP, Hostname
}

// Resolve implements Inventories.
func (s StaticInventories) Resolve(_ context.Context, spec *plans.InventorySpec) ([]plans.Node, error) {
	if spec.Selector == nil {
		return spec.Static, nil
	}
	if s.Nodes == nil {
		return nil, fmt.Errorf("inventory %q selects nodes from the cluster (selector %q), and an offline plan cannot ask the cluster; give a saved node list with --nodes FILE (kubectl get nodes -o json > FILE)", spec.Name, spec.Selector.String())
	}
	return SelectNodes(spec, s.Nodes)
}

// SelectNodes applies an inventory's selector and address type to nodes.
func SelectNodes(spec *plans.InventorySpec, all []ClusterNode) ([]plans.Node, error) {
	var out []plans.Node
	for _, cn := range all {
		if !spec.Selector.Matches(labelSet(cn.Labels)) {
			continue
		}
		n := plans.Node{Name: cn.Name, Labels: cn.Labels, Roles: plans.RolesFromLabels(cn.Labels), Inventory: spec.Name, SSH: spec.SSH}
		switch spec.Address {
		case plans.AddressName:
			n.Address = cn.Name
		default:
			n.Address = cn.Addresses[string(spec.Address)]
			if n.Address == "" {
				return nil, fmt.Errorf("node %q has no %s address; set the inventory's address to another type, or to \"name\" to use the node name as an ssh_config Host", cn.Name, spec.Address)
			}
		}
		out = append(out, n)
	}
	plans.SortNodes(out)
	return out, nil
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// stepContext builds the evaluation context of a step instance: the plan's
// root context plus each.node and the outputs of visible earlier steps.
func stepContext(root *hcl.EvalContext, node *plans.Node, outputs map[string]cty.Value) *hcl.EvalContext {
	var each cty.Value
	if node != nil {
		each = cty.ObjectVal(map[string]cty.Value{"node": node.Value()})
	}
	return stepContextWith(root, each, outputs)
}

// stepContextWith builds the context from a prepared each value (NilVal
// outside phases).
func stepContextWith(root *hcl.EvalContext, each cty.Value, outputs map[string]cty.Value) *hcl.EvalContext {
	ctx := root.NewChild()
	vars := make(map[string]cty.Value, 2)
	if each != cty.NilVal {
		vars["each"] = each
	}
	if len(outputs) > 0 {
		vars["step"] = cty.ObjectVal(outputs)
	} else {
		vars["step"] = cty.EmptyObjectVal
	}
	ctx.Variables = vars
	return ctx
}

// Walk calls fn for every step instance in execution order.
func (p *Program) Walk(fn func(s *plans.Step, node *plans.Node)) {
	for _, u := range p.Units {
		if u.Step != nil {
			fn(u.Step, nil)
			continue
		}
		for _, b := range u.Batches {
			for i := range b {
				for _, s := range u.Phase.Steps {
					fn(s, &b[i])
				}
			}
		}
	}
}

// Decode evaluates a step instance's arguments with the outputs of earlier
// steps unknown: what a preflight can know before anything runs.
func (p *Program) Decode(s *plans.Step, node *plans.Node) (*plans.StepConfig, hcl.Diagnostics) {
	outs := map[string]cty.Value{}
	for _, other := range p.Values.Plan.Steps() {
		if other.Order < s.Order && (other.Phase == nil || other.Phase == s.Phase) {
			outs[other.Name] = other.Schema.UnknownOutputs()
		}
	}
	return s.Decode(stepContext(p.Values.Ctx, node, outs))
}
