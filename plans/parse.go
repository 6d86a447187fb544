package plans

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "runbook", LabelNames: []string{"name"}},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "cluster"},
		{Type: "ssh"},
		{Type: "inventory", LabelNames: []string{"name"}},
		{Type: "phase", LabelNames: []string{"name"}},
		{Type: "step", LabelNames: []string{"kind", "name"}},
		{Type: "journal"},
		{Type: "notify", LabelNames: []string{"name"}},
		{Type: "drill"},
	},
}

var runbookSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "description"}}}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "condition", Required: true}, {Name: "error_message", Required: true},
}}

var clusterSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "kubeconfig"}, {Name: "context"}}}

// SSHArgs are the arguments of an ssh block.
var SSHArgs = []string{"user", "port", "identity_file", "known_hosts", "ssh_config", "bastion", "sudo", "pty", "connect_timeout", "command_timeout", "trust_on_first_use"}

var sshSchema = func() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, a := range SSHArgs {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a})
	}
	return s
}()

var inventorySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "selector"}, {Name: "nodes"}, {Name: "address"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "ssh"}},
}

var phaseSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "nodes", Required: true}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "rolling"},
		{Type: "step", LabelNames: []string{"kind", "name"}},
	},
}

var rollingSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "batch"}, {Name: "max_failed"}}}

// CommonStepArgs are accepted by every step kind.
var CommonStepArgs = []string{"timeout", "retries", "retry_delay", "when", "on_failure", "confirm", "comment"}

var stepCommonSchema = func() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, a := range CommonStepArgs {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a})
	}
	return s
}()

var journalSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "backend"}, {Name: "path"}, {Name: "namespace"}}}

var drillSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "non_production"}, {Name: "report_dir"}, {Name: "expect_ready"}, {Name: "timeout"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "expect_objects"}},
}

var expectObjectsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "backup", Required: true}, {Name: "namespaces"}, {Name: "kinds"}}}

var notifySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "url", Required: true}, {Name: "events"}, {Name: "headers"}, {Name: "timeout"}}}

// Parse reads plan files (HCL native syntax, or HCL's JSON syntax for names
// ending in .json) into a model and checks its structure, names, kinds and
// references. It does not evaluate anything that depends on inputs.
func Parse(filenames []string, kinds Kinds) (*Plan, hcl.Diagnostics) {
	srcs := make([]Source, 0, len(filenames))
	for _, fn := range filenames {
		b, err := os.ReadFile(fn)
		if err != nil {
			return &Plan{Filenames: filenames, Files: map[string]*hcl.File{}}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read plan file", Detail: err.Error()}}
		}
		srcs = append(srcs, Source{Name: fn, Bytes: b})
	}
	return ParseSources(srcs, kinds)
}

// Source is a plan file's name and content.
type Source struct {
	Name  string
	Bytes []byte
}

// ParseSources is Parse for contents already in memory.
func ParseSources(srcs []Source, kinds Kinds) (*Plan, hcl.Diagnostics) {
	p := &Plan{}
	for _, s := range srcs {
		p.Filenames = append(p.Filenames, s.Name)
	}
	parser := hclparse.NewParser()
	var diags hcl.Diagnostics
	if len(srcs) == 0 {
		p.Files = parser.Files()
		return p, diags.Append(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No plan files", Detail: "Name at least one plan file."})
	}
	p.BaseDir = filepath.Dir(srcs[0].Name)
	var bodies []hcl.Body
	for _, src := range srcs {
		var f *hcl.File
		var d hcl.Diagnostics
		if strings.HasSuffix(src.Name, ".json") {
			f, d = parser.ParseJSON(src.Bytes, src.Name)
		} else {
			f, d = parser.ParseHCL(src.Bytes, src.Name)
		}
		diags = append(diags, d...)
		if f != nil {
			bodies = append(bodies, f.Body)
		}
	}
	p.Files = parser.Files()
	if diags.HasErrors() {
		return p, diags
	}
	b := &builder{plan: p, kinds: kinds, names: map[string]hcl.Range{}}
	for _, body := range bodies {
		b.file(body)
	}
	b.checkReferences()
	return p, b.diags
}

type builder struct {
	plan  *Plan
	kinds Kinds
	diags hcl.Diagnostics
	names map[string]hcl.Range // "variable.x" etc. to first declaration
	order int
}

func (b *builder) errorf(rng *hcl.Range, summary, detail string, args ...any) {
	b.diags = append(b.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: rng})
}

