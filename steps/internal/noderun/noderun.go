// Package noderun runs node commands for step kinds: it streams their output
// as step events and turns a non-zero exit into an error that quotes the
// command and the last line it printed. A lost connection stays an error
// wrapping engine.ErrInDoubt, because the command may have run.
package noderun

import (
	"context"
	"fmt"
	"strings"

	"github.com/runbookhq/runbook/engine"
)

// Run runs cmd on the request's node and fails on a non-zero exit.
func Run(ctx context.Context, req *engine.Request, r engine.Runner, cmd engine.Command) (*engine.Result, error) {
	res, err := RunResult(ctx, req, r, cmd)
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 {
		return res, fmt.Errorf("%s exited %d on %s: %s", cmd.Shell(), res.ExitCode, req.NodeName(), LastLine(res.Stderr, res.Stdout))
	}
	return res, nil
}

// RunResult runs cmd and returns how it ended, whatever its exit code.
func RunResult(ctx context.Context, req *engine.Request, r engine.Runner, cmd engine.Command) (*engine.Result, error) {
	if cmd.OnLine == nil {
		cmd.OnLine = func(stream, line string) {
			req.Emit(engine.EventStepLog, line, map[string]any{"stream": stream})
		}
	}
	req.Emit("command", "$ "+cmd.Shell(), nil)
	res, err := r.Run(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", cmd.Shell(), req.NodeName(), err)
	}
	return res, nil
}

// LastLine is the last non-empty line of the first output that has one.
func LastLine(outs ...string) string {
	for _, o := range outs {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if i := strings.LastIndexByte(o, '\n'); i >= 0 {
			o = o[i+1:]
		}
		return o
	}
	return "no output"
}
