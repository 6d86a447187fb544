// Package apt implements the apt step kind (install packages at an upstream
// version, resolving the distribution's version string on each node, with
// holds handled as kubeadm's docs do) and the apt_repository kind (point
// the node at the pkgs.k8s.io-style repository of one minor release).
//
// It does not manage keys or arbitrary sources; field case F05.
package apt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/internal/noderun"
	"github.com/zclconf/go-cty/cty"
)

// Kind is the apt kind.
type Kind struct{}

var schema = &plans.KindSchema{
	Name:    "apt",
	Summary: "Install packages at an upstream version (\"1.28.0\"), resolving the node's version string; unhold, install, hold again, verify.",
	Target:  plans.TargetNode,
	Args: []plans.ArgSchema{
		{Name: "packages", Type: cty.Map(cty.String), Required: true, Doc: "Package name to upstream version, e.g. { kubeadm = \"1.28.0\" }."},
		{Name: "update", Type: cty.Bool, Default: cty.True, Doc: "Run apt-get update first."},
		{Name: "hold", Type: cty.Bool, Default: cty.True, Doc: "Hold the packages again after installing (packages held before are always held again)."},
		{Name: "allow_downgrade", Type: cty.Bool, Default: cty.False, Doc: "Allow installing a version older than the installed one."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "versions", Type: cty.Map(cty.String), Doc: "The resolved version string of each package, e.g. 1.28.0-1.1."},
	},
	Check: func(args cty.Value) []plans.ArgError {
		p := args.GetAttr("packages")
		if !p.IsWhollyKnown() || p.IsNull() {
			return nil
		}
		if p.LengthInt() == 0 {
			return []plans.ArgError{{Arg: "packages", Summary: "No packages", Detail: "packages needs at least one package."}}
		}
		for k, v := range p.AsValueMap() {
			if !validPackage(k) {
				return []plans.ArgError{{Arg: "packages", Summary: "Invalid package name", Detail: fmt.Sprintf("%q is not a Debian package name.", k)}}
			}
			if strings.Contains(v.AsString(), "-") && !strings.Contains(v.AsString(), "-rc") && !strings.Contains(v.AsString(), "-beta") && !strings.Contains(v.AsString(), "-alpha") {
				return []plans.ArgError{{Arg: "packages", Summary: "Give the upstream version", Detail: fmt.Sprintf("%s = %q: name the upstream version only (\"1.28.0\"); runbook resolves the distribution's revision (-1.1, -00) on each node.", k, v.AsString())}}
			}
			if _, err := plans.ParseVersion(v.AsString()); err != nil {
				return []plans.ArgError{{Arg: "packages", Summary: "Invalid version", Detail: fmt.Sprintf("%s: %v.", k, err)}}
			}
		}
		return nil
	},
}

func validPackage(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (i > 0 && strings.ContainsRune("+-.", r))
		if !ok {
			return false
		}
	}
	return true
}

// Schema implements engine.Kind.
func (Kind) Schema() *plans.KindSchema { return schema }

type pkgWant struct{ name, upstream string }

