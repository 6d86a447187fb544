// Package exec implements the exec step kind: a command or script on a node
// over SSH, with guards (creates, unless) that make it check-then-act, and
// the exit codes it accepts.
//
// Every argument is quoted for the remote shell; the command the dry-run
// prints is byte for byte the one that runs.
package exec

import (
	"context"
	"fmt"
	"math/big"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// Kind is the exec kind.
type Kind struct{}

var schema = &plans.KindSchema{
	Name:    "exec",
	Summary: "Run a command (argv, each argument quoted) or a shell script on the node.",
	Target:  plans.TargetNode,
	Args: []plans.ArgSchema{
		{Name: "command", Type: cty.List(cty.String), Doc: "The command as a list of arguments; each is quoted, nothing is interpreted by a shell."},
		{Name: "script", Type: cty.String, Doc: "A shell script, run with sh -c."},
		{Name: "sudo", Type: cty.Bool, Doc: "Run through sudo -n; defaults to the node's ssh setting."},
		{Name: "expect_exit", Type: cty.List(cty.Number), Default: cty.ListVal([]cty.Value{cty.Zero}), Doc: "Exit codes that count as success."},
		{Name: "creates", Type: cty.String, Format: plans.FormatAbsPath, Doc: "Skip the command when this path exists on the node."},
		{Name: "unless", Type: cty.String, Doc: "A read-only shell test; skip the command when it exits 0."},
		{Name: "read_only", Type: cty.Bool, Default: cty.False, Doc: "The command changes nothing: the dry-run runs it and shows its output."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "stdout", Type: cty.String, Doc: "Standard output (capped)."},
		{Name: "stderr", Type: cty.String, Doc: "Standard error (capped)."},
		{Name: "exit_code", Type: cty.Number, Doc: "The exit code."},
	},
	Check: func(args cty.Value) []plans.ArgError {
		c, s := args.GetAttr("command"), args.GetAttr("script")
		if !c.IsKnown() || !s.IsKnown() {
			return nil
		}
		switch {
		case c.IsNull() && s.IsNull():
			return []plans.ArgError{{Arg: "command", Summary: "Missing command", Detail: "An exec step needs command (a list of arguments) or script."}}
		case !c.IsNull() && !s.IsNull():
			return []plans.ArgError{{Arg: "script", Summary: "Conflicting arguments", Detail: "Set command or script, not both."}}
		case !c.IsNull() && c.LengthInt() == 0:
			return []plans.ArgError{{Arg: "command", Summary: "Empty command", Detail: "command needs at least the program name."}}
		}
		return nil
	},
}

// Schema implements engine.Kind.
func (Kind) Schema() *plans.KindSchema { return schema }

// Command builds the step's command.
func Command(req *engine.Request) engine.Command {
	var c engine.Command
	if req.Args.Set("script") {
		c = req.Script(req.Args.String("script"))
	} else {
		c = req.Cmd(req.Args.Strings("command")...)
	}
	if req.Args.Set("sudo") {
		c.Sudo = req.Args.Bool("sudo")
	}
	return c
}

func guards(req *engine.Request) []engine.Command {
	var out []engine.Command
	if p := req.Args.String("creates"); p != "" {
		out = append(out, engine.Command{Argv: []string{"test", "-e", p}})
	}
	if u := req.Args.String("unless"); u != "" {
		out = append(out, engine.Command{Script: u})
	}
	return out
}

// Plan implements engine.Kind.
func (Kind) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	cmd := Command(req)
	ch := &engine.Change{Action: engine.ActionChange, Summary: "run on " + req.NodeName() + ": " + cmd.Shell()}
	if req.Args.Bool("read_only") {
		ch.Action = engine.ActionRead
	}
	gs := guards(req)
	for _, g := range gs {
		ch.Details = append(ch.Details, "skip when this succeeds: "+g.Shell())
	}
	ch.Commands = engine.Shells(append(gs, cmd)...)
	if exp := expected(req); len(exp) != 1 || exp[0] != 0 {
		ch.Details = append(ch.Details, fmt.Sprintf("success when the exit code is one of %v", exp))
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err == engine.ErrOffline {
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	for _, g := range gs {
		res, err := r.Run(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("checking guard %q: %w", g.Shell(), err)
		}
		if res.ExitCode == 0 {
			ch.Action, ch.Summary = engine.ActionNoOp, "skip on "+req.NodeName()+": "+g.Shell()+" succeeds"
			return ch, nil
		}
	}
	return ch, nil
}

func expected(req *engine.Request) []int {
	v := req.Args.Value("expect_exit")
	if !v.IsWhollyKnown() || v.IsNull() {
		return []int{0}
	}
	var out []int
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		i, _ := e.AsBigFloat().Int64()
		out = append(out, int(i))
	}
	return out
}

// Apply implements engine.Kind.
func (Kind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	for _, g := range guards(req) {
		res, err := r.Run(ctx, g)
		if err != nil {
			return cty.NilVal, fmt.Errorf("checking guard %q: %w", g.Shell(), err)
		}
		if res.ExitCode == 0 {
			return outputs(&engine.Result{}), nil
		}
	}
	cmd := Command(req)
	cmd.Timeout = req.Config.Timeout
	cmd.OnLine = func(stream, line string) { req.Emit(engine.EventStepLog, line, map[string]any{"stream": stream}) }
	res, err := r.Run(ctx, cmd)
	if err != nil {
		return cty.NilVal, err
	}
	for _, e := range expected(req) {
		if res.ExitCode == e {
			return outputs(res), nil
		}
	}
	return outputs(res), fmt.Errorf("%s exited %d on %s: %s", cmd.Shell(), res.ExitCode, req.NodeName(), lastLine(res.Stderr))
}

func outputs(r *engine.Result) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"stdout": cty.StringVal(r.Stdout), "stderr": cty.StringVal(r.Stderr),
		"exit_code": cty.NumberVal(new(big.Float).SetInt64(int64(r.ExitCode))),
	})
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no error output"
	}
	return s
}
