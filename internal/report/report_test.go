package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/journal"
)

func TestBuildFromJournal(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	recs := []journal.Record{
		{Time: at(0), Type: journal.RunStarted, RunID: "r1", Runbook: "upgrade", PlanHash: "p"},
		{Time: at(1), Type: journal.StepStarted, Address: `phase.w.step.drain["worker-1"]`, Node: "worker-1", Kind: "drain"},
		{Time: at(4), Type: journal.StepFailed, Address: `phase.w.step.drain["worker-1"]`, Node: "worker-1", Error: "PDB <blocks>"},
		{Time: at(5), Type: journal.RunFinished, Status: "failed"},
		{Time: at(60), Type: journal.RunStarted, RunID: "r1"},
		{Time: at(61), Type: journal.StepStarted, Address: `phase.w.step.drain["worker-1"]`, Node: "worker-1", Kind: "drain"},
		{Time: at(63), Type: journal.StepFinished, Address: `phase.w.step.drain["worker-1"]`, Node: "worker-1", Summary: "drain worker-1"},
		{Time: at(64), Type: journal.RunFinished, Status: "succeeded"},
	}
	r := Build(recs)
	if r.Status != "succeeded" || r.Attempts != 2 || r.Duration != 64*time.Second || len(r.Steps) != 1 {
		t.Fatalf("report %+v", r)
	}
	s := r.Steps[0]
	if s.Status != "finished" || s.Attempts != 2 || s.Error != "" || s.Duration != 62*time.Second {
		t.Fatalf("step %+v", s)
	}
	var b bytes.Buffer
	if err := r.HTML(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "worker-1", `phase.w.step.drain[&#34;worker-1&#34;]`, "succeeded"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("html lacks %q", want)
		}
	}
	// Journal text is escaped, never markup.
	r2 := Build(recs[:4])
	b.Reset()
	r2.HTML(&b)
	if strings.Contains(b.String(), "<blocks>") || !strings.Contains(b.String(), "&lt;blocks&gt;") {
		t.Error("error text not escaped")
	}
}
