package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJournalRoundTripAndTornTail(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{
		{Type: RunStarted, RunID: "run-1", PlanHash: "p", VarsHash: "v"},
		{Type: StepStarted, Address: "step.a"},
		{Type: StepFinished, Address: "step.a", Outputs: map[string]any{"x": "1"}},
		{Type: StepStarted, Address: "step.b"},
	}
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	path := Path(dir, "run-1")
	// A crash mid-write leaves half a line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"type":"step_fini`)
	f.Close()
	got, err := Read(path)
	if err != nil {
		t.Fatalf("a torn last line must be tolerated: %v", err)
	}
	if len(got) != 4 {
		t.Fatalf("%d records, want 4", len(got))
	}
	sum := Fold(got)
	if sum.Steps["step.a"].Status != StepFinished || sum.Steps["step.b"].Status != StepStarted || sum.Finished {
		t.Fatalf("fold: a=%s b=%s finished=%v", sum.Steps["step.a"].Status, sum.Steps["step.b"].Status, sum.Finished)
	}
	// Reopening after the tear starts a fresh line: the next record is whole.
	j, err = Open(dir, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(Record{Type: StepFailed, Address: "step.b", Error: "x"}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	got, err = Read(path)
	if err != nil || len(got) != 5 || got[4].Type != StepFailed {
		t.Fatalf("after reopening: %d records, err %v", len(got), err)
	}
	// Damage in the middle (not a torn tail) is an error naming the line.
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	lines[1] = "garbage\n"
	os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), ":2: damaged journal record") {
		t.Fatalf("damage in the middle must be an error naming the line, got %v", err)
	}
}

func TestLatest(t *testing.T) {
	dir := t.TempDir()
	if p, _ := Latest(dir); p != "" {
		t.Fatalf("empty dir: %q", p)
	}
	for _, id := range []string{"a", "b"} {
		j, _ := Open(dir, id)
		j.Append(Record{Type: RunStarted, RunID: id})
		j.Close()
	}
	os.Chtimes(filepath.Join(dir, "a.jsonl"), farFuture, farFuture)
	if p, _ := Latest(dir); filepath.Base(p) != "a.jsonl" {
		t.Fatalf("latest %q", p)
	}
}

var farFuture = mustTime("2099-01-01T00:00:00Z")
