package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A resumed run evaluates timestamp() as of its first attempt, so that
// names made from it (dr-drill.hcl's backup directory) are the same in
// every attempt; variables given on the command line are kept.
func TestAsOfKeepsTheRunsTimestamp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "p.hcl")
	src := `variable "prefix" { type = string }
locals {
  dir = "${var.prefix}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
}
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	stdio := &IO{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	l := load(stdio, p, varFlags{vars: []string{"prefix=drill"}}, false)
	if l.diags.HasErrors() {
		t.Fatal(l.diags)
	}
	first := time.Date(2026, 3, 1, 2, 3, 4, 0, time.UTC)
	tests := []struct {
		at   time.Time
		want string
	}{
		{first, "drill-20260301020304"},
		{first.Add(time.Hour), "drill-20260301030304"},
	}
	for _, tt := range tests {
		if d := l.asOf(tt.at); d.HasErrors() {
			t.Fatal(d)
		}
		if got := l.vals.Locals["dir"].AsString(); got != tt.want {
			t.Errorf("as of %s: dir = %q, want %q", tt.at, got, tt.want)
		}
	}
}
