package plans

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// JournalSettings is the evaluated journal block.
type JournalSettings struct {
	Backend   string // "local" (the default) or "cluster"
	Path      string // the local directory; "" for the default beside the plan
	Namespace string // the cluster backend's; "" for its default
}

// JournalBackends are the journal block's backends.
var JournalBackends = []string{"local", "cluster"}

// Journal evaluates the journal block (absent: local, the default
// directory).
func (vals *Values) Journal() (JournalSettings, hcl.Diagnostics) {
	js := JournalSettings{Backend: "local"}
	jb := vals.Plan.Journal
	if jb == nil {
		return js, nil
	}
	var diags hcl.Diagnostics
	for _, a := range []struct {
		name string
		dst  *string
	}{{"backend", &js.Backend}, {"path", &js.Path}, {"namespace", &js.Namespace}} {
		attr := jb.Attrs[a.name]
		if attr == nil {
			continue
		}
		v, d := vals.Eval(attr.Expr, cty.String)
		diags = append(diags, d...)
		v, _ = v.Unmark()
		if d.HasErrors() || v.IsNull() || !v.IsKnown() {
			continue
		}
		*a.dst = v.AsString()
	}
	if !oneOf(js.Backend, JournalBackends) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown journal backend",
			Detail:  fmt.Sprintf("backend %q: use \"local\" (a file beside the plan, the default) or \"cluster\" (that file and a copy in a ConfigMap).", js.Backend),
			Subject: jb.Attrs["backend"].Expr.Range().Ptr()})
	}
	return js, diags
}
