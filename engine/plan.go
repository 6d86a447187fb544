package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// PlannedStep is one step instance with what it would do.
type PlannedStep struct {
	Address string
	Step    *plans.Step
	Node    *plans.Node
	Batch   int // 1-based batch number inside its phase; 0 at top level
	Config  *plans.StepConfig
	Change  *Change
	// Skip says why the step will not run (when = false); empty otherwise.
	Skip string
	// Conditional is set when `when` is only known after apply.
	Conditional bool
	Err         error
	Diags       hcl.Diagnostics
}

// Failed reports whether the step could not be planned or would fail.
func (ps *PlannedStep) Failed() bool { return ps.Err != nil || ps.Diags.HasErrors() }

// PlanResult is the dry-run of a whole program.
type PlanResult struct {
	Program *Program
	Steps   []*PlannedStep // in execution order
	Diags   hcl.Diagnostics
}

// HasChanges reports whether any step would change something.
func (r *PlanResult) HasChanges() bool {
	for _, s := range r.Steps {
		if s.Skip == "" && s.Change != nil && s.Change.Action == ActionChange {
			return true
		}
	}
	return false
}

// Failed reports whether the plan has errors: diagnostics or steps that
// could not be planned.
func (r *PlanResult) Failed() bool {
	if r.Diags.HasErrors() {
		return true
	}
	for _, s := range r.Steps {
		if s.Failed() {
			return true
		}
	}
	return false
}

// Planner runs the read-only walk.
type Planner struct {
	Kinds *Registry
	Env   *Env
	// Parallel bounds how many nodes of a phase are planned at once (their
	// plans may probe the node over SSH); 0 means 16.
	Parallel int
}

// Plan asks every step instance what it would do. Steps see the outputs of
// earlier steps as far as those are known before apply.
func (p *Planner) Plan(ctx context.Context, prog *Program) *PlanResult {
	res := &PlanResult{Program: prog}
	top := map[string]cty.Value{}
	for _, u := range prog.Units {
		if u.Step != nil {
			ps := p.planOne(ctx, prog, u.Step, nil, cty.NilVal, 0, top)
			res.Steps = append(res.Steps, ps)
			top[u.Step.Name] = outputsOf(ps)
			continue
		}
		perNode := make([][]*PlannedStep, len(u.Nodes))
		par := p.Parallel
		if par <= 0 {
			par = 16
		}
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		i := 0
		for b, batch := range u.Batches {
			for j := range batch {
				node := &batch[j]
				idx := i
				i++
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					outs := make(map[string]cty.Value, len(top)+len(u.Phase.Steps))
					for k, v := range top {
						outs[k] = v
					}
					each := cty.ObjectVal(map[string]cty.Value{"node": node.Value()})
					for _, s := range u.Phase.Steps {
						ps := p.planOne(ctx, prog, s, node, each, b+1, outs)
						perNode[idx] = append(perNode[idx], ps)
						outs[s.Name] = outputsOf(ps)
					}
				}()
			}
		}
		wg.Wait()
		for _, steps := range perNode {
			res.Steps = append(res.Steps, steps...)
		}
	}
	return res
}

func outputsOf(ps *PlannedStep) cty.Value {
	if ps.Skip == "" && ps.Change != nil && ps.Change.Outputs != cty.NilVal {
		return ps.Change.Outputs
	}
	return ps.Step.Schema.UnknownOutputs()
}

func (p *Planner) planOne(ctx context.Context, prog *Program, s *plans.Step, node *plans.Node, each cty.Value, batch int, outs map[string]cty.Value) *PlannedStep {
	ps := &PlannedStep{Address: Address(s, node), Step: s, Node: node, Batch: batch}
	if !s.UsesEach {
		each = cty.NilVal
	}
	if !s.UsesSteps {
		outs = nil
	}
	ectx := stepContextWith(prog.Values.Ctx, each, outs)
	cfg, diags := s.Decode(ectx)
	ps.Config, ps.Diags = cfg, diags
	if diags.HasErrors() {
		return ps
	}
	if !cfg.When.IsKnown() {
		ps.Conditional = true
	} else if cfg.When.False() {
		ps.Skip = "when is false"
		return ps
	}
	kind, ok := p.Kinds.Kind(s.Kind)
	if !ok {
		ps.Err = fmt.Errorf("unknown step kind %q", s.Kind)
		return ps
	}
	req := &Request{Address: ps.Address, Step: s, Node: node, Args: Args{V: cfg.Args}, Config: cfg, Env: p.Env, Program: prog}
	ch, err := kind.Plan(ctx, req)
	if err != nil {
		ps.Err = err
		if errors.Is(err, ErrOffline) {
			ps.Err = fmt.Errorf("%s: %w", ps.Address, err)
		}
	}
	if ch != nil {
		maskChange(ch, cfg.Secrets)
		if ch.Outputs == cty.NilVal {
			ch.Outputs = s.Schema.UnknownOutputs()
		}
	}
	ps.Change = ch
	return ps
}

func maskChange(ch *Change, secrets []string) {
	if len(secrets) == 0 {
		return
	}
	ch.Summary = plans.Mask(ch.Summary, secrets)
	for _, l := range [][]string{ch.Commands, ch.Details, ch.Warnings, ch.Blockers} {
		for i := range l {
			l[i] = plans.Mask(l[i], secrets)
		}
	}
}

// nodeType is the type of each.node.
var nodeType = (plans.Node{}).Value().Type()

// Validate checks every step's arguments without inputs or a cluster: each
// node and the outputs of earlier steps are unknown, so what is checked is
// types, formats and the literals that are known.
func Validate(vals *plans.Values) hcl.Diagnostics {
	var diags hcl.Diagnostics
	p := vals.Plan
	_, d := vals.Cluster()
	diags = append(diags, d...)
	_, d = vals.SSHFor(nil)
	diags = append(diags, d...)
	for _, inv := range p.Inventories {
		_, d := vals.Inventory(inv)
		diags = append(diags, d...)
	}
	_, d = vals.Notifiers()
	diags = append(diags, d...)
	_, d = vals.Drill()
	diags = append(diags, d...)
	_, d = vals.Journal()
	diags = append(diags, d...)
	top := map[string]cty.Value{}
	for _, it := range p.Items {
		switch it := it.(type) {
		case *plans.Step:
			_, d := it.Decode(stepContext(vals.Ctx, nil, top))
			diags = append(diags, d...)
			top[it.Name] = it.Schema.UnknownOutputs()
		case *plans.Phase:
			if it.Rolling != nil && it.Rolling.Batch != nil {
				v, d := it.Rolling.Batch.Value(vals.Ctx)
				diags = append(diags, d...)
				if !d.HasErrors() {
					if err := plans.CheckBatch(v); err != nil {
						diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid batch", Detail: err.Error() + ".", Subject: it.Rolling.Batch.Range().Ptr()})
					}
				}
			}
			_, d := vals.MaxFailed(it)
			diags = append(diags, d...)
			outs := make(map[string]cty.Value, len(top)+len(it.Steps))
			for k, v := range top {
				outs[k] = v
			}
			ctx := vals.Ctx.NewChild()
			for _, s := range it.Steps {
				ctx.Variables = map[string]cty.Value{
					"each": cty.ObjectVal(map[string]cty.Value{"node": cty.UnknownVal(nodeType)}),
					"step": cty.ObjectVal(outs),
				}
				_, d := s.Decode(ctx)
				diags = append(diags, d...)
				outs[s.Name] = s.Schema.UnknownOutputs()
			}
		}
	}
	return diags
}