// declare records a name in a namespace and reports a duplicate.
func (b *builder) declare(ns, name string, rng hcl.Range) bool {
	if !hclsyntax.ValidIdentifier(name) {
		b.errorf(&rng, "Invalid name", "%q is not a valid %s name: a name starts with a letter and contains only letters, digits, underscores and dashes.", name, strings.SplitN(ns, ".", 2)[0])
		return false
	}
	key := ns + "." + name
	if prev, ok := b.names[key]; ok {
		what := strings.SplitN(ns, ".", 2)[0]
		b.errorf(&rng, "Duplicate "+what+" name", "A %s named %q was already declared at %s. Names must be unique.", what, name, prev.String())
		return false
	}
	b.names[key] = rng
	return true
}

func (b *builder) file(body hcl.Body) {
	content, d := body.Content(fileSchema)
	b.diags = append(b.diags, d...)
	for _, blk := range content.Blocks {
		switch blk.Type {
		case "runbook":
			b.runbook(blk)
		case "variable":
			b.variable(blk)
		case "locals":
			b.locals(blk)
		case "cluster":
			if b.plan.Cluster != nil {
				b.errorf(&blk.DefRange, "Duplicate cluster block", "Only one cluster block is allowed; the first is at %s.", b.plan.Cluster.DeclRange)
				continue
			}
			c, d := blk.Body.Content(clusterSchema)
			b.diags = append(b.diags, d...)
			b.plan.Cluster = &Cluster{Kubeconfig: attrExpr(c, "kubeconfig"), Context: attrExpr(c, "context"), DeclRange: blk.DefRange}
		case "ssh":
			if b.plan.SSH != nil {
				b.errorf(&blk.DefRange, "Duplicate ssh block", "Only one top-level ssh block is allowed; the first is at %s.", b.plan.SSH.DeclRange)
				continue
			}
			b.plan.SSH = b.ssh(blk)
		case "inventory":
			b.inventory(blk)
		case "phase":
			b.phase(blk)
		case "step":
			if s := b.step(blk, nil); s != nil {
				b.plan.Items = append(b.plan.Items, s)
			}
		case "journal":
			if b.plan.Journal != nil {
				b.errorf(&blk.DefRange, "Duplicate journal block", "Only one journal block is allowed; the first is at %s.", b.plan.Journal.DeclRange)
				continue
			}
			c, d := blk.Body.Content(journalSchema)
			b.diags = append(b.diags, d...)
			b.plan.Journal = &Journal{Attrs: c.Attributes, DeclRange: blk.DefRange}
		case "drill":
			if b.plan.Drill != nil {
				b.errorf(&blk.DefRange, "Duplicate drill block", "Only one drill block is allowed; the first is at %s.", b.plan.Drill.DeclRange)
				continue
			}
			b.drill(blk)
		case "notify":
			if !b.declare("notify", blk.Labels[0], blk.LabelRanges[0]) {
				continue
			}
			c, d := blk.Body.Content(notifySchema)
			b.diags = append(b.diags, d...)
			b.plan.Notify = append(b.plan.Notify, &Notify{Name: blk.Labels[0], Attrs: c.Attributes, DeclRange: blk.DefRange})
		}
	}
}

func (b *builder) drill(blk *hcl.Block) {
	c, d := blk.Body.Content(drillSchema)
	b.diags = append(b.diags, d...)
	dr := &Drill{Attrs: c.Attributes, DeclRange: blk.DefRange}
	for _, eb := range c.Blocks {
		ec, d := eb.Body.Content(expectObjectsSchema)
		b.diags = append(b.diags, d...)
		dr.ExpectObjects = append(dr.ExpectObjects, &ExpectObjects{Attrs: ec.Attributes, DeclRange: eb.DefRange})
	}
	b.plan.Drill = dr
}

func attrExpr(c *hcl.BodyContent, name string) hcl.Expression {
	if a, ok := c.Attributes[name]; ok {
		return a.Expr
	}
	return nil
}

// literalString evaluates an expression that must be a constant string.
func (b *builder) literalString(a *hcl.Attribute) string {
	v, d := a.Expr.Value(nil)
	if d.HasErrors() {
		b.errorf(a.Expr.Range().Ptr(), "Expected a literal string", "%s must be a literal string; it cannot refer to variables or call functions.", a.Name)
		return ""
	}
	v, err := convert.Convert(v, cty.String)
	if err != nil || v.IsNull() {
		b.errorf(a.Expr.Range().Ptr(), "Expected a string", "%s must be a string.", a.Name)
		return ""
	}
	return v.AsString()
}

