package plans

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Plan is the static model of one or more plan files, in file order. It
// holds expressions, not values: see Evaluate.
type Plan struct {
	Files       map[string]*hcl.File // every parsed file, for diagnostic snippets
	Filenames   []string             // in the order given
	BaseDir     string               // directory of the first file; file() is relative to it
	Runbook     *Runbook
	Variables   []*Variable
	Locals      []*Local
	Cluster     *Cluster
	SSH         *SSH
	Inventories []*Inventory
	Items       []Item // top-level steps and phases, in file order
	Journal     *Journal
	Notify      []*Notify
	Drill       *Drill
}

// Runbook is the `runbook "name" {}` block.
type Runbook struct {
	Name        string
	Description string
	DeclRange   hcl.Range
}

// Variable is a `variable "name" {}` block.
type Variable struct {
	Name        string
	Type        cty.Type
	Default     cty.Value // cty.NilVal: required
	Description string
	Sensitive   bool
	Validations []*Validation
	DeclRange   hcl.Range
}

// Required reports whether the variable has no default.
func (v *Variable) Required() bool { return v.Default == cty.NilVal }

// Validation is a `validation {}` block of a variable.
type Validation struct {
	Condition    hcl.Expression
	ErrorMessage hcl.Expression
	DeclRange    hcl.Range
}

// Local is one attribute of a `locals {}` block.
type Local struct {
	Name      string
	Expr      hcl.Expression
	DeclRange hcl.Range
}

// Cluster is the `cluster {}` block: how to reach the Kubernetes API.
type Cluster struct {
	Kubeconfig hcl.Expression // nil: as kubectl (KUBECONFIG, ~/.kube/config, in-cluster)
	Context    hcl.Expression
	DeclRange  hcl.Range
}

// SSH is an `ssh {}` block: connection defaults, at top level or per
// inventory. Attrs holds the attributes that were set.
type SSH struct {
	Attrs     map[string]*hcl.Attribute
	DeclRange hcl.Range
}

// Inventory is an `inventory "name" {}` block: a set of nodes, either selected
// from the cluster or listed statically.
type Inventory struct {
	Name      string
	Selector  hcl.Expression // label selector string; nil for static inventories
	Nodes     hcl.Expression // static node list; nil for cluster inventories
	Address   hcl.Expression // which address to use: "InternalIP" (default), "ExternalIP", "Hostname" or "name"
	SSH       *SSH
	DeclRange hcl.Range
}

// Item is a top-level step or a phase.
type Item interface{ item() }

// Phase is a `phase "name" {}` block: steps that every node of a node set
// goes through, in batches.
type Phase struct {
	Name      string
	Nodes     hcl.Expression
	Rolling   *Rolling
	Steps     []*Step
	DeclRange hcl.Range
}

func (*Phase) item() {}

// Rolling is a phase's `rolling {}` block.
type Rolling struct {
	Batch     hcl.Expression // number, "20%", or a list of both; nil: 1
	MaxFailed hcl.Expression // number of nodes that may fail before the run stops; nil: 0
	DeclRange hcl.Range
}

// Step is a `step "kind" "name" {}` block.
type Step struct {
	Kind   string
	Name   string
	Schema *KindSchema
	Phase  *Phase // nil at top level
	Order  int    // position among all steps of the plan, in file order

	Body hcl.Body // the kind's arguments (common arguments removed)
	// UsesSteps and UsesEach say whether any expression of the step refers
	// to step outputs or each.node, so that contexts are built only when
	// needed (large plans have tens of thousands of step instances).
	UsesSteps, UsesEach bool

	Timeout    hcl.Expression
	Retries    hcl.Expression
	RetryDelay hcl.Expression
	When       hcl.Expression
	OnFailure  hcl.Expression
	Confirm    hcl.Expression
	Comment    hcl.Expression

	DeclRange hcl.Range
	KindRange hcl.Range
	NameRange hcl.Range
}

func (*Step) item() {}

// Address is the step's address outside any node: step.NAME or
// phase.P.step.NAME.
func (s *Step) Address() string {
	if s.Phase == nil {
		return "step." + s.Name
	}
	return "phase." + s.Phase.Name + ".step." + s.Name
}

// Journal is the `journal {}` block: where the run's journal is kept.
type Journal struct {
	Attrs     map[string]*hcl.Attribute
	DeclRange hcl.Range
}

// Drill is the `drill {}` block: what makes a plan a disaster-recovery
// drill (`runbook drill`), and what the drill must show at its end.
type Drill struct {
	Attrs         map[string]*hcl.Attribute
	ExpectObjects []*ExpectObjects
	DeclRange     hcl.Range
}

// ExpectObjects is an `expect_objects {}` block of a drill: the objects of
// a resource backup that must be in the cluster after the recovery.
type ExpectObjects struct {
	Attrs     map[string]*hcl.Attribute
	DeclRange hcl.Range
}

// Notify is a `notify "name" {}` block: a webhook that receives run events.
type Notify struct {
	Name      string
	Attrs     map[string]*hcl.Attribute
	DeclRange hcl.Range
}

// Steps returns every step of the plan in file order.
func (p *Plan) Steps() []*Step {
	var out []*Step
	for _, it := range p.Items {
		switch it := it.(type) {
		case *Step:
			out = append(out, it)
		case *Phase:
			out = append(out, it.Steps...)
		}
	}
	return out
}

// Variable returns the declared variable of that name.
func (p *Plan) Variable(name string) *Variable {
	for _, v := range p.Variables {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Inventory returns the declared inventory of that name.
func (p *Plan) Inventory(name string) *Inventory {
	for _, v := range p.Inventories {
		if v.Name == name {
			return v
		}
	}
	return nil
}
