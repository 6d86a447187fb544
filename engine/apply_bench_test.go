package engine_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// nopKind changes nothing but always has something to do, so that every
// step goes through the whole apply path: plan, journal "started", apply,
// journal "finished".
type nopKind struct{}

func (nopKind) Schema() *plans.KindSchema {
	return &plans.KindSchema{Name: "nop", Target: plans.TargetCluster}
}
func (nopKind) Plan(context.Context, *engine.Request) (*engine.Change, error) {
	return &engine.Change{Action: engine.ActionChange, Summary: "nothing"}, nil
}
func (nopKind) Apply(context.Context, *engine.Request, *engine.Change) (cty.Value, error) {
	return cty.EmptyObjectVal, nil
}

// BenchmarkApplyOverhead: the engine's own time per step, journal fsync
// included, over 10,000 steps (one phase of 10,000 nodes). Target: median
// under 2 ms. Reports the median and the 99th percentile.
func BenchmarkApplyOverhead(b *testing.B) {
	const n = 10000
	var sb strings.Builder
	sb.WriteString("inventory \"all\" {\n  nodes = [")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "%q,", fmt.Sprintf("n%d", i))
	}
	sb.WriteString("]\n}\nphase \"p\" {\n  nodes = inventory.all\n  rolling { batch = 1 }\n  step \"nop\" \"s\" {}\n}\n")
	reg := engine.NewRegistry(nopKind{})
	for b.Loop() {
		b.StopTimer()
		src := []plans.Source{{Name: "bench.hcl", Bytes: []byte(sb.String())}}
		p, diags := plans.ParseSources(src, reg)
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		vals, _ := plans.Evaluate(p, plans.Inputs{})
		prog, _ := engine.Expand(context.Background(), vals, engine.StaticInventories{})
		j, err := journal.Open(b.TempDir(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: journal.Recorder{J: j}}).Apply(context.Background(), prog)
		b.StopTimer()
		j.Close()
		if res.Failed || len(res.Steps) != n {
			b.Fatalf("failed %v, %d steps", res.Failed, len(res.Steps))
		}
		ds := make([]time.Duration, 0, n)
		for _, s := range res.Steps {
			ds = append(ds, s.Duration)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		b.ReportMetric(float64(ds[n/2].Microseconds())/1000, "median-ms/step")
		b.ReportMetric(float64(ds[n*99/100].Microseconds())/1000, "p99-ms/step")
		b.StartTimer()
	}
}
