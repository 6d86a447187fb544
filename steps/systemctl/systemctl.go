// Package systemctl implements the systemctl step kind: daemon-reload and
// restart, start, stop or reload of units, where success means the unit is
// active (or inactive, for stop) and stays so for a settle period, not just
// that systemctl exited 0.
package systemctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/internal/noderun"
	"github.com/zclconf/go-cty/cty"
)

// Kind is the systemctl kind.
type Kind struct{}

var schema = &plans.KindSchema{
	Name:    "systemctl",
	Summary: "systemctl daemon-reload and restart/start/stop/reload of units; succeeds when the unit is (in)active and stays so.",
	Target:  plans.TargetNode,
	Args: []plans.ArgSchema{
		{Name: "action", Type: cty.String, Required: true, OneOf: []string{"restart", "start", "stop", "reload", "daemon_reload"}, Doc: "restart, start, stop, reload, or daemon_reload alone."},
		{Name: "units", Type: cty.List(cty.String), Doc: "The units; required unless action is daemon_reload."},
		{Name: "daemon_reload", Type: cty.Bool, Default: cty.False, Doc: "Run systemctl daemon-reload first."},
		{Name: "settle", Type: cty.String, Default: cty.StringVal("3s"), Format: plans.FormatDuration, Doc: "How long the unit must stay in its state to count as done."},
	},
	Check: func(args cty.Value) []plans.ArgError {
		a, u := args.GetAttr("action"), args.GetAttr("units")
		if a.IsKnown() && !a.IsNull() && a.AsString() != "daemon_reload" && u.IsKnown() && (u.IsNull() || u.LengthInt() == 0) {
			return []plans.ArgError{{Arg: "action", Summary: "Missing units", Detail: fmt.Sprintf("systemctl %s needs units = [\"kubelet\"].", a.AsString())}}
		}
		return nil
	},
}

// Schema implements engine.Kind.
func (Kind) Schema() *plans.KindSchema { return schema }

func commands(req *engine.Request) []engine.Command {
	action, units := req.Args.String("action"), req.Args.Strings("units")
	var cmds []engine.Command
	if action == "daemon_reload" || req.Args.Bool("daemon_reload") {
		cmds = append(cmds, req.Cmd("systemctl", "daemon-reload"))
	}
	if action != "daemon_reload" {
		cmds = append(cmds, req.Cmd(append([]string{"systemctl", action}, units...)...))
		cmds = append(cmds, engine.Command{Argv: append([]string{"systemctl", "is-active"}, units...)})
	}
	return cmds
}

// Plan implements engine.Kind.
func (Kind) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	action, units := req.Args.String("action"), req.Args.Strings("units")
	summary := "systemctl daemon-reload on " + req.NodeName()
	if action != "daemon_reload" {
		summary = fmt.Sprintf("systemctl %s %s on %s", action, strings.Join(units, " "), req.NodeName())
	}
	ch := &engine.Change{Action: engine.ActionChange, Summary: summary, Commands: engine.Shells(commands(req)...)}
	if action != "daemon_reload" {
		state := "active"
		if action == "stop" {
			state = "inactive"
		}
		ch.Details = []string{fmt.Sprintf("done when %s is %s and stays %s for %s", strings.Join(units, ", "), state, state, req.Args.String("settle"))}
	}
	if action != "start" && action != "stop" {
		return ch, nil
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err == engine.ErrOffline {
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	res, err := r.Run(ctx, engine.Command{Argv: append([]string{"systemctl", "is-active"}, units...)})
	if err != nil {
		return nil, fmt.Errorf("reading unit state: %w", err)
	}
	if (action == "start") == (res.ExitCode == 0) && !req.Args.Bool("daemon_reload") {
		ch.Action, ch.Commands = engine.ActionNoOp, nil
		ch.Summary = fmt.Sprintf("%s already %s on %s", strings.Join(units, " "), map[bool]string{true: "active", false: "inactive"}[action == "start"], req.NodeName())
	}
	return ch, nil
}

// waitReport is how often a wait for a unit's state says it still waits.
var waitReport = 15 * time.Second

// Apply implements engine.Kind: it runs the commands, then checks every
// half second that the units are (in)active, and stay so for the settle
// period; a unit that flaps fails the step with its last state.
func (Kind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	cmds := commands(req)
	action := req.Args.String("action")
	if action == "daemon_reload" {
		for _, c := range cmds {
			if _, err := noderun.Run(ctx, req, r, c); err != nil {
				return cty.NilVal, err
			}
		}
		return cty.EmptyObjectVal, nil
	}
	for _, c := range cmds[:len(cmds)-1] {
		if _, err := noderun.Run(ctx, req, r, c); err != nil {
			return cty.NilVal, err
		}
	}
	check := cmds[len(cmds)-1]
	settle := req.Args.Duration("settle")
	wantActive := action != "stop"
	var since time.Time
	last := ""
	want := map[bool]string{true: "active", false: "inactive"}[wantActive]
	units := strings.Join(req.Args.Strings("units"), " ")
	waitingSince, told := time.Now(), time.Now()
	for {
		res, err := r.Run(ctx, check)
		if err != nil {
			return cty.NilVal, fmt.Errorf("checking units on %s: %w", req.NodeName(), err)
		}
		state := strings.Join(strings.Fields(res.Stdout), ",")
		if (res.ExitCode == 0) == wantActive {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= settle {
				return cty.EmptyObjectVal, nil
			}
		} else {
			if !since.IsZero() {
				req.Emit("unit_flapped", fmt.Sprintf("%s went %s after %s", strings.Join(req.Args.Strings("units"), " "), state, time.Since(since).Round(time.Millisecond)), nil)
			}
			since = time.Time{}
		}
		if state != last {
			req.Emit("unit_state", "units: "+state, nil)
			last, waitingSince = state, time.Now()
		} else if since.IsZero() && time.Since(told) >= waitReport {
			// A unit stuck in the wrong state (a kubelet that keeps
			// failing) is reported while the step waits, not only at its
			// timeout.
			told = time.Now()
			req.Emit("waiting", fmt.Sprintf("waiting for %s to be %s: %s for %s (the step gives up at its timeout)", units, want, state, time.Since(waitingSince).Round(time.Second)), nil)
		}
		select {
		case <-ctx.Done():
			return cty.NilVal, fmt.Errorf("units %s on %s did not stay %s for %s (last: %s)", units, req.NodeName(), want, settle, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
