// Package view renders what people and machines read: the dry-run as text
// for terminals, markdown for pull requests and JSON for machines, and
// diagnostics. It computes nothing about the plan itself.
package view

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/zclconf/go-cty/cty"
)

// Counts summarises a plan.
type Counts struct {
	Change  int `json:"change"`
	Read    int `json:"read"`
	NoOp    int `json:"no_op"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"`
}

// Count tallies the planned steps.
func Count(r *engine.PlanResult) Counts {
	var c Counts
	for _, s := range r.Steps {
		switch {
		case s.Failed() || (s.Change != nil && len(s.Change.Blockers) > 0):
			c.Failed++
		case s.Skip != "":
			c.Skipped++
		case s.Change == nil:
		case s.Change.Action == engine.ActionChange:
			c.Change++
		case s.Change.Action == engine.ActionRead:
			c.Read++
		default:
			c.NoOp++
		}
	}
	return c
}

// Header describes the plan being shown.
type Header struct {
	Name        string
	Description string
	Files       []string
	Offline     bool
	PlanHash    string
	VarsHash    string
	Variables   []Variable
	Preflight   []string // one line per node: SSH, host key, sudo
}

// Variable is a variable as shown; sensitive values are never shown.
type Variable struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// group is a run of steps shown together: a top-level step, or a node of a
// phase. A phase that selected no nodes is a group with no steps.
type group struct {
	phase, node string
	batch       int
	steps       []*engine.PlannedStep
}

// groups follows the program's units; r.Steps are in the same order.
func groups(r *engine.PlanResult) []group {
	var out []group
	i := 0
	for _, u := range r.Program.Units {
		if u.Step != nil {
			out = append(out, group{steps: r.Steps[i : i+1]})
			i++
			continue
		}
		if len(u.Nodes) == 0 {
			out = append(out, group{phase: u.Phase.Name})
			continue
		}
		for b, batch := range u.Batches {
			for _, n := range batch {
				k := len(u.Phase.Steps)
				out = append(out, group{phase: u.Phase.Name, node: n.Name, batch: b + 1, steps: r.Steps[i : i+k]})
				i += k
			}
		}
	}
	return out
}

func action(s *engine.PlannedStep) string {
	switch {
	case s.Failed():
		return "error"
	case s.Change != nil && len(s.Change.Blockers) > 0:
		return "refused"
	case s.Skip != "":
		return "skip"
	case s.Change == nil:
		return "?"
	case s.Conditional:
		return string(s.Change.Action) + " (if when holds)"
	}
	return string(s.Change.Action)
}

func summary(s *engine.PlannedStep) string {
	switch {
	case s.Skip != "":
		return "skipped: " + s.Skip
	case s.Change != nil:
		return s.Change.Summary
	case s.Err != nil:
		return s.Err.Error()
	}
	return ""
}

// Text writes the dry-run for a terminal.
func Text(w io.Writer, h Header, r *engine.PlanResult) {
	fmt.Fprintf(w, "Plan: %s", h.Name)
	if h.Offline {
		fmt.Fprint(w, " (offline)")
	}
	fmt.Fprintf(w, "\n  files: %s\n", strings.Join(h.Files, ", "))
	for _, v := range h.Variables {
		fmt.Fprintf(w, "  var.%s = %s\n", v.Name, v.Value)
	}
	for _, p := range h.Preflight {
		fmt.Fprintf(w, "  pre-flight %s\n", p)
	}
	lastPhase := ""
	for _, g := range groups(r) {
		indent := ""
		if g.phase == "" {
			lastPhase = ""
			fmt.Fprintln(w)
		} else {
			if g.phase != lastPhase {
				fmt.Fprintf(w, "\nphase %q\n", g.phase)
				lastPhase = g.phase
			}
			if g.node == "" {
				fmt.Fprintln(w, "  no nodes selected: nothing to do")
				continue
			}
			fmt.Fprintf(w, "  node %s (batch %d)\n", g.node, g.batch)
			indent = "  "
		}
		for i, s := range g.steps {
			label := s.Address
			if g.phase != "" {
				label = fmt.Sprintf("%d. %s", i+1, s.Step.Name)
			}
			fmt.Fprintf(w, "%s  %s [%s] %s: %s\n", indent, label, s.Step.Kind, action(s), summary(s))
			writeBody(w, indent+"      ", s)
		}
	}
	c := Count(r)
	fmt.Fprintf(w, "\n%d steps: %d to change, %d to read, %d already done, %d skipped, %d refused or in error.\n",
		len(r.Steps), c.Change, c.Read, c.NoOp, c.Skipped, c.Failed)
}

