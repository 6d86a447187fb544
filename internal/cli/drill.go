package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/drill"
	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/internal/report"
	"github.com/runbookhq/runbook/plans"
	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// drillRun is what `runbook drill` adds to an apply.
type drillRun struct {
	reportDir string // --report-dir; else the plan's report_dir; else beside the journal
	settings  *plans.DrillSettings
	json      bool // -o json: the verdict is an event, nothing else is printed
}

func newDrill(stdio *IO) *cobra.Command {
	o := &applyOptions{drill: &drillRun{}}
	cmd := applyCommand(stdio, o)
	cmd.Use = "drill PLAN"
	cmd.Short = "Run a disaster-recovery drill: apply the plan, check its expectations, report the time to recovery"
	cmd.Long = `Run a disaster-recovery plan as a drill: the plan must declare
drill { non_production = true }, since a drill breaks things on purpose.
runbook applies it as apply does (journal, lock, resume), then waits,
bounded, for the drill's expectations (expect_objects from a resource
backup, expect_ready workloads), and writes a report (report.md,
report.json, report.html with the timeline) with the time to recovery and
the age of the restored snapshot.`
	cmd.Flags().StringVar(&o.drill.reportDir, "report-dir", "", "where the drill report goes (default: the plan's drill report_dir, else drill-<run id> beside the journal)")
	return cmd
}

// check refuses a plan that is not a drill against a non-production cluster.
func (d *drillRun) check(l *loaded) error {
	s, _ := l.vals.Drill() // its diagnostics were reported by validation
	if s == nil {
		return &exitError{code: ExitError, err: fmt.Errorf("%s has no drill block: runbook drill runs only plans that declare drill { non_production = true } (a drill deletes and restores on purpose); use runbook apply for other plans", strings.Join(l.plan.Filenames, ", "))}
	}
	if !s.NonProduction {
		return &exitError{code: ExitError, err: fmt.Errorf("%s: the drill block does not say non_production = true: runbook drill breaks the cluster on purpose and runs only against a cluster the plan marks as non-production; nothing was changed", s.DeclRange)}
	}
	d.settings = s
	return nil
}

// finish checks the drill's expectations after a successful run, writes
// the report and prints its verdict. A run that did not succeed is reported
// as a failed drill without checks.
func (d *drillRun) finish(ctx context.Context, emit func(engine.Event), stdio *IO, cfg *rest.Config, j *journal.Journal, status string) error {
	recs, err := journal.Read(j.Path())
	if err != nil {
		return &exitError{code: ExitError, err: fmt.Errorf("drill report: %w", err)}
	}
	r := report.Build(recs)
	start, age, taken := drill.Measure(recs)
	if start.IsZero() {
		start = r.Start // no restore step: the whole run is the recovery
	}
	res := &report.Drill{Status: "failed", RecoveryStart: start, SnapshotAge: age, SnapshotTime: taken}
	if status != "succeeded" {
		res.Error = map[string]string{"failed": "the drill's plan failed", "interrupted": "the drill's plan was interrupted"}[status] + " before its expectations were checked"
	} else if err := d.verify(ctx, emit, cfg, res); err != nil {
		res.Error = err.Error()
	}
	if !res.Recovered.IsZero() {
		res.Status = "passed"
		res.TimeToRecovery = res.Recovered.Sub(start)
	}
	_ = j.Append(journal.Record{Type: "drill_finished", RunID: r.RunID, Status: res.Status, Message: verdict(res)})
	r.Drill = res
	dir := d.reportDir
	if dir == "" {
		dir = d.settings.ReportDir
	}
	if dir == "" {
		dir = filepath.Join(filepath.Dir(j.Path()), "drill-"+r.RunID)
	}
	if err := writeReports(dir, r); err != nil {
		return &exitError{code: ExitError, err: fmt.Errorf("drill report: %w", err)}
	}
	report := filepath.Join(dir, "report.html")
	emit(engine.Event{Time: time.Now(), Type: "drill_finished", RunID: r.RunID, Message: fmt.Sprintf("Drill %s: %s", res.Status, verdict(res)),
		Fields: map[string]any{"status": res.Status, "time_to_recovery_ms": res.TimeToRecovery.Milliseconds(), "report": report}})
	if !d.json {
		fmt.Fprintf(stdio.Out, "Report: %s (and report.md, report.json)\n", report)
	}
	if res.Status != "passed" {
		return errQuiet(ExitError, "drill failed")
	}
	return nil
}

func (d *drillRun) verify(ctx context.Context, emit func(engine.Event), cfg *rest.Config, res *report.Drill) error {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	c := drill.Clients{Kube: kc, Dynamic: dc, Mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
	checks, recovered, err := drill.Verify(ctx, c, d.settings, func(msg string) {
		emit(engine.Event{Time: time.Now(), Type: "drill", Message: msg})
	})
	res.Checks, res.Recovered = checks, recovered
	if err == nil && recovered.IsZero() {
		err = fmt.Errorf("the expectations did not all hold within %s", d.settings.Timeout)
	}
	return err
}

func verdict(d *report.Drill) string {
	ok := 0
	for _, c := range d.Checks {
		if c.OK {
			ok++
		}
	}
	s := fmt.Sprintf("%d/%d expectations held", ok, len(d.Checks))
	if d.Status == "passed" {
		s = fmt.Sprintf("time to recovery %s, %s", d.TimeToRecovery.Round(100*time.Millisecond), s)
	}
	if d.SnapshotAge >= 0 {
		s += fmt.Sprintf(", snapshot age at restore %s", d.SnapshotAge.Round(time.Second))
	}
	if d.Error != "" {
		s += "; " + d.Error
	}
	for _, c := range d.Checks {
		if !c.OK {
			s += fmt.Sprintf("; %s: want %s, got %s", c.Name, c.Want, c.Got)
		}
	}
	return s
}

// writeReports writes the report in its three forms, each complete before
// it takes its name.
func writeReports(dir string, r *report.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for name, write := range map[string]func(*os.File) error{
		"report.json": func(f *os.File) error { return r.JSON(f) },
		"report.md":   func(f *os.File) error { r.Markdown(f); return nil },
		"report.html": func(f *os.File) error { return r.HTML(f) },
	} {
		p := filepath.Join(dir, name)
		f, err := os.Create(p + ".part")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(p+".part", p)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
