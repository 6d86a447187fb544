package plans

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
)

// NodeAttrs are the attributes of each.node and of the nodes in an inventory.
var NodeAttrs = []string{"name", "address", "labels", "index", "roles"}

// scope says which roots an expression may refer to.
type scope struct {
	what      string // for messages: "a local value", "a step argument"
	inventory bool
	steps     bool
	each      bool
	step      *Step // the step whose arguments are checked
}

func (b *builder) checkReferences() {
	p := b.plan
	base := scope{what: "this expression"}
	for _, l := range p.Locals {
		b.checkExpr(l.Expr, scope{what: "a local value"})
	}
	b.checkLocalCycles()
	if p.Cluster != nil {
		b.checkExprs(base, p.Cluster.Kubeconfig, p.Cluster.Context)
	}
	if p.SSH != nil {
		b.checkAttrs(base, p.SSH.Attrs)
	}
	if p.Journal != nil {
		b.checkAttrs(base, p.Journal.Attrs)
	}
	for _, n := range p.Notify {
		b.checkAttrs(base, n.Attrs)
	}
	if p.Drill != nil {
		b.checkAttrs(base, p.Drill.Attrs)
		for _, e := range p.Drill.ExpectObjects {
			b.checkAttrs(base, e.Attrs)
		}
	}
	for _, inv := range p.Inventories {
		b.checkExprs(scope{what: "an inventory"}, inv.Selector, inv.Nodes, inv.Address)
		if inv.SSH != nil {
			b.checkAttrs(base, inv.SSH.Attrs)
		}
	}
	for _, it := range p.Items {
		switch it := it.(type) {
		case *Phase:
			ps := scope{what: "a phase's node set", inventory: true}
			b.checkExprs(ps, it.Nodes)
			if it.Rolling != nil {
				b.checkExprs(scope{what: "a rolling block"}, it.Rolling.Batch, it.Rolling.MaxFailed)
			}
			for _, s := range it.Steps {
				b.checkStep(s)
			}
		case *Step:
			b.checkStep(it)
		}
	}
}

func (b *builder) checkStep(s *Step) {
	sc := scope{what: "a step argument", steps: true, each: s.Phase != nil, step: s}
	trs := hcldec.Variables(s.Body, s.Schema.Spec())
	for _, e := range []hcl.Expression{s.Timeout, s.Retries, s.RetryDelay, s.When, s.OnFailure, s.Confirm, s.Comment} {
		if e != nil {
			trs = append(trs, e.Variables()...)
		}
	}
	for _, tr := range trs {
		switch tr.RootName() {
		case "step":
			s.UsesSteps = true
		case "each":
			s.UsesEach = true
		}
		b.checkTraversal(tr, sc)
	}
}

func (b *builder) checkAttrs(sc scope, attrs map[string]*hcl.Attribute) {
	for _, a := range attrs {
		b.checkExpr(a.Expr, sc)
	}
}

func (b *builder) checkExprs(sc scope, exprs ...hcl.Expression) {
	for _, e := range exprs {
		if e != nil {
			b.checkExpr(e, sc)
		}
	}
}

func (b *builder) checkExpr(e hcl.Expression, sc scope) {
	for _, tr := range e.Variables() {
		b.checkTraversal(tr, sc)
	}
}

func (b *builder) refError(tr hcl.Traversal, summary, detail string, args ...any) {
	b.errorf(tr.SourceRange().Ptr(), summary, detail, args...)
}

func (b *builder) checkTraversal(tr hcl.Traversal, sc scope) {
	p := b.plan
	root := tr.RootName()
	second := ""
	if len(tr) > 1 {
		second = attrName(tr[1])
	}
	switch root {
	case "var":
		if second == "" {
			b.refError(tr, "Invalid reference", "Refer to a variable as var.NAME.")
		} else if p.Variable(second) == nil {
			b.refError(tr, "Reference to undeclared variable", "No variable named %q is declared.%s", second, didYouMean(second, b.declared("variable")))
		}
	case "local":
		if second == "" {
			b.refError(tr, "Invalid reference", "Refer to a local value as local.NAME.")
		} else if _, ok := b.names["local."+second]; !ok {
			b.refError(tr, "Reference to undeclared local value", "No local value named %q is declared.%s", second, didYouMean(second, b.declared("local")))
		}
	case "inventory":
		switch {
		case !sc.inventory:
			b.refError(tr, "Inventory not available here", "Inventories are resolved against the cluster when the plan runs; only a phase's nodes argument may refer to them, not %s.", sc.what)
		case second == "":
			b.refError(tr, "Invalid reference", "Refer to an inventory as inventory.NAME.")
		case p.Inventory(second) == nil:
			b.refError(tr, "Reference to undeclared inventory", "No inventory named %q is declared.%s", second, didYouMean(second, b.declared("inventory")))
		}
	case "each":
		switch {
		case !sc.each:
			b.refError(tr, "each is not available here", "each.node exists only inside a phase's steps, where the phase goes through its nodes.")
		case second != "node":
			b.refError(tr, "Invalid reference", "each has one attribute, node: each.node.name, each.node.address, each.node.labels, each.node.index.")
		case len(tr) > 2:
			if a := attrName(tr[2]); !contains(NodeAttrs, a) {
				b.refError(tr, "Unsupported attribute", "each.node has no attribute %q; it has %s.%s", a, strings.Join(NodeAttrs, ", "), didYouMean(a, NodeAttrs))
			}
		}
	case "step":
		if !sc.steps {
			b.refError(tr, "Step outputs not available here", "Step outputs exist only while the plan runs; %s cannot use them.", sc.what)
			return
		}
		if second == "" {
			b.refError(tr, "Invalid reference", "Refer to a step's output as step.NAME.OUTPUT.")
			return
		}
		b.checkStepRef(tr, sc.step, second)
	case "runbook":
		if second != "" && second != "name" {
			b.refError(tr, "Unsupported attribute", "runbook has one attribute, name.")
		}
	default:
		roots := []string{"var", "local", "runbook"}
		if sc.inventory {
			roots = append(roots, "inventory")
		}
		if sc.each {
			roots = append(roots, "each")
		}
		if sc.steps {
			roots = append(roots, "step")
		}
		b.refError(tr, "Unknown reference", "There is nothing named %q here; %s may refer to %s.%s", root, sc.what, strings.Join(roots, ", "), didYouMean(root, roots))
	}
}