func writeBody(w io.Writer, in string, s *engine.PlannedStep) {
	if s.Err != nil && s.Change != nil {
		fmt.Fprintf(w, "%serror: %v\n", in, s.Err)
	}
	for _, d := range s.Diags {
		fmt.Fprintf(w, "%serror: %s: %s\n", in, d.Summary, d.Detail)
	}
	if s.Change == nil || s.Skip != "" {
		return
	}
	for _, c := range s.Change.Commands {
		fmt.Fprintf(w, "%s$ %s\n", in, c)
	}
	for _, d := range s.Change.Details {
		fmt.Fprintf(w, "%s%s\n", in, d)
	}
	for _, x := range s.Change.Warnings {
		fmt.Fprintf(w, "%s! %s\n", in, x)
	}
	for _, x := range s.Change.Blockers {
		fmt.Fprintf(w, "%sREFUSED: %s\n", in, x)
	}
}

// Markdown writes the dry-run for a pull-request comment.
func Markdown(w io.Writer, h Header, r *engine.PlanResult) {
	c := Count(r)
	fmt.Fprintf(w, "## runbook plan: `%s`\n\n", h.Name)
	if h.Description != "" {
		fmt.Fprintf(w, "%s\n\n", h.Description)
	}
	fmt.Fprintf(w, "**%d to change, %d to read, %d already done, %d skipped, %d refused or in error** (%d steps", c.Change, c.Read, c.NoOp, c.Skipped, c.Failed, len(r.Steps))
	if h.Offline {
		fmt.Fprint(w, ", offline plan")
	}
	fmt.Fprintf(w, "; files %s; plan `%s`, variables `%s`)\n\n", mdCode(h.Files), h.PlanHash, h.VarsHash)
	if len(h.Preflight) > 0 {
		fmt.Fprintln(w, "Node pre-flight:")
		for _, p := range h.Preflight {
			fmt.Fprintf(w, "- %s\n", mdEscape(p))
		}
		fmt.Fprintln(w)
	}
	if len(h.Variables) > 0 {
		fmt.Fprintln(w, "| variable | value |\n|---|---|")
		for _, v := range h.Variables {
			fmt.Fprintf(w, "| `%s` | `%s` |\n", v.Name, mdEscape(v.Value))
		}
		fmt.Fprintln(w)
	}
	lastPhase := ""
	for _, g := range groups(r) {
		if g.phase == "" {
			lastPhase = ""
		} else {
			if g.phase != lastPhase {
				fmt.Fprintf(w, "### phase `%s`\n\n", g.phase)
				lastPhase = g.phase
			}
			if g.node == "" {
				fmt.Fprint(w, "No nodes selected: nothing to do.\n\n")
				continue
			}
			fmt.Fprintf(w, "#### node `%s` (batch %d)\n\n", g.node, g.batch)
		}
		for i, s := range g.steps {
			label := "`" + s.Address + "`"
			if g.phase != "" {
				label = fmt.Sprintf("%d. `%s`", i+1, s.Step.Name)
			} else {
				label = "- " + label
			}
			fmt.Fprintf(w, "%s (%s) **%s**: %s\n", label, s.Step.Kind, action(s), mdEscape(summary(s)))
			var body strings.Builder
			writeBody(&body, "", s)
			if body.Len() > 0 {
				fmt.Fprintf(w, "\n   ```\n")
				for _, l := range strings.Split(strings.TrimRight(body.String(), "\n"), "\n") {
					fmt.Fprintf(w, "   %s\n", strings.ReplaceAll(l, "```", "'''"))
				}
				fmt.Fprintf(w, "   ```\n")
			}
		}
		fmt.Fprintln(w)
	}
}

