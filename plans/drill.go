package plans

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// DrillSettings is an evaluated drill block.
type DrillSettings struct {
	// NonProduction is the plan's statement that its cluster may be broken
	// on purpose; `runbook drill` refuses a plan without it.
	NonProduction bool
	// ReportDir is where the drill's report goes ("" : beside the journal).
	ReportDir string
	// ExpectReady names workloads as namespace/kind/name (kind: deployment,
	// statefulset or daemonset) that must be Ready after the recovery.
	ExpectReady   []string
	ExpectObjects []ExpectObjectsSettings
	// Timeout bounds the wait for the expectations to hold.
	Timeout   time.Duration
	DeclRange hcl.Range
}

// ExpectObjectsSettings is an evaluated expect_objects block.
type ExpectObjectsSettings struct {
	Backup     string   // a directory written by backup_resources
	Namespaces []string // empty: every namespace in the backup
	Kinds      []string // empty: every kind in the backup; "Kind" or "group/Kind"
}

// DefaultDrillTimeout bounds a drill's expectations when the plan gives no timeout.
const DefaultDrillTimeout = 5 * time.Minute

// WorkloadKinds are the kinds expect_ready accepts.
var WorkloadKinds = []string{"daemonset", "deployment", "statefulset"}

// Drill evaluates the drill block; nil when the plan has none.
func (vals *Values) Drill() (*DrillSettings, hcl.Diagnostics) {
	dr := vals.Plan.Drill
	if dr == nil {
		return nil, nil
	}
	out := &DrillSettings{Timeout: DefaultDrillTimeout, DeclRange: dr.DeclRange}
	var diags hcl.Diagnostics
	if a := dr.Attrs["non_production"]; a != nil {
		v, d := vals.Eval(a.Expr, cty.Bool)
		diags = append(diags, d...)
		if v, _ = v.Unmark(); !d.HasErrors() && v.IsKnown() && !v.IsNull() {
			out.NonProduction = v.True()
		}
	}
	out.ReportDir, diags = vals.optString(attrExprOf(dr.Attrs, "report_dir"), diags)
	if a := dr.Attrs["timeout"]; a != nil {
		v, d := vals.Eval(a.Expr, cty.String)
		diags = append(diags, d...)
		// Unknown (validate without the variable's value) is checked when known.
		if v, _ = v.Unmark(); !d.HasErrors() && v.IsKnown() && !v.IsNull() {
			s := v.AsString()
			if t, err := time.ParseDuration(s); err == nil && t > 0 {
				out.Timeout = t
			} else {
				diags = append(diags, errAt(a.Expr, "Invalid duration", fmt.Sprintf("timeout: %q is not a positive duration such as \"5m\".", s)))
			}
		}
	}
	if a := dr.Attrs["expect_ready"]; a != nil {
		l, d := vals.stringListAttr(a)
		diags = append(diags, d...)
		for _, w := range l {
			if parts := strings.Split(w, "/"); len(parts) != 3 || parts[0] == "" || parts[2] == "" || !oneOf(strings.ToLower(parts[1]), WorkloadKinds) {
				diags = append(diags, errAt(a.Expr, "Invalid workload", fmt.Sprintf("expect_ready: %q is not namespace/kind/name with kind one of %s (e.g. \"app/deployment/web\").", w, strings.Join(WorkloadKinds, ", "))))
				continue
			}
			out.ExpectReady = append(out.ExpectReady, w)
		}
	}
	for _, e := range dr.ExpectObjects {
		var eo ExpectObjectsSettings
		eo.Backup, diags = vals.optString(attrExprOf(e.Attrs, "backup"), diags)
		for name, dst := range map[string]*[]string{"namespaces": &eo.Namespaces, "kinds": &eo.Kinds} {
			if a := e.Attrs[name]; a != nil {
				l, d := vals.stringListAttr(a)
				diags = append(diags, d...)
				*dst = l
			}
		}
		out.ExpectObjects = append(out.ExpectObjects, eo)
	}
	return out, diags
}

func (vals *Values) stringListAttr(a *hcl.Attribute) ([]string, hcl.Diagnostics) {
	v, d := vals.Eval(a.Expr, cty.List(cty.String))
	if v, _ = v.UnmarkDeep(); d.HasErrors() || !v.IsWhollyKnown() || v.IsNull() {
		return nil, d
	}
	return stringList(v), d
}

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}
