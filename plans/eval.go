package plans

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// SensitiveMark marks values that come from sensitive variables; they are
// never printed, journaled or logged.
const SensitiveMark = "sensitive"

// EnvPrefix is the prefix of environment variables that set plan variables.
const EnvPrefix = "RUNBOOK_VAR_"

// Inputs are the values given for a plan's variables, lowest precedence
// first: defaults, RUNBOOK_VAR_name, -var-file files in order, -var flags in
// order.
type Inputs struct {
	Vars     []string // "name=value"
	VarFiles []string
	Environ  []string // os.Environ() form
	// Prompt asks for a required variable that has no value; nil when there
	// is no terminal, and a missing variable is then an error.
	Prompt func(v *Variable) (string, error)
	// Partial leaves missing required variables unknown instead of failing:
	// `runbook validate` checks a plan without its inputs.
	Partial bool
	Now     time.Time
}

// Values is a plan with its variables and locals evaluated.
type Values struct {
	Plan   *Plan
	Vars   map[string]cty.Value
	Locals map[string]cty.Value
	Ctx    *hcl.EvalContext // var, local, runbook and the functions
	Now    time.Time
	// VarsHash identifies the variable values (sensitive ones included) for
	// the journal, without revealing them.
	VarsHash string
}

// Evaluate computes variables and locals.
func Evaluate(p *Plan, in Inputs) (*Values, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	vals := &Values{Plan: p, Vars: map[string]cty.Value{}, Locals: map[string]cty.Value{}, Now: in.Now}
	given, d := collectInputs(p, in)
	diags = append(diags, d...)
	for _, v := range p.Variables {
		val, ok := given[v.Name]
		switch {
		case ok:
		case !v.Required():
			val = v.Default
		case in.Prompt != nil:
			raw, err := in.Prompt(v)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No value for required variable", Detail: fmt.Sprintf("Reading var.%s: %v", v.Name, err), Subject: v.DeclRange.Ptr()})
				continue
			}
			var d hcl.Diagnostics
			val, d = parseRaw(v, raw, "<prompt>")
			diags = append(diags, d...)
		case in.Partial:
			val = cty.UnknownVal(v.Type)
		default:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "No value for required variable",
				Detail:  fmt.Sprintf("Variable %q has no default, and no value was given. Set it with -var %s=..., a -var-file, or %s%s.", v.Name, v.Name, EnvPrefix, v.Name),
				Subject: v.DeclRange.Ptr(),
			})
			continue
		}
		if conv, err := convert.Convert(val, v.Type); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable", Detail: fmt.Sprintf("var.%s must be %s: %s.", v.Name, typeexpr.TypeString(v.Type), err), Subject: v.DeclRange.Ptr()})
			continue
		} else {
			val = conv
		}
		if v.Sensitive {
			val = val.Mark(SensitiveMark)
		}
		vals.Vars[v.Name] = val
	}
	if diags.HasErrors() {
		return vals, diags
	}
	vals.VarsHash = hashVars(vals.Vars)
	vals.Ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":     cty.ObjectVal(vals.Vars),
			"runbook": cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(p.RunbookName())}),
		},
		Functions: Functions(p.BaseDir, in.Now),
	}
	diags = append(diags, vals.checkValidations()...)
	diags = append(diags, vals.evalLocals()...)
	return vals, diags
}

// RunbookName is the runbook block's name, or the first file's base name.
func (p *Plan) RunbookName() string {
	if p.Runbook != nil {
		return p.Runbook.Name
	}
	if len(p.Filenames) > 0 {
		base := p.Filenames[0]
		if i := strings.LastIndexByte(base, '/'); i >= 0 {
			base = base[i+1:]
		}
		return strings.TrimSuffix(base, ".hcl")
	}
	return "runbook"
}

func (vals *Values) checkValidations() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, v := range vals.Plan.Variables {
		val := vals.Vars[v.Name]
		if !val.IsWhollyKnown() {
			continue
		}
		ctx := vals.Ctx.NewChild()
		ctx.Variables = map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.Name: val})}
		for _, rule := range v.Validations {
			ok, d := rule.Condition.Value(ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			ok, _ = ok.Unmark()
			if ok.IsKnown() && !ok.IsNull() && ok.Type() == cty.Bool && ok.False() {
				msg, d := rule.ErrorMessage.Value(ctx)
				text := "The value is not valid."
				if !d.HasErrors() {
					if msg, _ = msg.Unmark(); msg.Type() == cty.String && msg.IsKnown() && !msg.IsNull() {
						text = msg.AsString()
					}
				}
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable " + v.Name, Detail: text, Subject: rule.Condition.Range().Ptr()})
			}
		}
	}
	return diags
}

