package plans

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// OnFailure policies.
const (
	OnFailureAbort    = "abort"
	OnFailureContinue = "continue"
	OnFailureRevert   = "revert"
)

// StepConfig is a step's arguments evaluated for one instance.
type StepConfig struct {
	Args       cty.Value // the kind's arguments, unmarked; may hold unknowns
	Secrets    []string  // strings that came from sensitive values: mask them
	Timeout    time.Duration
	Retries    int
	RetryDelay time.Duration
	// When is true, false, or unknown (decided at apply time).
	When      cty.Value
	OnFailure string
	Confirm   bool
	Comment   string
}

// DefaultStepTimeout bounds a step whose plan gives no timeout: nothing
// waits forever.
const DefaultStepTimeout = 10 * time.Minute

// Decode evaluates the step's arguments in ctx and checks them against the
// kind's schema, formats and checks.
func (s *Step) Decode(ctx *hcl.EvalContext) (*StepConfig, hcl.Diagnostics) {
	cfg := &StepConfig{Timeout: DefaultStepTimeout, RetryDelay: 5 * time.Second, When: cty.True, OnFailure: OnFailureAbort}
	args, diags := hcldec.Decode(s.Body, s.Schema.Spec(), ctx)
	if diags.HasErrors() {
		return cfg, diags
	}
	if args.ContainsMarked() {
		var paths []cty.PathValueMarks
		args, paths = args.UnmarkDeepWithPaths()
		for _, pm := range paths {
			v, err := pm.Path.Apply(args)
			if err == nil {
				cfg.Secrets = append(cfg.Secrets, secretStrings(v)...)
			}
		}
	}
	cfg.Args = args
	diags = append(diags, s.checkArgs(args)...)

	var d hcl.Diagnostics
	if s.Timeout != nil {
		cfg.Timeout, d = durationArg(ctx, s.Timeout, "timeout")
		diags = append(diags, d...)
	}
	if s.RetryDelay != nil {
		cfg.RetryDelay, d = durationArg(ctx, s.RetryDelay, "retry_delay")
		diags = append(diags, d...)
	}
	if s.Retries != nil {
		v, d := EvalIn(ctx, s.Retries, cty.Number)
		diags = append(diags, d...)
		if v, _ = v.Unmark(); !d.HasErrors() && v.IsKnown() && !v.IsNull() {
			f, _ := v.AsBigFloat().Float64()
			if f < 0 || f != math.Trunc(f) || f > 100 {
				diags = append(diags, errAt(s.Retries, "Invalid retries", "retries is a whole number from 0 to 100."))
			} else {
				cfg.Retries = int(f)
			}
		}
	}
	if s.When != nil {
		v, d := EvalIn(ctx, s.When, cty.Bool)
		diags = append(diags, d...)
		v, _ = v.Unmark()
		if v.IsKnown() && v.IsNull() {
			diags = append(diags, errAt(s.When, "Invalid when", "when must be true or false, not null."))
			v = cty.False
		}
		cfg.When = v
	}
	if s.OnFailure != nil {
		v, d := EvalIn(ctx, s.OnFailure, cty.String)
		diags = append(diags, d...)
		if v, _ = v.Unmark(); !d.HasErrors() && v.IsKnown() && !v.IsNull() {
			cfg.OnFailure = v.AsString()
			switch cfg.OnFailure {
			case OnFailureAbort:
			case OnFailureContinue:
				if s.Schema.NoContinue {
					diags = append(diags, errAt(s.OnFailure, "on_failure = \"continue\" not allowed", fmt.Sprintf("A failed %s step leaves the node in a state later steps were not planned for, so the run cannot go on past it. Use \"abort\".", s.Kind)))
				}
			case OnFailureRevert:
				if !s.Schema.Revertible {
					diags = append(diags, errAt(s.OnFailure, "on_failure = \"revert\" not supported", fmt.Sprintf("A %s step cannot be reverted. Use \"abort\" or \"continue\".", s.Kind)))
				}
			default:
				diags = append(diags, errAt(s.OnFailure, "Invalid on_failure", fmt.Sprintf("%q: use \"abort\", \"continue\" or \"revert\".", cfg.OnFailure)))
			}
		}
	}
	if s.Confirm != nil {
		v, d := EvalIn(ctx, s.Confirm, cty.Bool)
		diags = append(diags, d...)
		if v, _ = v.Unmark(); !d.HasErrors() && v.IsKnown() && !v.IsNull() {
			cfg.Confirm = v.True()
		}
	}
	if s.Comment != nil {
		v, d := EvalIn(ctx, s.Comment, cty.String)
		diags = append(diags, d...)
		if v, _ = v.Unmark(); !d.HasErrors() && v.IsKnown() && !v.IsNull() {
			cfg.Comment = v.AsString()
		}
	}
	return cfg, diags
}

func durationArg(ctx *hcl.EvalContext, e hcl.Expression, name string) (time.Duration, hcl.Diagnostics) {
	v, diags := EvalIn(ctx, e, cty.String)
	v, _ = v.Unmark()
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() {
		return 0, diags
	}
	d, err := time.ParseDuration(v.AsString())
	if err != nil || d <= 0 {
		return 0, append(diags, errAt(e, "Invalid duration", fmt.Sprintf("%s: %q is not a positive duration; use a number and a unit, such as \"30s\", \"5m\" or \"1h30m\".", name, v.AsString())))
	}
	return d, diags
}

// checkArgs applies formats, allowed values and the kind's own checks to the
// known parts of the arguments.
func (s *Step) checkArgs(args cty.Value) hcl.Diagnostics {
	var diags hcl.Diagnostics
	spec := s.Schema.Spec().(hcldec.ObjectSpec)
	rangeOf := func(arg string) *hcl.Range {
		if as, ok := spec[arg]; ok {
			r := hcldec.SourceRange(s.Body, as)
			if r.Filename != "" {
				return &r
			}
		}
		return s.DeclRange.Ptr()
	}
	for _, a := range s.Schema.Args {
		v := args.GetAttr(a.Name)
		if v.IsNull() || !v.IsKnown() {
			continue
		}
		if a.Format != FormatNone && v.Type() == cty.String {
			if err := CheckFormat(a.Format, v.AsString()); err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid " + a.Name, Detail: err.Error() + ".", Subject: rangeOf(a.Name)})
			}
		}
		if len(a.OneOf) > 0 && v.Type() == cty.String && !contains(a.OneOf, v.AsString()) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid " + a.Name, Detail: fmt.Sprintf("%q is not one of: %s.%s", v.AsString(), strings.Join(a.OneOf, ", "), didYouMean(v.AsString(), a.OneOf)), Subject: rangeOf(a.Name)})
		}
	}
	if s.Schema.Check != nil && !diags.HasErrors() {
		for _, e := range s.Schema.Check(args) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: e.Summary, Detail: e.Detail, Subject: rangeOf(e.Arg)})
		}
	}
	return diags
}

func secretStrings(v cty.Value) []string {
	var out []string
	if !v.IsKnown() || v.IsNull() {
		return nil
	}
	switch {
	case v.Type() == cty.String:
		if s := v.AsString(); s != "" {
			out = append(out, s)
		}
	case v.Type().IsPrimitiveType():
		out = append(out, v.GoString())
	case v.CanIterateElements():
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, secretStrings(e)...)
		}
	}
	return out
}

// Mask replaces every secret in s with "(sensitive)".
func Mask(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "(sensitive)")
		}
	}
	return s
}
