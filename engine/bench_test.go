package engine_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/view"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/all"
)

// validateAndPlan is what `runbook validate` followed by `runbook plan
// --offline -o text` do, minus the process start.
func validateAndPlan(tb testing.TB, file string) *engine.PlanResult {
	reg := all.Registry()
	p, diags := plans.Parse([]string{file}, reg)
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	vals, diags := plans.Evaluate(p, plans.Inputs{})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	if d := engine.Validate(vals); d.HasErrors() {
		tb.Fatal(d)
	}
	prog, diags := engine.Expand(context.Background(), vals, engine.StaticInventories{})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	res := (&engine.Planner{Kinds: reg, Env: &engine.Env{Offline: true}}).Plan(context.Background(), prog)
	if res.Failed() {
		tb.Fatal("plan failed")
	}
	view.Text(io.Discard, view.Header{Name: "bench"}, res)
	return res
}

// BenchmarkValidatePlan1000x5: a generated plan of 1,000 nodes in 5 phases
// (30,000 step instances), validated and planned offline. Target: under 1 s.
func BenchmarkValidatePlan1000x5(b *testing.B) {
	file := filepath.Join(b.TempDir(), "big.hcl")
	if err := os.WriteFile(file, []byte(GeneratePlan(1000, 5)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res := validateAndPlan(b, file)
		if len(res.Steps) != 30000 {
			b.Fatalf("%d step instances, want 30000", len(res.Steps))
		}
	}
}

func TestGeneratedPlanShape(t *testing.T) {
	file := filepath.Join(t.TempDir(), "small.hcl")
	if err := os.WriteFile(file, []byte(GeneratePlan(20, 2)), 0o644); err != nil {
		t.Fatal(err)
	}
	res := validateAndPlan(t, file)
	if len(res.Steps) != 20*2*6 {
		t.Fatalf("%d step instances, want %d", len(res.Steps), 20*2*6)
	}
	// Batches [1, "10%"] of 20 nodes: a canary, then twos.
	u := res.Program.Units[0]
	if len(u.Batches) != 11 || len(u.Batches[0]) != 1 || len(u.Batches[1]) != 2 {
		t.Fatalf("batches %d: first %d, second %d", len(u.Batches), len(u.Batches[0]), len(u.Batches[1]))
	}
	// Every node goes through the phase's steps in order before the next.
	if res.Steps[0].Node.Name != "node-0" || res.Steps[5].Step.Name != "uncordon" || res.Steps[6].Node.Name != "node-1" {
		t.Fatalf("order: %s %s %s", res.Steps[0].Address, res.Steps[5].Address, res.Steps[6].Address)
	}
}