func (vals *Values) evalLocals() hcl.Diagnostics {
	var diags hcl.Diagnostics
	pending := append([]*Local{}, vals.Plan.Locals...)
	// Locals form a DAG (cycles were reported by Parse): evaluate those whose
	// dependencies are ready until none is left.
	for len(pending) > 0 {
		progressed := false
		var next []*Local
		for _, l := range pending {
			ready := true
			for _, tr := range l.Expr.Variables() {
				if tr.RootName() == "local" && len(tr) > 1 {
					if _, ok := vals.Locals[attrName(tr[1])]; !ok {
						ready = false
					}
				}
			}
			if !ready {
				next = append(next, l)
				continue
			}
			v, d := l.Expr.Value(vals.Ctx)
			diags = append(diags, d...)
			if d.HasErrors() {
				v = cty.DynamicVal
			}
			vals.Locals[l.Name] = v
			vals.Ctx.Variables["local"] = cty.ObjectVal(vals.Locals)
			progressed = true
		}
		if !progressed {
			for _, l := range next {
				vals.Locals[l.Name] = cty.DynamicVal
			}
			break
		}
		pending = next
	}
	vals.Ctx.Variables["local"] = cty.ObjectVal(vals.Locals)
	return diags
}

func collectInputs(p *Plan, in Inputs) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	given := map[string]cty.Value{}
	env := append([]string{}, in.Environ...)
	sort.Strings(env)
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvPrefix) {
			continue
		}
		name, raw, _ := strings.Cut(strings.TrimPrefix(kv, EnvPrefix), "=")
		v := p.Variable(name)
		if v == nil {
			continue // the environment may hold variables of other plans
		}
		val, d := parseRaw(v, raw, EnvPrefix+name)
		diags = append(diags, d...)
		given[name] = val
	}
	for _, fn := range in.VarFiles {
		vals, d := readVarFile(p, fn)
		diags = append(diags, d...)
		for k, v := range vals {
			given[k] = v
		}
	}
	for _, kv := range in.Vars {
		name, raw, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid -var option", Detail: fmt.Sprintf("%q is not of the form NAME=VALUE.", kv)})
			continue
		}
		v := p.Variable(name)
		if v == nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Value for undeclared variable", Detail: fmt.Sprintf("-var %s=...: the plan declares no variable %q.%s", name, name, didYouMean(name, variableNames(p)))})
			continue
		}
		val, d := parseRaw(v, raw, "-var "+name)
		diags = append(diags, d...)
		given[name] = val
	}
	return given, diags
}

func variableNames(p *Plan) []string {
	var out []string
	for _, v := range p.Variables {
		out = append(out, v.Name)
	}
	return out
}

// parseRaw reads a value given on the command line or in the environment: a
// string variable takes it as it is, others parse it as an HCL expression
// (`-var 'nodes=["a","b"]'`), as terraform does.
func parseRaw(v *Variable, raw, source string) (cty.Value, hcl.Diagnostics) {
	if v.Type == cty.String || v.Type == cty.DynamicPseudoType {
		return cty.StringVal(raw), nil
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), source, hcl.InitialPos)
	if diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	val, diags := expr.Value(nil)
	if diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	return val, nil
}

func readVarFile(p *Plan, fn string) (map[string]cty.Value, hcl.Diagnostics) {
	parser := hclparse.NewParser()
	var f *hcl.File
	var diags hcl.Diagnostics
	if _, err := os.Stat(fn); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read variables file", Detail: err.Error()}}
	}
	if strings.HasSuffix(fn, ".json") {
		f, diags = parser.ParseJSONFile(fn)
	} else {
		f, diags = parser.ParseHCLFile(fn)
	}
	for k, v := range parser.Files() {
		p.Files[k] = v
	}
	if diags.HasErrors() {
		return nil, diags
	}
	attrs, d := f.Body.JustAttributes()
	diags = append(diags, d...)
	out := map[string]cty.Value{}
	for name, a := range attrs {
		if p.Variable(name) == nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Value for undeclared variable", Detail: fmt.Sprintf("The plan declares no variable %q; the value is ignored.", name), Subject: a.NameRange.Ptr()})
			continue
		}
		v, d := a.Expr.Value(nil)
		diags = append(diags, d...)
		out[name] = v
	}
	return out, diags
}

func hashVars(vars map[string]cty.Value) string {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		v, _ := vars[n].UnmarkDeep()
		fmt.Fprintf(h, "%s=", n)
		if v.IsWhollyKnown() {
			b, err := ctyjson.Marshal(v, v.Type())
			if err == nil {
				h.Write(b)
			}
		} else {
			h.Write([]byte("(unknown)"))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Eval evaluates an expression in the plan's root context (var, local).
func (vals *Values) Eval(e hcl.Expression, ty cty.Type) (cty.Value, hcl.Diagnostics) {
	return EvalIn(vals.Ctx, e, ty)
}

// EvalIn evaluates and converts an expression; a nil expression is null.
func EvalIn(ctx *hcl.EvalContext, e hcl.Expression, ty cty.Type) (cty.Value, hcl.Diagnostics) {
	if e == nil {
		return cty.NullVal(ty), nil
	}
	v, diags := e.Value(ctx)
	if diags.HasErrors() {
		return cty.UnknownVal(ty), diags
	}
	conv, err := convert.Convert(v, ty)
	if err != nil {
		return cty.UnknownVal(ty), hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Incorrect value type", Detail: fmt.Sprintf("Want %s: %s.", typeexpr.TypeString(ty), err), Subject: e.Range().Ptr(), Expression: e, EvalContext: ctx}}
	}
	return conv, nil
}
