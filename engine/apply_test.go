package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// world is what the test kinds act on: a set of done marks per address,
// counting how often each was applied.
type world struct {
	mu      sync.Mutex
	applied map[string]int
	order   []string
	failOn  map[string]bool
	running int32
	maxPar  int32
}

func newWorld() *world { return &world{applied: map[string]int{}, failOn: map[string]bool{}} }

// markKind applies once per node and address (check-then-act): its Plan is
// a no-op when the mark exists.
type markKind struct {
	w    *world
	name string
	hang bool
}

func (k markKind) Schema() *plans.KindSchema {
	return &plans.KindSchema{Name: k.name, Target: plans.TargetCluster,
		Args:    []plans.ArgSchema{{Name: "value", Type: cty.String, Default: cty.StringVal("")}},
		Outputs: []plans.OutputSchema{{Name: "out", Type: cty.String}}}
}

func (k markKind) Plan(_ context.Context, req *engine.Request) (*engine.Change, error) {
	k.w.mu.Lock()
	defer k.w.mu.Unlock()
	if k.w.applied[req.Address] > 0 {
		return &engine.Change{Action: engine.ActionNoOp, Summary: "done", Outputs: cty.ObjectVal(map[string]cty.Value{"out": cty.StringVal("v:" + req.Address)})}, nil
	}
	return &engine.Change{Action: engine.ActionChange, Summary: "mark " + req.Address}, nil
}

func (k markKind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	n := atomic.AddInt32(&k.w.running, 1)
	defer atomic.AddInt32(&k.w.running, -1)
	for {
		m := atomic.LoadInt32(&k.w.maxPar)
		if n <= m || atomic.CompareAndSwapInt32(&k.w.maxPar, m, n) {
			break
		}
	}
	if k.hang {
		req.Emit("waiting", "waiting for the sky to fall", nil)
		<-ctx.Done()
		return cty.NilVal, fmt.Errorf("waiting for the sky to fall: %w", ctx.Err())
	}
	time.Sleep(time.Millisecond)
	k.w.mu.Lock()
	defer k.w.mu.Unlock()
	if k.w.failOn[req.Address] {
		return cty.NilVal, errors.New("boom")
	}
	k.w.applied[req.Address]++
	k.w.order = append(k.w.order, req.Address)
	return cty.ObjectVal(map[string]cty.Value{"out": cty.StringVal("v:" + req.Address + ":" + req.Args.String("value"))}), nil
}

// memRecorder keeps the journal in memory.
type memRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (m *memRecorder) add(s string) error {
	m.mu.Lock()
	m.recs = append(m.recs, s)
	m.mu.Unlock()
	return nil
}
func (m *memRecorder) StepStarted(s *engine.AppliedStep, _ int) error {
	return m.add("started " + s.Address)
}
func (m *memRecorder) StepFinished(s *engine.AppliedStep, _ cty.Value) error {
	return m.add("finished " + s.Address)
}
func (m *memRecorder) StepFailed(s *engine.AppliedStep, err error, _ bool) error {
	return m.add("failed " + s.Address)
}
func (m *memRecorder) StepSkipped(s *engine.AppliedStep, r string) error {
	return m.add("skipped " + s.Address)
}

func program(t testing.TB, w *world, src string) (*engine.Program, *engine.Registry) {
	t.Helper()
	reg := engine.NewRegistry(markKind{w: w, name: "mark"}, markKind{w: w, name: "hang", hang: true})
	file := filepath.Join(t.TempDir(), "p.hcl")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p, diags := plans.Parse([]string{file}, reg)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	vals, diags := plans.Evaluate(p, plans.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	prog, diags := engine.Expand(context.Background(), vals, engine.StaticInventories{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return prog, reg
}

const rolling = `
inventory "all" { nodes = ["n1", "n2", "n3", "n4", "n5"] }
step "mark" "first" {}
phase "p" {
  nodes = inventory.all
  rolling {
    batch      = [1, 2]
    max_failed = %d
  }
  step "mark" "a" {}
  step "mark" "b" { value = step.a.out }
}
step "mark" "last" {}
`

func TestApplyOrderAndBatches(t *testing.T) {
	w := newWorld()
	prog, reg := program(t, w, fmt.Sprintf(rolling, 0))
	rec := &memRecorder{}
	res := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: rec}).Apply(context.Background(), prog)
	if res.Failed {
		t.Fatalf("failed: %+v", res.Steps)
	}
	if len(w.order) != 12 || w.order[0] != "step.first" || w.order[11] != "step.last" {
		t.Fatalf("order %v", w.order)
	}
	// Each node: a before b; n1 (the canary batch) entirely before n2..n5.
	pos := map[string]int{}
	for i, a := range w.order {
		pos[a] = i
	}
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		if pos[`phase.p.step.a["`+n+`"]`] > pos[`phase.p.step.b["`+n+`"]`] {
			t.Errorf("%s: b before a", n)
		}
	}
	for _, n := range []string{"n2", "n3"} {
		if pos[`phase.p.step.b["n1"]`] > pos[`phase.p.step.a["`+n+`"]`] {
			t.Errorf("canary n1 not finished before %s started", n)
		}
	}
	if w.maxPar != 2 {
		t.Errorf("max parallel %d, want 2 (batch size)", w.maxPar)
	}
}