func (b *builder) runbook(blk *hcl.Block) {
	if b.plan.Runbook != nil {
		b.errorf(&blk.DefRange, "Duplicate runbook block", "Only one runbook block is allowed; the first is at %s.", b.plan.Runbook.DeclRange)
		return
	}
	c, d := blk.Body.Content(runbookSchema)
	b.diags = append(b.diags, d...)
	r := &Runbook{Name: blk.Labels[0], DeclRange: blk.DefRange}
	if a, ok := c.Attributes["description"]; ok {
		r.Description = b.literalString(a)
	}
	b.plan.Runbook = r
}

func (b *builder) variable(blk *hcl.Block) {
	name := blk.Labels[0]
	if !b.declare("variable", name, blk.LabelRanges[0]) {
		return
	}
	c, d := blk.Body.Content(variableSchema)
	b.diags = append(b.diags, d...)
	v := &Variable{Name: name, Type: cty.DynamicPseudoType, Default: cty.NilVal, DeclRange: blk.DefRange}
	if a, ok := c.Attributes["type"]; ok {
		ty, d := typeexpr.TypeConstraint(a.Expr)
		b.diags = append(b.diags, d...)
		if !d.HasErrors() {
			v.Type = ty
		}
	}
	if a, ok := c.Attributes["description"]; ok {
		v.Description = b.literalString(a)
	}
	if a, ok := c.Attributes["sensitive"]; ok {
		val, d := a.Expr.Value(nil)
		b.diags = append(b.diags, d...)
		if !d.HasErrors() {
			if val.Type() != cty.Bool || val.IsNull() {
				b.errorf(a.Expr.Range().Ptr(), "Invalid sensitive", "sensitive must be true or false.")
			} else {
				v.Sensitive = val.True()
			}
		}
	}
	if a, ok := c.Attributes["default"]; ok {
		val, d := a.Expr.Value(nil)
		if d.HasErrors() {
			b.errorf(a.Expr.Range().Ptr(), "Invalid default value", "A variable's default must be a literal value; it cannot refer to other variables or call functions.")
		} else if conv, err := convert.Convert(val, v.Type); err != nil {
			b.errorf(a.Expr.Range().Ptr(), "Invalid default value for variable", "This default does not match the variable's type %s: %s.", typeexpr.TypeString(v.Type), err)
		} else {
			v.Default = conv
		}
	}
	for _, vb := range c.Blocks {
		vc, d := vb.Body.Content(validationSchema)
		b.diags = append(b.diags, d...)
		if d.HasErrors() {
			continue
		}
		val := &Validation{Condition: vc.Attributes["condition"].Expr, ErrorMessage: vc.Attributes["error_message"].Expr, DeclRange: vb.DefRange}
		for _, tr := range val.Condition.Variables() {
			if tr.RootName() != "var" || len(tr) < 2 || attrName(tr[1]) != name {
				b.errorf(tr.SourceRange().Ptr(), "Invalid reference in variable validation", "A validation condition may only refer to the variable it validates, var.%s.", name)
			}
		}
		v.Validations = append(v.Validations, val)
	}
	b.plan.Variables = append(b.plan.Variables, v)
}

func (b *builder) locals(blk *hcl.Block) {
	attrs, d := blk.Body.JustAttributes()
	b.diags = append(b.diags, d...)
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	// JustAttributes returns a map; keep source order.
	sort.Slice(names, func(i, j int) bool {
		return attrs[names[i]].Range.Start.Byte < attrs[names[j]].Range.Start.Byte
	})
	for _, n := range names {
		a := attrs[n]
		if !b.declare("local", n, a.NameRange) {
			continue
		}
		b.plan.Locals = append(b.plan.Locals, &Local{Name: n, Expr: a.Expr, DeclRange: a.Range})
	}
}

func (b *builder) ssh(blk *hcl.Block) *SSH {
	c, d := blk.Body.Content(sshSchema)
	b.diags = append(b.diags, d...)
	return &SSH{Attrs: c.Attributes, DeclRange: blk.DefRange}
}

