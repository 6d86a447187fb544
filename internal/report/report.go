// Package report turns a run journal into what people read after a run: an
// HTML page with a per-node timeline of steps, and the same facts as
// markdown and JSON for drills and audits. It reads journals; it never
// talks to a cluster.
package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/plans"
)

// Step is one step instance's life in the run.
type Step struct {
	Address  string        `json:"address"`
	Node     string        `json:"node,omitempty"`
	Kind     string        `json:"kind"`
	Status   string        `json:"status"` // finished, failed, skipped, in doubt
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"`
	Duration time.Duration `json:"duration_ns"`
	Summary  string        `json:"summary,omitempty"`
	Error    string        `json:"error,omitempty"`
	Attempts int           `json:"attempts"`
	// spans are the attempts' intervals: a killed attempt ends at its
	// last record, so the pause before a resume is no step's time.
	spans [][2]time.Time
}

// Report is a run, folded from its journal.
type Report struct {
	RunID    string                    `json:"run_id"`
	Runbook  string                    `json:"runbook"`
	PlanHash string                    `json:"plan_hash"`
	Status   string                    `json:"status"`
	Start    time.Time                 `json:"start"`
	End      time.Time                 `json:"end"`
	Duration time.Duration             `json:"duration_ns"`
	Attempts int                       `json:"attempts"` // how many times the run was started (resumes + 1)
	Nodes    []string                  `json:"nodes"`
	Steps    []Step                    `json:"steps"`
	Before   map[string]map[string]any `json:"nodes_before"`
	Drill    *Drill                    `json:"drill,omitempty"`
	// ByKind is where the wall time went, per step kind; Between is the
	// wall time when no step ran (planning, pre-flight, lock, journal,
	// node snapshots, and the pause of a killed run before its resume).
	ByKind  []KindTime    `json:"by_kind"`
	Between time.Duration `json:"between_steps_ns"`
}

// KindTime is the time steps of one kind took in a run.
type KindTime struct {
	Kind  string `json:"kind"`
	Steps int    `json:"steps"`
	// Wall is the union of the kind's step intervals: wall time during
	// which at least one step of the kind ran.
	Wall time.Duration `json:"wall_ns"`
	// Sum adds up every step's duration (nodes in parallel each count).
	Sum time.Duration `json:"sum_ns"`
}

// Drill is what a disaster-recovery drill measured and checked.
type Drill struct {
	Status string `json:"status"` // passed or failed
	// RecoveryStart is when the first restore step started; Recovered is
	// when every expectation first held after it.
	RecoveryStart  time.Time     `json:"recovery_start"`
	Recovered      time.Time     `json:"recovered,omitzero"`
	TimeToRecovery time.Duration `json:"time_to_recovery_ns"`
	// SnapshotAge is how old the restored snapshot was when etcd came back
	// on it (-1: no etcd restore in the run).
	SnapshotAge  time.Duration `json:"snapshot_age_ns"`
	SnapshotTime time.Time     `json:"snapshot_time,omitzero"`
	Checks       []Check       `json:"checks"`
	Error        string        `json:"error,omitempty"`
}

