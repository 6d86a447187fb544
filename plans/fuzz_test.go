package plans_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/all"
)

// FuzzParse feeds arbitrary plan text through parsing, evaluation and
// validation: whatever the input, the result is diagnostics, never a panic.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.hcl")
	scripts, _ := filepath.Glob("../testdata/scripts/*.txtar")
	for _, s := range append(seeds, scripts...) {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reg := all.Registry()
	f.Fuzz(func(t *testing.T, src []byte) {
		p, diags := plans.ParseSources([]plans.Source{{Name: "fuzz.hcl", Bytes: src}}, reg)
		if diags.HasErrors() {
			return
		}
		vals, diags := plans.Evaluate(p, plans.Inputs{Partial: true})
		if diags.HasErrors() {
			return
		}
		engine.Validate(vals)
	})
}