func (b *builder) inventory(blk *hcl.Block) {
	name := blk.Labels[0]
	if !b.declare("inventory", name, blk.LabelRanges[0]) {
		return
	}
	c, d := blk.Body.Content(inventorySchema)
	b.diags = append(b.diags, d...)
	inv := &Inventory{Name: name, Selector: attrExpr(c, "selector"), Nodes: attrExpr(c, "nodes"), Address: attrExpr(c, "address"), DeclRange: blk.DefRange}
	switch {
	case inv.Selector != nil && inv.Nodes != nil:
		b.errorf(&blk.DefRange, "Conflicting inventory arguments", "Inventory %q sets both selector and nodes: use selector to take nodes from the cluster, or nodes to list them.", name)
	case inv.Selector == nil && inv.Nodes == nil:
		b.errorf(&blk.DefRange, "Empty inventory", "Inventory %q needs selector (a label selector, \"\" for every node) or nodes (a static list).", name)
	}
	for _, sb := range c.Blocks {
		if inv.SSH != nil {
			b.errorf(&sb.DefRange, "Duplicate ssh block", "Inventory %q already has an ssh block.", name)
			continue
		}
		inv.SSH = b.ssh(sb)
	}
	b.plan.Inventories = append(b.plan.Inventories, inv)
}

func (b *builder) phase(blk *hcl.Block) {
	name := blk.Labels[0]
	if !b.declare("phase", name, blk.LabelRanges[0]) {
		return
	}
	c, d := blk.Body.Content(phaseSchema)
	b.diags = append(b.diags, d...)
	ph := &Phase{Name: name, DeclRange: blk.DefRange}
	if a, ok := c.Attributes["nodes"]; ok {
		ph.Nodes = a.Expr
	}
	for _, sb := range c.Blocks {
		switch sb.Type {
		case "rolling":
			if ph.Rolling != nil {
				b.errorf(&sb.DefRange, "Duplicate rolling block", "Phase %q already has a rolling block.", name)
				continue
			}
			rc, d := sb.Body.Content(rollingSchema)
			b.diags = append(b.diags, d...)
			ph.Rolling = &Rolling{Batch: attrExpr(rc, "batch"), MaxFailed: attrExpr(rc, "max_failed"), DeclRange: sb.DefRange}
		case "step":
			if s := b.step(sb, ph); s != nil {
				ph.Steps = append(ph.Steps, s)
			}
		}
	}
	if len(ph.Steps) == 0 {
		b.errorf(&blk.DefRange, "Empty phase", "Phase %q has no steps.", name)
	}
	b.plan.Items = append(b.plan.Items, ph)
}

func (b *builder) step(blk *hcl.Block, ph *Phase) *Step {
	kind, name := blk.Labels[0], blk.Labels[1]
	ns := "step"
	if ph != nil {
		ns = "step.phase " + ph.Name
		if prev, ok := b.names["step."+name]; ok {
			b.errorf(&blk.LabelRanges[1], "Duplicate step name", "A top-level step named %q was declared at %s; a phase's step may not shadow it.", name, prev)
			return nil
		}
	}
	if !b.declare(ns, name, blk.LabelRanges[1]) {
		return nil
	}
	schema, ok := b.kinds.Schema(kind)
	if !ok {
		detail := fmt.Sprintf("There is no step kind named %q.", kind)
		if s := suggest(kind, b.kinds.Names()); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		detail += " `runbook kinds` lists them all."
		b.diags = append(b.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown step kind", Detail: detail, Subject: &blk.LabelRanges[0]})
		return nil
	}
	if schema.Target == TargetNode && ph == nil {
		b.errorf(&blk.LabelRanges[0], "Node step outside a phase", "A %s step acts on one node, so it must be inside a phase, where each.node names the node.", kind)
		return nil
	}
	c, remain, d := blk.Body.PartialContent(stepCommonSchema)
	b.diags = append(b.diags, d...)
	s := &Step{
		Kind: kind, Name: name, Schema: schema, Phase: ph, Order: b.order, Body: remain,
		Timeout: attrExpr(c, "timeout"), Retries: attrExpr(c, "retries"), RetryDelay: attrExpr(c, "retry_delay"),
		When: attrExpr(c, "when"), OnFailure: attrExpr(c, "on_failure"), Confirm: attrExpr(c, "confirm"),
		Comment:   attrExpr(c, "comment"),
		DeclRange: blk.DefRange, KindRange: blk.LabelRanges[0], NameRange: blk.LabelRanges[1],
	}
	b.order++
	return s
}

// suggest returns the candidate closest to name, if it is close enough to be
// a likely typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 1<<30
	for _, c := range candidates {
		d := levenshtein.Distance(name, c, nil)
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist <= 3 || (best != "" && (strings.Contains(best, name) || strings.Contains(name, best))) {
		return best
	}
	return ""
}

func attrName(t hcl.Traverser) string {
	switch t := t.(type) {
	case hcl.TraverseAttr:
		return t.Name
	case hcl.TraverseIndex:
		if t.Key.Type() == cty.String && t.Key.IsKnown() && !t.Key.IsNull() {
			return t.Key.AsString()
		}
	}
	return ""
}
