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
	// Where the time went: the drain's two attempts (3 s and 2 s), not the
	// pause between them; the rest of the 64 s was outside any step.
	if len(r.ByKind) != 1 || r.ByKind[0].Kind != "drain" || r.ByKind[0].Wall != 5*time.Second || r.ByKind[0].Sum != 5*time.Second || r.Between != 59*time.Second {
		t.Fatalf("by kind %+v, between %s", r.ByKind, r.Between)
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

func TestByKindCountsParallelStepsOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	step := func(addr, node, kind string, from, to int) []journal.Record {
		return []journal.Record{
			{Time: at(from), Type: journal.StepStarted, Address: addr, Node: node, Kind: kind},
			{Time: at(to), Type: journal.StepFinished, Address: addr, Node: node, Kind: kind},
		}
	}
	recs := []journal.Record{{Time: at(0), Type: journal.RunStarted, RunID: "r"}}
	recs = append(recs, step("d1", "w1", "drain", 1, 5)...)
	recs = append(recs, step("d2", "w2", "drain", 3, 7)...) // overlaps d1: 1..7 is 6 s of wall time
	recs = append(recs, step("s1", "w1", "systemctl", 8, 10)...)
	recs = append(recs, journal.Record{Time: at(12), Type: journal.RunFinished, Status: "succeeded"})
	r := Build(recs)
	want := []KindTime{{Kind: "drain", Steps: 2, Wall: 6 * time.Second, Sum: 8 * time.Second}, {Kind: "systemctl", Steps: 1, Wall: 2 * time.Second, Sum: 2 * time.Second}}
	if len(r.ByKind) != len(want) {
		t.Fatalf("by kind %+v", r.ByKind)
	}
	for i := range want {
		if r.ByKind[i] != want[i] {
			t.Errorf("by kind [%d] = %+v, want %+v", i, r.ByKind[i], want[i])
		}
	}
	// 12 s of run: 1..7 and 8..10 in steps, 4 s outside them.
	if r.Between != 4*time.Second {
		t.Errorf("between %s, want 4s", r.Between)
	}
	var b bytes.Buffer
	r.Markdown(&b)
	if !strings.Contains(b.String(), "| drain | 2 | 6s | 50% | 8s |") || !strings.Contains(b.String(), "| (between steps) | | 4s | 33% | |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}
