package cli

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/view"
	"github.com/runbookhq/runbook/plans"
	"github.com/runbookhq/runbook/steps/all"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/term"
)

// varFlags are the flags that give variables.
type varFlags struct {
	vars     []string
	varFiles []string
}

func (v *varFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&v.vars, "var", nil, "set a variable: NAME=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&v.varFiles, "var-file", nil, "read variables from an HCL or JSON file (repeatable)")
}

// loaded is a parsed and evaluated plan.
type loaded struct {
	plan  *plans.Plan
	vals  *plans.Values
	kinds *engine.Registry
	diags hcl.Diagnostics
	in    plans.Inputs // what vals was evaluated from, answered prompts included
}

// asOf evaluates the plan again as of t, with the same inputs and without
// asking again: a resumed run keeps its first attempt's timestamp(), so
// that names made from it (a backup directory) are the same.
func (l *loaded) asOf(t time.Time) hcl.Diagnostics {
	in := l.in
	in.Now, in.Prompt = t, nil
	vals, d := plans.Evaluate(l.plan, in)
	if !d.HasErrors() {
		l.vals = vals
	}
	return d
}

// planFiles lists the files of one plan: a file is a plan by itself; a
// directory is a plan made of its .hcl files, in name order.
func planFiles(arg string) ([]string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{arg}, nil
	}
	files, _ := filepath.Glob(filepath.Join(arg, "*.hcl"))
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no .hcl files", arg)
	}
	sort.Strings(files)
	return files, nil
}

// load parses and evaluates one plan (a file, or a directory of files).
// partial leaves missing variables unknown (validate).
func load(stdio *IO, arg string, vf varFlags, partial bool) *loaded {
	l := &loaded{kinds: all.Registry()}
	files, err := planFiles(arg)
	if err != nil {
		l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read plan", Detail: err.Error()})
		return l
	}
	p, diags := plans.Parse(files, l.kinds)
	l.plan, l.diags = p, diags
	if diags.HasErrors() {
		return l
	}
	in := plans.Inputs{Vars: vf.vars, VarFiles: vf.varFiles, Environ: stdio.Environ, Partial: partial}
	if f, ok := stdio.In.(*os.File); ok && !partial && term.IsTerminal(int(f.Fd())) {
		ask := prompter(f, stdio.Err)
		in.Prompt = func(v *plans.Variable) (string, error) {
			s, err := ask(v)
			if err == nil {
				// Kept as the last -var so that asOf needs no second answer.
				l.in.Vars = append(l.in.Vars, v.Name+"="+s)
			}
			return s, err
		}
	}
	l.in = in
	l.in.Vars = append([]string(nil), in.Vars...)
	vals, d := plans.Evaluate(p, in)
	l.vals = vals
	l.diags = append(l.diags, d...)
	return l
}

func prompter(in io.Reader, out io.Writer) func(*plans.Variable) (string, error) {
	r := bufio.NewReader(in)
	return func(v *plans.Variable) (string, error) {
		fmt.Fprintf(out, "var.%s\n", v.Name)
		if v.Description != "" {
			fmt.Fprintf(out, "  %s\n", v.Description)
		}
		fmt.Fprint(out, "  Enter a value: ")
		if v.Sensitive {
			if f, ok := in.(*os.File); ok {
				b, err := term.ReadPassword(int(f.Fd()))
				fmt.Fprintln(out)
				return string(b), err
			}
		}
		s, err := r.ReadString('\n')
		if err != nil && s == "" {
			return "", fmt.Errorf("no input: %w", err)
		}
		return strings.TrimRight(s, "\r\n"), nil
	}
}

// writeDiags prints diagnostics to stderr with source snippets.
func (l *loaded) writeDiags(stdio *IO) {
	files := map[string]*hcl.File{}
	if l.plan != nil {
		files = l.plan.Files
	}
	view.WriteDiags(stdio.Err, files, l.diags, false)
}

// planHash identifies the plan's files and their contents.
func planHash(p *plans.Plan) string {
	h := sha256.New()
	for _, f := range p.Filenames {
		fmt.Fprintf(h, "%s\x00", f)
		if hf := p.Files[f]; hf != nil {
			h.Write(hf.Bytes)
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// header describes the plan for views; sensitive values are never shown.
func header(l *loaded, offline bool) view.Header {
	h := view.Header{Name: l.plan.RunbookName(), Files: l.plan.Filenames, Offline: offline, PlanHash: planHash(l.plan), VarsHash: l.vals.VarsHash}
	if l.plan.Runbook != nil {
		h.Description = l.plan.Runbook.Description
	}
	for _, v := range l.plan.Variables {
		val := l.vals.Vars[v.Name]
		shown := "(sensitive)"
		if !v.Sensitive && !val.HasMark(plans.SensitiveMark) {
			shown = valueString(val)
		}
		h.Variables = append(h.Variables, view.Variable{Name: v.Name, Value: shown})
	}
	view.SortVariables(h.Variables)
	return h
}

func valueString(v cty.Value) string {
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return engine.UnknownText
	}
	return strings.TrimSpace(string(hclwrite.TokensForValue(v).Bytes()))
}
