package cli

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/kinds.md")

// TestKindsDoc keeps docs/kinds.md in step with the kinds' schemas.
func TestKindsDoc(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"kinds", "-o", "markdown"}, IO{Out: &out, Err: &errb, Environ: []string{}}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	const path = "../../docs/kinds.md"
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, out.Bytes()) {
		t.Fatalf("docs/kinds.md is out of date: run go test ./internal/cli -run TestKindsDoc -update")
	}
}