// checkStepRef resolves step.NAME from step s: an earlier step of the same
// phase, or an earlier top-level step.
func (b *builder) checkStepRef(tr hcl.Traversal, s *Step, name string) {
	var target *Step
	for _, other := range b.plan.Steps() {
		if other.Name != name {
			continue
		}
		if other.Phase == nil || other.Phase == s.Phase {
			target = other
			break
		}
	}
	if target == nil {
		var names []string
		for _, other := range b.plan.Steps() {
			if other.Phase == nil || other.Phase == s.Phase {
				names = append(names, other.Name)
			}
		}
		msg := fmt.Sprintf("No step named %q can be seen from here: a step may use outputs of earlier steps of its own phase and of earlier top-level steps.", name)
		b.refError(tr, "Reference to undeclared step", "%s%s", msg, didYouMean(name, names))
		return
	}
	if target == s {
		b.refError(tr, "Self-referential step", "Step %q refers to its own outputs, which only exist after it has run.", name)
		return
	}
	if target.Order > s.Order {
		b.refError(tr, "Reference to a later step", "Step %q runs after step %q (declared at %s), so its outputs cannot be used here: that would be a cycle. Move it earlier, or refer to a step that runs before.", name, s.Name, target.DeclRange)
		return
	}
	if len(tr) > 2 {
		out := attrName(tr[2])
		if _, ok := target.Schema.Output(out); !ok {
			var outs []string
			for _, o := range target.Schema.Outputs {
				outs = append(outs, o.Name)
			}
			list := "none"
			if len(outs) > 0 {
				list = strings.Join(outs, ", ")
			}
			b.refError(tr, "Reference to undeclared output", "A %s step has no output %q; its outputs are: %s.%s", target.Kind, out, list, didYouMean(out, outs))
		}
	}
}

// checkLocalCycles finds locals that depend on themselves.
func (b *builder) checkLocalCycles() {
	deps := map[string][]string{}
	byName := map[string]*Local{}
	for _, l := range b.plan.Locals {
		byName[l.Name] = l
		for _, tr := range l.Expr.Variables() {
			if tr.RootName() == "local" && len(tr) > 1 {
				deps[l.Name] = append(deps[l.Name], attrName(tr[1]))
			}
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, ok := byName[d]; !ok {
				continue
			}
			switch color[d] {
			case grey:
				i := indexOf(stack, d)
				cycle := append(append([]string{}, stack[i:]...), d)
				for j := range cycle {
					cycle[j] = "local." + cycle[j]
				}
				l := byName[n]
				b.errorf(&l.DeclRange, "Cycle in local values", "These local values depend on each other: %s.", strings.Join(cycle, " -> "))
				return false
			case white:
				if !visit(d) {
					return false
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return true
	}
	for _, l := range b.plan.Locals {
		if color[l.Name] == white {
			stack = stack[:0]
			if !visit(l.Name) {
				return
			}
		}
	}
}

func (b *builder) declared(ns string) []string {
	var out []string
	for k := range b.names {
		if strings.HasPrefix(k, ns+".") {
			out = append(out, strings.TrimPrefix(k, ns+"."))
		}
	}
	sort.Strings(out)
	return out
}

func didYouMean(name string, candidates []string) string {
	if s := suggest(name, candidates); s != "" {
		return fmt.Sprintf(" Did you mean %q?", s)
	}
	return ""
}

func contains(list []string, s string) bool { return indexOf(list, s) >= 0 }

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
