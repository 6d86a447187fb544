package view

import (
	"encoding/json"
	"io"

	"github.com/hashicorp/hcl/v2"
)

// JSONDiag is a diagnostic for machines.
type JSONDiag struct {
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
}

// Diags converts diagnostics.
func Diags(diags hcl.Diagnostics) []JSONDiag {
	out := []JSONDiag{}
	for _, d := range diags {
		jd := JSONDiag{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if d.Subject != nil {
			jd.File, jd.Line, jd.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
		}
		out = append(out, jd)
	}
	return out
}

// WriteDiags writes diagnostics with source snippets, as terraform does.
func WriteDiags(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool) {
	if len(diags) == 0 {
		return
	}
	_ = hcl.NewDiagnosticTextWriter(w, files, 100, color).WriteDiagnostics(diags)
}

// WriteDiagsJSON writes diagnostics as a JSON document.
func WriteDiagsJSON(w io.Writer, diags hcl.Diagnostics) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"valid": !diags.HasErrors(), "diagnostics": Diags(diags)})
}
