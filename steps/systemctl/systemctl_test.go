package systemctl

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// states answers `systemctl is-active` from a script of states; other
// commands succeed.
type states struct {
	mu    sync.Mutex
	seq   []string // is-active answers in order; the last one repeats
	calls int
}

func (s *states) Run(_ context.Context, c engine.Command) (*engine.Result, error) {
	if len(c.Argv) < 2 || c.Argv[1] != "is-active" {
		return &engine.Result{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.seq[min(s.calls, len(s.seq)-1)]
	s.calls++
	code := 0
	if st != "active" {
		code = 3
	}
	return &engine.Result{Stdout: st + "\n", ExitCode: code}, nil
}

func TestApplyWaitsAndSaysSo(t *testing.T) {
	old := waitReport
	waitReport = 200 * time.Millisecond
	defer func() { waitReport = old }()
	tests := []struct {
		name    string
		seq     []string
		timeout time.Duration
		wantErr string
		want    []string // event messages that must appear
	}{
		{"comes up and stays", []string{"activating", "active"}, 10 * time.Second, "", []string{"units: activating", "units: active"}},
		{"keeps failing: reported while waiting, then the timeout", []string{"failed"}, 1500 * time.Millisecond,
			"units kubelet on w1 did not stay active for 1s (last: failed)", []string{"units: failed", "waiting for kubelet to be active: failed for"}},
		{"flaps", []string{"active", "active", "failed", "active"}, 10 * time.Second, "", []string{"kubelet went failed after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var msgs []string
			r := &states{seq: tt.seq}
			req := &engine.Request{
				Step: &plans.Step{Kind: "systemctl", Name: "restart", Schema: schema},
				Node: &plans.Node{Name: "w1"},
				Args: engine.Args{V: cty.ObjectVal(map[string]cty.Value{
					"action": cty.StringVal("restart"), "units": cty.ListVal([]cty.Value{cty.StringVal("kubelet")}),
					"daemon_reload": cty.False, "settle": cty.StringVal("1s"),
				})},
				Config: &plans.StepConfig{},
				Env: &engine.Env{Node: func(context.Context, *plans.Node) (engine.Runner, error) { return r, nil },
					Emit: func(e engine.Event) { mu.Lock(); msgs = append(msgs, e.Message); mu.Unlock() }},
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			_, err := Kind{}.Apply(ctx, req, nil)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			all := strings.Join(msgs, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("events lack %q:\n%s", w, all)
				}
			}
		})
	}
}
