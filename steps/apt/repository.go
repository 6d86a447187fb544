package apt

import (
	"context"
	"fmt"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/internal/noderun"
	"github.com/zclconf/go-cty/cty"
)

// Repository is the apt_repository kind.
type Repository struct{}

var repoSchema = &plans.KindSchema{
	Name:    "apt_repository",
	Summary: "Point the node's Kubernetes apt source at one minor release's repository (pkgs.k8s.io style), showing the change as a diff.",
	Target:  plans.TargetNode,
	Args: []plans.ArgSchema{
		{Name: "minor", Type: cty.String, Required: true, Doc: "The minor release, e.g. \"1.28\" (minor() of a version gives it)."},
		{Name: "file", Type: cty.String, Default: cty.StringVal("/etc/apt/sources.list.d/kubernetes.list"), Format: plans.FormatAbsPath, Doc: "The sources file to write."},
		{Name: "url", Type: cty.String, Default: cty.StringVal("https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"), Doc: "Repository URL; {minor} is replaced by the minor release."},
		{Name: "keyring", Type: cty.String, Default: cty.StringVal("/etc/apt/keyrings/kubernetes-apt-keyring.gpg"), Format: plans.FormatAbsPath, Doc: "The signed-by keyring."},
		{Name: "update", Type: cty.Bool, Default: cty.True, Doc: "Run apt-get update after changing the file."},
	},
	Outputs: []plans.OutputSchema{{Name: "line", Type: cty.String, Doc: "The source line written."}},
	Check: func(args cty.Value) []plans.ArgError {
		m := args.GetAttr("minor")
		if !m.IsKnown() || m.IsNull() {
			return nil
		}
		v, err := plans.ParseVersion(m.AsString())
		if err != nil || v.MinorString() != strings.TrimPrefix(m.AsString(), "v") {
			return []plans.ArgError{{Arg: "minor", Summary: "Invalid minor release", Detail: fmt.Sprintf("%q: give a minor release such as \"1.28\".", m.AsString())}}
		}
		return nil
	},
}

// Schema implements engine.Kind.
func (Repository) Schema() *plans.KindSchema { return repoSchema }

// SourceLine is the deb line for a minor release.
func SourceLine(url, keyring, minor string) string {
	return fmt.Sprintf("deb [signed-by=%s] %s /", keyring, strings.ReplaceAll(url, "{minor}", strings.TrimPrefix(minor, "v")))
}

func repoCommands(req *engine.Request, line string) []engine.Command {
	file := req.Args.String("file")
	cmds := []engine.Command{req.Cmd("sh", "-c", `printf '%s\n' "$1" > "$2.runbook-new" && mv "$2.runbook-new" "$2"`, "sh", line, file)}
	if req.Args.Bool("update") {
		cmds = append(cmds, req.Cmd("apt-get", "update"))
	}
	return cmds
}

// Plan implements engine.Kind.
func (Repository) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	file := req.Args.String("file")
	line := SourceLine(req.Args.String("url"), req.Args.String("keyring"), req.Args.String("minor"))
	ch := &engine.Change{Action: engine.ActionChange, Summary: fmt.Sprintf("set %s on %s to the v%s repository", file, req.NodeName(), strings.TrimPrefix(req.Args.String("minor"), "v")),
		Commands: engine.Shells(repoCommands(req, line)...),
		Details:  []string{"+ " + line},
		Outputs:  cty.ObjectVal(map[string]cty.Value{"line": cty.StringVal(line)}),
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err == engine.ErrOffline {
		ch.Warnings = []string{"offline: the current file was not read"}
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	res, err := r.Run(ctx, engine.Command{Argv: []string{"cat", file}})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	cur := strings.TrimRight(res.Stdout, "\n")
	if res.ExitCode == 0 && cur == line {
		ch.Action, ch.Summary, ch.Commands, ch.Details = engine.ActionNoOp, file+" already names the v"+strings.TrimPrefix(req.Args.String("minor"), "v")+" repository", nil, nil
		return ch, nil
	}
	var diff []string
	for _, l := range strings.Split(cur, "\n") {
		if l != "" {
			diff = append(diff, "- "+l)
		}
	}
	ch.Details = append(diff, "+ "+line)
	return ch, nil
}

// Apply implements engine.Kind: it writes the file atomically, updates the
// package lists, and checks the file says what it should.
func (Repository) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	file := req.Args.String("file")
	line := SourceLine(req.Args.String("url"), req.Args.String("keyring"), req.Args.String("minor"))
	for _, c := range repoCommands(req, line) {
		if _, err := noderun.Run(ctx, req, r, c); err != nil {
			return cty.NilVal, err
		}
	}
	res, err := noderun.Run(ctx, req, r, engine.Command{Argv: []string{"cat", file}})
	if err != nil {
		return cty.NilVal, err
	}
	if strings.TrimRight(res.Stdout, "\n") != line {
		return cty.NilVal, fmt.Errorf("%s on %s does not hold the written line after writing it", file, req.NodeName())
	}
	return cty.ObjectVal(map[string]cty.Value{"line": cty.StringVal(line)}), nil
}