func wants(req *engine.Request) []pkgWant {
	m := req.Args.StringMap("packages")
	out := make([]pkgWant, 0, len(m))
	for k, v := range m {
		if pv, err := plans.ParseVersion(v); err == nil {
			v = pv.String()
		}
		out = append(out, pkgWant{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// nodeState is what the dry-run reads on the node.
type nodeState struct {
	installed map[string]string // package -> version
	held      map[string]bool
	cands     map[string][]Candidate
}

func probe(ctx context.Context, req *engine.Request, r engine.Runner, names []string) (*nodeState, error) {
	st := &nodeState{installed: map[string]string{}, held: map[string]bool{}}
	q := engine.Command{Argv: append([]string{"dpkg-query", "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\\n"}, names...)}
	res, err := r.Run(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("reading installed packages: %w", err)
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		// db:Status-Abbrev: the desired action ("i" install, "h" hold),
		// then the state ("i" installed): "ii" and held "hi" are installed.
		if len(f) >= 3 && len(f[2]) >= 2 && f[2][1] == 'i' {
			st.installed[f[0]] = f[1]
		}
	}
	res, err = r.Run(ctx, engine.Command{Argv: []string{"apt-mark", "showhold"}})
	if err != nil {
		return nil, fmt.Errorf("reading held packages: %w", err)
	}
	for _, l := range strings.Fields(res.Stdout) {
		st.held[l] = true
	}
	res, err = r.Run(ctx, engine.Command{Argv: append([]string{"apt-cache", "madison"}, names...)})
	if err != nil {
		return nil, fmt.Errorf("reading available versions: %w", err)
	}
	st.cands = ParseMadison(res.Stdout)
	return st, nil
}

// Plan implements engine.Kind.
func (Kind) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	ws := wants(req)
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.name
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err == engine.ErrOffline {
		return offlinePlan(req, ws), nil
	} else if err != nil {
		return nil, err
	}
	st, err := probe(ctx, req, r, names)
	if err != nil {
		return nil, err
	}
	ch := &engine.Change{Action: engine.ActionNoOp}
	resolved := map[string]cty.Value{}
	var change, unhold []string
	var installs []string
	repoStep := repositoryStepBefore(req)
	for _, w := range ws {
		c, ok := Resolve(st.cands[w.name], w.upstream)
		if !ok && repoStep != "" {
			// An earlier step switches the repository: the version is
			// resolved when this step runs, after the switch.
			ch.Warnings = append(ch.Warnings, fmt.Sprintf("%s %s is not in the repositories configured now; step %q switches them first, the version is resolved then", w.name, w.upstream, repoStep))
			resolved[w.name] = cty.UnknownVal(cty.String)
			change = append(change, w.name)
			installs = append(installs, w.name+"="+w.upstream+"-<revision resolved after the switch>")
			if st.held[w.name] {
				unhold = append(unhold, w.name)
			}
			continue
		}
		if !ok {
			ch.Blockers = append(ch.Blockers, notAvailable(w, st.cands[w.name]))
			resolved[w.name] = cty.UnknownVal(cty.String)
			continue
		}
		resolved[w.name] = cty.StringVal(c.Version)
		cur := st.installed[w.name]
		switch {
		case cur == c.Version:
			ch.Details = append(ch.Details, fmt.Sprintf("%s %s is installed already", w.name, cur))
			continue
		case cur != "" && CompareDebian(c.Version, cur) < 0 && !req.Args.Bool("allow_downgrade"):
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s: installing %s would downgrade it from %s (set allow_downgrade = true)", w.name, c.Version, cur))
			continue
		}
		from := cur
		if from == "" {
			from = "not installed"
		}
		ch.Details = append(ch.Details, fmt.Sprintf("%s: %s -> %s (from %s)", w.name, from, c.Version, c.Source))
		change = append(change, w.name)
		installs = append(installs, w.name+"="+c.Version)
		if st.held[w.name] {
			unhold = append(unhold, w.name)
		}
	}
	if len(change) > 0 {
		ch.Action = engine.ActionChange
		ch.Summary = "install " + strings.Join(installs, " ") + " on " + req.NodeName()
		ch.Commands = engine.Shells(commands(req, unhold, installs, change)...)
	} else if len(ch.Blockers) == 0 {
		ch.Summary = "packages already at their versions on " + req.NodeName()
	} else {
		ch.Action = engine.ActionChange
		ch.Summary = "install on " + req.NodeName() + " (cannot resolve every version)"
	}
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"versions": cty.MapVal(resolved)})
	return ch, nil
}

// repositoryStepBefore names an apt_repository step that runs before this
// one on the same node, or "".
func repositoryStepBefore(req *engine.Request) string {
	if req.Step.Phase == nil {
		return ""
	}
	for _, s := range req.Step.Phase.Steps {
		if s == req.Step {
			return ""
		}
		if s.Kind == "apt_repository" {
			return s.Name
		}
	}
	return ""
}

func notAvailable(w pkgWant, cands []Candidate) string {
	if len(cands) == 0 {
		return fmt.Sprintf("%s: no version at all is available from the configured repositories; is the repository for %s configured (apt_repository step) and apt-get update run?", w.name, minorOf(w.upstream))
	}
	var vers []string
	srcs := map[string]bool{}
	for _, c := range cands {
		vers = append(vers, c.Version)
		srcs[c.Source] = true
	}
	var sl []string
	for s := range srcs {
		sl = append(sl, s)
	}
	sort.Strings(sl)
	return fmt.Sprintf("%s %s is not in the configured repositories (they offer %s, from: %s); switch the repository to %s first with an apt_repository step", w.name, w.upstream, strings.Join(vers, ", "), strings.Join(sl, "; "), minorOf(w.upstream))
}

func minorOf(v string) string {
	pv, err := plans.ParseVersion(v)
	if err != nil {
		return v
	}
	return "v" + pv.MinorString()
}

// commands is the sequence the step runs: unhold exactly the held packages
// the install changes, install, then hold again (also when the install
// fails: Apply runs the hold in a finally path), then verify.
func commands(req *engine.Request, unhold, installs, change []string) []engine.Command {
	var cmds []engine.Command
	if req.Args.Bool("update") {
		cmds = append(cmds, req.Cmd("apt-get", "update"))
	}
	if len(unhold) > 0 {
		cmds = append(cmds, req.Cmd(append([]string{"apt-mark", "unhold"}, unhold...)...))
	}
	args := []string{"apt-get", "install", "-y"}
	if req.Args.Bool("allow_downgrade") {
		args = append(args, "--allow-downgrades")
	}
	cmds = append(cmds, req.Cmd(append(args, installs...)...))
	hold := unhold
	if req.Args.Bool("hold") {
		hold = change
	}
	if len(hold) > 0 {
		cmds = append(cmds, req.Cmd(append([]string{"apt-mark", "hold"}, hold...)...))
	}
	cmds = append(cmds, engine.Command{Argv: append([]string{"dpkg-query", "-W", "-f=${Package} ${Version}\\n"}, change...)})
	return cmds
}

func offlinePlan(req *engine.Request, ws []pkgWant) *engine.Change {
	var installs, names []string
	resolved := map[string]cty.Value{}
	for _, w := range ws {
		installs = append(installs, w.name+"="+w.upstream+"-<revision resolved on the node>")
		names = append(names, w.name)
		resolved[w.name] = cty.UnknownVal(cty.String)
	}
	ch := &engine.Change{Action: engine.ActionChange, Summary: "install " + strings.Join(installs, " ") + " on " + req.NodeName()}
	// Offline, which packages are held is unknown: show the full sequence
	// the seed's procedure uses.
	ch.Commands = engine.Shells(commands(req, names, installs, names)...)
	ch.Warnings = []string{"offline: installed versions, holds and the repository's version strings were not read; the online plan resolves them (apt-cache madison)"}
	if len(resolved) > 0 {
		ch.Outputs = cty.ObjectVal(map[string]cty.Value{"versions": cty.MapVal(resolved)})
	}
	return ch
}

// Apply implements engine.Kind: it reads the node again (check-then-act),
// unholds exactly the held packages the install changes, installs, holds
// again in a finally path (also when the install fails), and verifies the
// installed versions with dpkg-query.
func (Kind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	ws := wants(req)
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.name
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	if req.Args.Bool("update") {
		if _, err := noderun.Run(ctx, req, r, req.Cmd("apt-get", "update")); err != nil {
			return cty.NilVal, err
		}
	}
	st, err := probe(ctx, req, r, names)
	if err != nil {
		return cty.NilVal, err
	}
	resolved := map[string]string{}
	var change, unhold, installs []string
	for _, w := range ws {
		c, ok := Resolve(st.cands[w.name], w.upstream)
		if !ok {
			return cty.NilVal, errors.New(notAvailable(w, st.cands[w.name]))
		}
		resolved[w.name] = c.Version
		if st.installed[w.name] == c.Version {
			continue
		}
		change = append(change, w.name)
		installs = append(installs, w.name+"="+c.Version)
		if st.held[w.name] {
			unhold = append(unhold, w.name)
		}
	}
	out := func() cty.Value {
		m := map[string]cty.Value{}
		for k, v := range resolved {
			m[k] = cty.StringVal(v)
		}
		return cty.ObjectVal(map[string]cty.Value{"versions": cty.MapVal(m)})
	}
	if len(change) == 0 {
		return out(), nil
	}
	hold := unhold
	if req.Args.Bool("hold") {
		hold = change
	}
	installErr := func() error {
		if len(unhold) > 0 {
			if _, err := noderun.Run(ctx, req, r, req.Cmd(append([]string{"apt-mark", "unhold"}, unhold...)...)); err != nil {
				return err
			}
		}
		args := []string{"apt-get", "install", "-y"}
		if req.Args.Bool("allow_downgrade") {
			args = append(args, "--allow-downgrades")
		}
		_, err := noderun.Run(ctx, req, r, req.Cmd(append(args, installs...)...))
		return err
	}()
	// Finally: hold again, even when the install failed, so that a failed
	// run never leaves a package unheld for the next unattended upgrade.
	if len(hold) > 0 {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		_, herr := noderun.Run(hctx, req, r, req.Cmd(append([]string{"apt-mark", "hold"}, hold...)...))
		cancel()
		if herr != nil {
			installErr = errors.Join(installErr, fmt.Errorf("holding %s again: %w", strings.Join(hold, " "), herr))
		}
	}
	if installErr != nil {
		return cty.NilVal, installErr
	}
	res, err := noderun.Run(ctx, req, r, engine.Command{Argv: append([]string{"dpkg-query", "-W", "-f=${Package} ${Version}\\n"}, change...)})
	if err != nil {
		return cty.NilVal, err
	}
	got := map[string]string{}
	for _, line := range strings.Split(res.Stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			got[f[0]] = f[1]
		}
	}
	for _, p := range change {
		if got[p] != resolved[p] {
			return cty.NilVal, fmt.Errorf("after the install %s is at %q on %s, not %s", p, got[p], req.NodeName(), resolved[p])
		}
	}
	return out(), nil
}