func TestApplyFailureStopsNodeAndRun(t *testing.T) {
	tests := []struct {
		name      string
		maxFailed int
		wantDone  []string
		wantNot   []string
	}{
		{"abort at first failed node", 0,
			[]string{`phase.p.step.a["n1"]`, `phase.p.step.b["n1"]`, `phase.p.step.a["n3"]`, `phase.p.step.b["n3"]`},
			[]string{`phase.p.step.b["n2"]`, `phase.p.step.a["n4"]`, "step.last"}},
		{"max_failed 1 goes on", 1,
			[]string{`phase.p.step.a["n4"]`, `phase.p.step.b["n5"]`, "step.last"},
			[]string{`phase.p.step.b["n2"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			w.failOn[`phase.p.step.a["n2"]`] = true
			prog, reg := program(t, w, fmt.Sprintf(rolling, tt.maxFailed))
			res := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: &memRecorder{}}).Apply(context.Background(), prog)
			if !res.Failed || strings.Join(res.FailedNodes(), ",") != "n2" {
				t.Fatalf("failed %v nodes %v", res.Failed, res.FailedNodes())
			}
			for _, a := range tt.wantDone {
				if w.applied[a] != 1 {
					t.Errorf("%s applied %d times, want 1", a, w.applied[a])
				}
			}
			for _, a := range tt.wantNot {
				if w.applied[a] != 0 {
					t.Errorf("%s applied, want not", a)
				}
			}
		})
	}
}

// TestApplyResume: a second attempt with the first's journal skips what
// finished, reusing its outputs, and never applies anything twice.
func TestApplyResume(t *testing.T) {
	w := newWorld()
	w.failOn[`phase.p.step.a["n2"]`] = true
	prog, reg := program(t, w, fmt.Sprintf(rolling, 0))
	first := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: &memRecorder{}}).Apply(context.Background(), prog)
	prior := map[string]engine.Prior{}
	for _, s := range first.Steps {
		if s.Status == engine.StatusDone {
			prior[s.Address] = engine.Prior{Status: engine.PriorFinished, Outputs: cty.ObjectVal(map[string]cty.Value{"out": cty.StringVal("journal")})}
		}
	}
	delete(w.failOn, `phase.p.step.a["n2"]`)
	second := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: &memRecorder{}, Prior: prior}).Apply(context.Background(), prog)
	if second.Failed {
		t.Fatalf("resume failed")
	}
	for a, n := range w.applied {
		if n != 1 {
			t.Errorf("%s applied %d times", a, n)
		}
	}
	if len(w.applied) != 12 {
		t.Errorf("%d steps applied in all, want 12", len(w.applied))
	}
	resumed := 0
	for _, s := range second.Steps {
		if s.Resumed {
			resumed++
		}
	}
	if resumed != len(prior) {
		t.Errorf("%d resumed, want %d", resumed, len(prior))
	}
}

func TestApplyTimeoutSaysWhat(t *testing.T) {
	w := newWorld()
	prog, reg := program(t, w, `
step "hang" "stuck" { timeout = "200ms" }
step "mark" "after" {}
`)
	start := time.Now()
	res := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: &memRecorder{}}).Apply(context.Background(), prog)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
	s := res.Steps[0]
	if s.Status != engine.StatusFailed || !strings.Contains(s.Err.Error(), "step.stuck timed out after 200ms") || !strings.Contains(s.Err.Error(), "waiting for the sky to fall") {
		t.Fatalf("status %s err %v", s.Status, s.Err)
	}
	if res.Steps[1].Status != engine.StatusPending || w.applied["step.after"] != 0 {
		t.Fatalf("the step after a failure ran: %s", res.Steps[1].Status)
	}
}

func TestApplyGracefulStop(t *testing.T) {
	w := newWorld()
	prog, reg := program(t, w, fmt.Sprintf(rolling, 0))
	stop := make(chan struct{})
	close(stop)
	res := (&engine.Applier{Kinds: reg, Env: &engine.Env{}, Recorder: &memRecorder{}, Stop: stop}).Apply(context.Background(), prog)
	if !res.Stopped || len(w.applied) != 0 {
		t.Fatalf("stopped %v applied %v", res.Stopped, w.applied)
	}
}