func mdCode(files []string) string {
	q := make([]string, len(files))
	for i, f := range files {
		q[i] = "`" + f + "`"
	}
	return strings.Join(q, ", ")
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// JSONPlan is the machine-readable dry-run; its shape is a contract
// (format_version changes when it breaks).
type JSONPlan struct {
	FormatVersion string     `json:"format_version"`
	Runbook       string     `json:"runbook"`
	Files         []string   `json:"files"`
	Offline       bool       `json:"offline"`
	PlanHash      string     `json:"plan_hash"`
	VarsHash      string     `json:"vars_hash"`
	Variables     []Variable `json:"variables"`
	Summary       Counts     `json:"summary"`
	Steps         []JSONStep `json:"steps"`
	Diagnostics   []JSONDiag `json:"diagnostics"`
}

// JSONStep is one step instance.
type JSONStep struct {
	Address  string         `json:"address"`
	Kind     string         `json:"kind"`
	Step     string         `json:"step"`
	Phase    string         `json:"phase,omitempty"`
	Node     string         `json:"node,omitempty"`
	Batch    int            `json:"batch,omitempty"`
	Action   string         `json:"action"`
	Summary  string         `json:"summary"`
	Commands []string       `json:"commands,omitempty"`
	Details  []string       `json:"details,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	Blockers []string       `json:"blockers,omitempty"`
	Outputs  map[string]any `json:"outputs,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// JSONValue renders a cty value for JSON; unknowns become UnknownText.
func JSONValue(v cty.Value) any {
	switch {
	case !v.IsKnown():
		return engine.UnknownText
	case v.IsNull():
		return nil
	case v.Type() == cty.String:
		return v.AsString()
	case v.Type() == cty.Bool:
		return v.True()
	case v.Type() == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case v.Type().IsObjectType() || v.Type().IsMapType():
		m := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			m[k.AsString()] = JSONValue(e)
		}
		return m
	case v.CanIterateElements():
		l := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			l = append(l, JSONValue(e))
		}
		return l
	}
	return v.GoString()
}

// BuildJSON converts a plan result.
func BuildJSON(h Header, r *engine.PlanResult) JSONPlan {
	jp := jsonHead(h, r)
	for _, s := range r.Steps {
		jp.Steps = append(jp.Steps, jsonStep(s))
	}
	return jp
}

func jsonHead(h Header, r *engine.PlanResult) JSONPlan {
	jp := JSONPlan{FormatVersion: "1", Runbook: h.Name, Files: h.Files, Offline: h.Offline, PlanHash: h.PlanHash, VarsHash: h.VarsHash,
		Variables: h.Variables, Summary: Count(r), Steps: []JSONStep{}, Diagnostics: Diags(r.Diags)}
	if jp.Variables == nil {
		jp.Variables = []Variable{}
	}
	return jp
}

func jsonStep(s *engine.PlannedStep) JSONStep {
	js := JSONStep{Address: s.Address, Kind: s.Step.Kind, Step: s.Step.Name, Batch: s.Batch, Action: action(s), Summary: summary(s)}
	if s.Step.Phase != nil {
		js.Phase = s.Step.Phase.Name
	}
	if s.Node != nil {
		js.Node = s.Node.Name
	}
	if s.Err != nil {
		js.Error = s.Err.Error()
	}
	for _, d := range s.Diags {
		js.Error = strings.TrimPrefix(js.Error+"; "+d.Summary+": "+d.Detail, "; ")
	}
	if ch := s.Change; ch != nil && s.Skip == "" {
		js.Commands, js.Details, js.Warnings, js.Blockers = ch.Commands, ch.Details, ch.Warnings, ch.Blockers
		if ch.Outputs != cty.NilVal && !ch.Outputs.IsNull() {
			if m, ok := JSONValue(ch.Outputs).(map[string]any); ok && len(m) > 0 {
				js.Outputs = m
			}
		}
	}
	return js
}

// JSON writes the dry-run as one JSON document, streaming the steps so that
// a plan of tens of thousands of steps is never held twice in memory.
func JSON(w io.Writer, h Header, r *engine.PlanResult) error {
	head, err := json.MarshalIndent(jsonHead(h, r), "", "  ")
	if err != nil {
		return err
	}
	// Splice the steps into the head's empty "steps": [] array.
	const empty = `"steps": [],`
	k := strings.Index(string(head), empty)
	if k < 0 {
		return fmt.Errorf("view: unexpected JSON head")
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head[:k])
	bw.WriteString(`"steps": [`)
	for i, s := range r.Steps {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		b, err := json.Marshal(jsonStep(s))
		if err != nil {
			return err
		}
		bw.Write(b)
	}
	if len(r.Steps) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("],")
	bw.Write(head[k+len(empty):])
	bw.WriteByte('\n')
	return bw.Flush()
}

// SortVariables orders variables by name.
func SortVariables(vs []Variable) {
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
}