// Check is one expectation of a drill.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Want   string `json:"want,omitempty"`
	Got    string `json:"got,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Build folds journal records into a report.
func Build(recs []journal.Record) *Report {
	r := &Report{Before: map[string]map[string]any{}}
	idx := map[string]int{}
	nodes := map[string]bool{}
	for _, rec := range recs {
		if r.Start.IsZero() || rec.Time.Before(r.Start) {
			r.Start = rec.Time
		}
		if rec.Time.After(r.End) {
			r.End = rec.Time
		}
		switch rec.Type {
		case journal.RunStarted:
			r.Attempts++
			if r.RunID == "" {
				r.RunID, r.Runbook, r.PlanHash = rec.RunID, rec.Runbook, rec.PlanHash
			}
			r.Status = "running (or killed)"
		case journal.RunFinished:
			r.Status = rec.Status
		case journal.NodeState:
			if _, ok := r.Before[rec.Node]; !ok {
				r.Before[rec.Node] = rec.State
			}
		case journal.StepStarted, journal.StepFinished, journal.StepFailed, journal.StepSkipped:
			i, ok := idx[rec.Address]
			if !ok {
				i = len(r.Steps)
				idx[rec.Address] = i
				r.Steps = append(r.Steps, Step{Address: rec.Address, Node: rec.Node, Kind: rec.Kind, Start: rec.Time})
				if rec.Node != "" {
					nodes[rec.Node] = true
				}
			}
			s := &r.Steps[i]
			s.End = rec.Time
			if rec.Type == journal.StepStarted || len(s.spans) == 0 {
				s.spans = append(s.spans, [2]time.Time{rec.Time, rec.Time})
			}
			s.spans[len(s.spans)-1][1] = rec.Time
			switch rec.Type {
			case journal.StepStarted:
				s.Attempts++
				s.Status = "in doubt"
				if s.Summary == "" {
					s.Summary = rec.Summary
				}
			case journal.StepFinished:
				s.Status, s.Error = "finished", ""
				if rec.Summary != "" {
					s.Summary = rec.Summary
				}
			case journal.StepFailed:
				s.Status, s.Error = "failed", rec.Error
			case journal.StepSkipped:
				s.Status, s.Summary = "skipped", rec.Reason
			}
			s.Duration = s.End.Sub(s.Start)
		}
	}
	r.Duration = r.End.Sub(r.Start)
	r.ByKind, r.Between = byKind(r.Steps, r.Duration)
	for n := range nodes {
		r.Nodes = append(r.Nodes, n)
	}
	sort.Slice(r.Nodes, func(i, j int) bool { return plans.NaturalLess(r.Nodes[i], r.Nodes[j]) })
	return r
}

// byKind totals step time per kind, and the wall time outside every step.
func byKind(steps []Step, wall time.Duration) ([]KindTime, time.Duration) {
	spans := map[string][][2]time.Time{}
	var all [][2]time.Time
	sums := map[string]*KindTime{}
	for _, s := range steps {
		if s.Status == "skipped" {
			continue
		}
		k := sums[s.Kind]
		if k == nil {
			k = &KindTime{Kind: s.Kind}
			sums[s.Kind] = k
		}
		k.Steps++
		for _, sp := range s.spans {
			k.Sum += sp[1].Sub(sp[0])
		}
		spans[s.Kind] = append(spans[s.Kind], s.spans...)
		all = append(all, s.spans...)
	}
	out := make([]KindTime, 0, len(sums))
	for kind, k := range sums {
		k.Wall = union(spans[kind])
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Wall != out[j].Wall {
			return out[i].Wall > out[j].Wall
		}
		return out[i].Kind < out[j].Kind
	})
	return out, max(0, wall-union(all))
}

// union is the total length covered by the intervals.
func union(iv [][2]time.Time) time.Duration {
	sort.Slice(iv, func(i, j int) bool { return iv[i][0].Before(iv[j][0]) })
	var total time.Duration
	var cur [2]time.Time
	for i, v := range iv {
		switch {
		case i == 0:
			cur = v
		case v[0].After(cur[1]):
			total += cur[1].Sub(cur[0])
			cur = v
		case v[1].After(cur[1]):
			cur[1] = v[1]
		}
	}
	if len(iv) > 0 {
		total += cur[1].Sub(cur[0])
	}
	return total
}

// JSON writes the report as JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Markdown writes the report as markdown.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "# Run %s of `%s`\n\n", r.RunID, r.Runbook)
	fmt.Fprintf(w, "**%s** in %s (%s to %s, %d attempt(s), plan `%s`)\n\n", r.Status, r.Duration.Round(time.Second), r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339), r.Attempts, r.PlanHash)
	if d := r.Drill; d != nil {
		fmt.Fprintf(w, "## Drill: %s\n\n", d.Status)
		fmt.Fprintf(w, "- time to recovery: **%s** (first restore step started %s)\n", dur(d.TimeToRecovery, d.Recovered.IsZero()), d.RecoveryStart.Format(time.RFC3339))
		if d.SnapshotAge >= 0 {
			fmt.Fprintf(w, "- snapshot age at restore: **%s** (written %s): the changes a real recovery would lose\n", d.SnapshotAge.Round(time.Second), d.SnapshotTime.Format(time.RFC3339))
		}
		if d.Error != "" {
			fmt.Fprintf(w, "- error: %s\n", d.Error)
		}
		fmt.Fprintln(w, "\n| expectation | ok | want | got |\n|---|---|---|---|")
		for _, c := range d.Checks {
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", c.Name, map[bool]string{true: "yes", false: "**no**"}[c.OK], c.Want, strings.ReplaceAll(c.Got, "|", `\|`))
		}
		fmt.Fprintln(w)
	}
	if len(r.ByKind) > 0 {
		fmt.Fprintln(w, "## Where the time went\n\n| step kind | steps | wall time | share | sum over nodes |\n|---|---|---|---|---|")
		for _, k := range r.ByKind {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", k.Kind, k.Steps, k.Wall.Round(100*time.Millisecond), share(k.Wall, r.Duration), k.Sum.Round(100*time.Millisecond))
		}
		fmt.Fprintf(w, "| (between steps) | | %s | %s | |\n\n", r.Between.Round(100*time.Millisecond), share(r.Between, r.Duration))
	}
	fmt.Fprintln(w, "## Steps\n\n| step | node | status | started | took | detail |\n|---|---|---|---|---|---|")
	for _, s := range r.Steps {
		detail := s.Summary
		if s.Error != "" {
			detail = s.Error
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s | %s |\n", s.Address, s.Node, s.Status, s.Start.Format("15:04:05"), s.Duration.Round(time.Millisecond), strings.NewReplacer("|", `\|`, "\n", " ").Replace(detail))
	}
}

func share(d, of time.Duration) string {
	if of <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*d.Seconds()/of.Seconds())
}

// dur prints a measured duration, or "not recovered" when it never ended.
func dur(d time.Duration, never bool) string {
	if never {
		return "not recovered"
	}
	return d.Round(100 * time.Millisecond).String()
}

type bar struct {
	X, W, Y float64
	Color   string
	Title   string
}

// HTML writes a page with a per-node timeline.
func (r *Report) HTML(w io.Writer) error {
	const width, rowH, left = 900.0, 26.0, 140.0
	rows := append([]string{"(cluster)"}, r.Nodes...)
	rowOf := map[string]int{}
	for i, n := range rows {
		rowOf[n] = i
	}
	total := r.Duration.Seconds()
	if total <= 0 {
		total = 1
	}
	var bars []bar
	for _, s := range r.Steps {
		row := rowOf["(cluster)"]
		if s.Node != "" {
			row = rowOf[s.Node]
		}
		x := left + (s.Start.Sub(r.Start).Seconds()/total)*(width-left)
		wd := (s.Duration.Seconds() / total) * (width - left)
		if wd < 2 {
			wd = 2
		}
		color := map[string]string{"finished": "#3a7", "failed": "#c33", "skipped": "#aaa", "in doubt": "#e90"}[s.Status]
		title := fmt.Sprintf("%s: %s, %s", s.Address, s.Status, s.Duration.Round(time.Millisecond))
		if s.Error != "" {
			title += ": " + s.Error
		}
		bars = append(bars, bar{X: x, W: wd, Y: float64(row)*rowH + 4, Color: color, Title: title})
	}
	data := map[string]any{"R": r, "Rows": rows, "Bars": bars, "Width": width, "Height": float64(len(rows))*rowH + 24, "RowH": rowH, "Left": left,
		"Took": r.Duration.Round(time.Second).String(), "Axis": fmt.Sprintf("0 s to %.0f s", total)}
	if d := r.Drill; d != nil {
		x := left + (d.RecoveryStart.Sub(r.Start).Seconds()/total)*(width-left)
		end := d.Recovered
		if end.IsZero() {
			end = r.End
		}
		data["Height"] = float64(len(rows))*rowH + 34
		data["Recovery"] = bar{X: x, W: max(2, (end.Sub(d.RecoveryStart).Seconds()/total)*(width-left)), Y: float64(len(rows))*rowH + 2, Color: "#36c",
			Title: "time to recovery: " + dur(d.TimeToRecovery, d.Recovered.IsZero())}
		data["TTR"] = dur(d.TimeToRecovery, d.Recovered.IsZero())
	}
	return page.Execute(w, data)
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"rowY": func(i int, h float64) float64 { return float64(i)*h + 18 },
	"dur":  func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"hms":  func(t time.Time) string { return t.Format("15:04:05") },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>runbook run {{.R.RunID}}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
.failed{color:#c33}.finished{color:#282}.skipped{color:#888}code{font-size:12px}</style></head>
<body>
<h1>Run {{.R.RunID}} of <code>{{.R.Runbook}}</code></h1>
<p><b>{{.R.Status}}</b> in {{.Took}}, {{.R.Attempts}} attempt(s), plan {{.R.PlanHash}}</p>
{{with .R.Drill}}<h2>Drill: {{.Status}}</h2>
<p>Time to recovery: <b>{{$.TTR}}</b> (from the first restore step to every expectation holding){{if ge .SnapshotAge 0}}; snapshot age at restore: <b>{{dur .SnapshotAge}}</b>{{end}}.{{if .Error}} Error: {{.Error}}{{end}}</p>
<table><tr><th>expectation</th><th>ok</th><th>want</th><th>got</th></tr>
{{range .Checks}}<tr><td>{{.Name}}</td><td class="{{if .OK}}finished{{else}}failed{{end}}">{{if .OK}}yes{{else}}no{{end}}</td><td>{{.Want}}</td><td>{{.Got}}</td></tr>
{{end}}</table>{{end}}
<h2>Timeline</h2>
<svg width="{{.Width}}" height="{{.Height}}" xmlns="http://www.w3.org/2000/svg">
{{range $i, $n := .Rows}}<text x="4" y="{{rowY $i $.RowH}}" font-size="12">{{$n}}</text>{{end}}
{{with .Recovery}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="6" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}
{{range .Bars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="18" fill="{{.Color}}"><title>{{.Title}}</title></rect>{{end}}
<text x="{{.Left}}" y="{{.Height}}" font-size="11" fill="#666">{{.Axis}}</text>
</svg>
<h2>Steps</h2>
<table><tr><th>step</th><th>node</th><th>status</th><th>started</th><th>took</th><th>attempts</th><th>detail</th></tr>
{{range .R.Steps}}<tr><td><code>{{.Address}}</code></td><td>{{.Node}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{hms .Start}}</td><td>{{dur .Duration}}</td><td>{{.Attempts}}</td><td>{{if .Error}}{{.Error}}{{else}}{{.Summary}}{{end}}</td></tr>
{{end}}</table>
</body></html>
`))
