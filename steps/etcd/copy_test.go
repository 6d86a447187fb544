package etcd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
)

// catRunner answers `cat FILE` with body on Stdout and exit code.
type catRunner struct {
	body []byte
	exit int
}

func (c catRunner) Run(ctx context.Context, cmd engine.Command) (*engine.Result, error) {
	if cmd.Stdout == nil {
		return &engine.Result{ExitCode: 0}, nil
	}
	_, err := cmd.Stdout.Write(c.body)
	return &engine.Result{ExitCode: c.exit, Stderr: "cat: failed"}, err
}

func TestCopyOff(t *testing.T) {
	body := []byte("etcd snapshot bytes\x00\xff\n")
	h := sha256.Sum256(body)
	good := hex.EncodeToString(h[:])
	tests := []struct {
		name    string
		runner  catRunner
		sum     string
		wantErr string
	}{
		{"arrives intact", catRunner{body: body}, good, ""},
		{"truncated on the way", catRunner{body: body[:5]}, good, "arrived with SHA-256"},
		{"cat fails", catRunner{body: body, exit: 1}, good, "exited 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "copies", "etcd-snapshot-1.db")
			req := &engine.Request{Step: &plans.Step{Kind: "etcd_snapshot"}, Config: &plans.StepConfig{}, Node: &plans.Node{Name: "cp-1"}}
			err := copyOff(context.Background(), req, tt.runner, "/backup/etcd-snapshot-1.db", tt.sum, dst)
			entries, _ := os.ReadDir(filepath.Dir(dst))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				for _, e := range entries {
					if strings.HasSuffix(e.Name(), ".db") || strings.HasSuffix(e.Name(), ".part") {
						t.Errorf("a failed copy left %s behind", e.Name())
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || string(got) != string(body) {
				t.Fatalf("copy = %q, %v", got, err)
			}
			sum, _ := os.ReadFile(dst + ".sha256")
			if string(sum) != good+"  etcd-snapshot-1.db\n" {
				t.Errorf(".sha256 = %q", sum)
			}
			if len(entries) != 2 {
				t.Errorf("copy dir holds %d entries, want the file and its .sha256", len(entries))
			}
		})
	}
}
