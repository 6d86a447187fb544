package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/internal/journal/clusterstore"
	"github.com/runbookhq/runbook/internal/kube"
	"github.com/runbookhq/runbook/internal/lock"
	"github.com/runbookhq/runbook/internal/nodes"
	"github.com/runbookhq/runbook/internal/notify"
	"github.com/runbookhq/runbook/internal/shellquote"
	"github.com/runbookhq/runbook/internal/view"
	"github.com/runbookhq/runbook/plans"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Exit codes of apply beyond the common ones.
const (
	ExitLocked      = 4   // another run holds the cluster lock
	ExitInterrupted = 130 // stopped by Ctrl-C; resumable
)

type applyOptions struct {
	vf          varFlags
	autoApprove bool
	resume      bool
	fresh       bool
	force       bool
	output      string
	kubeconfig  string
	context     string
	journalDir  string
	noLock      bool
	// drill, when set, makes the run a disaster-recovery drill: refused
	// unless the plan says its cluster is not production, and followed by
	// the drill's checks and report.
	drill *drillRun
}

func newApply(stdio *IO) *cobra.Command {
	return applyCommand(stdio, &applyOptions{})
}

// applyCommand is apply's command with its flags bound to o (drill shares them).
func applyCommand(stdio *IO, o *applyOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply PLAN",
		Short: "Carry out a plan, node by node, with a journal and a cluster lock",
		Long: `Carry out a plan: show it, ask for confirmation (or --auto-approve), take the
cluster lock, then run the steps, recording each in the journal
(.runbook/<runbook>/<run id>.jsonl beside the plan).

A failed or interrupted run resumes with --resume: steps that finished are
not run again; a step that started and never finished is checked before
anything is redone. The first Ctrl-C lets running steps finish and stops;
a second cancels them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runApply(cmd.Context(), stdio, args[0], *o)
		},
	}
	o.vf.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.autoApprove, "auto-approve", false, "do not ask for confirmation")
	f.BoolVar(&o.resume, "resume", false, "resume the last unfinished run of this plan")
	f.BoolVar(&o.fresh, "new", false, "start a new run even though the last one did not finish")
	f.BoolVar(&o.force, "force", false, "with --resume: resume although the plan or its variables changed")
	f.StringVarP(&o.output, "output", "o", "text", "progress format: text, or json (one event per line)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the plan's cluster block, then as kubectl)")
	f.StringVar(&o.context, "context", "", "kubeconfig context")
	f.StringVar(&o.journalDir, "journal-dir", "", "where journals are kept (default: .runbook/<runbook> beside the plan)")
	f.BoolVar(&o.noLock, "no-lock", false, "do not take the cluster lock (dangerous: two runs may act at once)")
	return cmd
}

func newResume(stdio *IO) *cobra.Command {
	a := newApply(stdio)
	a.Use = "resume PLAN"
	a.Short = "Resume the last unfinished run of a plan (apply --resume)"
	a.Long = ""
	run := a.RunE
	a.RunE = func(cmd *cobra.Command, args []string) error {
		if err := cmd.Flags().Set("resume", "true"); err != nil {
			return err
		}
		return run(cmd, args)
	}
	return a
}

func newUnlock(stdio *IO) *cobra.Command {
	var kubeconfig, kctx string
	cmd := &cobra.Command{
		Use:   "unlock RUN_ID",
		Short: "Break the cluster lock held by a run that is gone",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := kube.Config(kubeconfig, kctx)
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			ctx := context.Background()
			cur, err := lock.Current(ctx, kc)
			if err != nil {
				return &exitError{code: ExitError, err: err}
			}
			if cur == nil {
				fmt.Fprintln(stdio.Out, "The cluster is not locked.")
				return nil
			}
			if err := lock.Break(ctx, kc, args[0]); err != nil {
				return &exitError{code: ExitError, err: err}
			}
			fmt.Fprintf(stdio.Out, "Broke the lock of run %s (held by %s since %s).\n", cur.RunID, cur.Holder, cur.Since.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file")
	cmd.Flags().StringVar(&kctx, "context", "", "kubeconfig context")
	return cmd
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

func runApply(ctx context.Context, stdio *IO, arg string, o applyOptions) error {
	if o.output != "text" && o.output != "json" {
		return usageError("-o %q: apply writes text or json", o.output)
	}
	if o.resume && o.fresh {
		return usageError("--resume and --new exclude each other")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	saved, err := readSavedPlan(arg)
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	if saved != nil {
		if len(saved.Plan.Files) != 1 {
			return &exitError{code: ExitError, err: fmt.Errorf("%s: a saved plan of %d files; apply the plan's directory again instead", arg, len(saved.Plan.Files))}
		}
		// The saved plan's variables come first; -var flags given now
		// (sensitive values) come after them.
		for _, name := range sortedKeys(saved.Vars) {
			o.vf.vars = append([]string{name + "=" + saved.Vars[name]}, o.vf.vars...)
		}
		arg = saved.Plan.Files[0]
	}
	l := load(stdio, arg, o.vf, false)
	if !l.diags.HasErrors() {
		l.diags = append(l.diags, engine.Validate(l.vals)...)
	}
	if l.diags.HasErrors() {
		l.writeDiags(stdio)
		return errQuiet(ExitError, "invalid plan")
	}
	cs, d := l.vals.Cluster()
	if d.HasErrors() {
		l.diags = append(l.diags, d...)
		l.writeDiags(stdio)
		return errQuiet(ExitError, "invalid plan")
	}
	if o.drill != nil {
		if err := o.drill.check(l); err != nil {
			return err
		}
	} else if l.plan.Drill != nil {
		// A drill breaks things on purpose: it runs only as a drill, behind
		// its non_production gate, and with its checks.
		return &exitError{code: ExitError, err: fmt.Errorf("%s: this plan is a disaster-recovery drill (it has a drill block): run it with runbook drill, which checks that it is marked non_production and verifies its expectations; nothing was changed", l.plan.Drill.DeclRange)}
	}
	if o.kubeconfig != "" {
		cs.Kubeconfig = o.kubeconfig
	}
	if o.context != "" {
		cs.Context = o.context
	}
	cfg, err := kube.Config(cs.Kubeconfig, cs.Context)
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	h := header(l, false)

	// Journal: find the last run of this plan.
	js, _ := l.vals.Journal() // validated above
	jdir := o.journalDir
	if jdir == "" {
		jdir = js.Path
	}
	var cj *clusterJournal
	if js.Backend == "cluster" {
		ns := js.Namespace
		if ns == "" {
			ns = clusterstore.DefaultNamespace
		}
		cj = &clusterJournal{kc: kc, ns: ns, runbook: l.plan.RunbookName(), log: stdio.Err}
	}
	if jdir == "" {
		jdir = journal.Dir(l.plan.BaseDir, l.plan.RunbookName())
	}
	runID := newRunID()
	var prior map[string]engine.Prior
	var priorNodes map[string]map[string]any
	latest, _ := journal.Latest(jdir)
	if cj != nil {
		if latest, err = cj.pull(ctx, jdir, latest); err != nil {
			return &exitError{code: ExitError, err: err}
		}
	}
	if latest != "" {
		recs, err := journal.Read(latest)
		if err != nil {
			return &exitError{code: ExitError, err: fmt.Errorf("reading the last journal: %w", err)}
		}
		sum := journal.Fold(recs)
		unfinished := !sum.Finished || sum.Status != "succeeded"
		switch {
		case o.resume && !unfinished:
			return &exitError{code: ExitError, err: fmt.Errorf("the last run (%s) finished; nothing to resume (run apply without --resume)", sum.RunID)}
		case o.resume:
			if (sum.PlanHash != h.PlanHash || sum.VarsHash != h.VarsHash) && !o.force {
				return &exitError{code: ExitError, err: fmt.Errorf("run %s was made from another version of the plan or its variables (plan %s vars %s, now plan %s vars %s); resuming it with this one could skip or repeat steps: use --force to resume anyway, or --new to start over", sum.RunID, sum.PlanHash, sum.VarsHash, h.PlanHash, h.VarsHash)}
			}
			runID = sum.RunID
			if d := l.asOf(sum.Started); d.HasErrors() {
				l.diags = append(l.diags, d...)
				l.writeDiags(stdio)
				return errQuiet(ExitError, "invalid plan")
			}
			h = header(l, false)
			prior = journal.Priors(sum, schemaByAddress(l.plan))
			priorNodes = sum.Nodes
		case unfinished && !o.fresh:
			return &exitError{code: ExitError, err: fmt.Errorf("the last run of this plan (%s, %s) did not finish: resume it with --resume, or start a new run with --new", sum.RunID, filepath.Base(latest))}
		}
	} else if o.resume {
		return &exitError{code: ExitError, err: fmt.Errorf("no journal in %s: nothing to resume", jdir)}
	}

	env := &engine.Env{RunID: runID, Kube: func(context.Context) (kubernetes.Interface, error) { return kc, nil },
		REST: func(context.Context) (*rest.Config, error) { return cfg, nil }}
	prog, diags := engine.Expand(ctx, l.vals, kube.Inventories{Client: kc})
	if diags.HasErrors() {
		l.diags = append(l.diags, diags...)
		l.writeDiags(stdio)
		return errQuiet(ExitError, "invalid plan")
	}
	dialer := nodes.New(nil, nil)
	defer dialer.Close()
	env.Node = dialer.Runner
	lines, pd := preflight(ctx, dialer, prog)
	h.Preflight = lines
	if pd.HasErrors() {
		view.WriteDiags(stdio.Err, l.plan.Files, pd, false)
		return &exitError{code: ExitError, err: errors.New("node pre-flight failed: nothing was changed")}
	}

	// The dry-run, shown before anything changes; refusals stop here.
	planRes := (&engine.Planner{Kinds: l.kinds, Env: env}).Plan(ctx, prog)
	if saved != nil {
		now, err := snapshotNodes(ctx, kc, prog)
		if err != nil {
			return &exitError{code: ExitError, err: err}
		}
		if diffs := savedDiffs(saved, l, h, planRes, now); len(diffs) > 0 {
			return &exitError{code: ExitError, err: fmt.Errorf("the world no longer matches the saved plan, nothing was changed; make a new plan:\n  - %s", strings.Join(diffs, "\n  - "))}
		}
	}
	if o.output == "text" {
		view.Text(stdio.Out, h, planRes)
	}
	if planRes.Failed() || view.Count(planRes).Failed > 0 {
		if o.output == "json" {
			_ = view.JSON(stdio.Out, h, planRes)
		}
		return &exitError{code: ExitError, err: errors.New("the plan has errors or refusals: nothing was changed")}
	}
	if !o.autoApprove {
		ok, err := confirm(stdio, "Apply this plan?")
		if err != nil {
			return &exitError{code: ExitError, err: err}
		}
		if !ok {
			fmt.Fprintln(stdio.Err, "Apply cancelled: nothing was changed.")
			return errQuiet(ExitError, "cancelled")
		}
	}

	var lk *lock.Lock
	if !o.noLock {
		lk, err = lock.Acquire(ctx, kc, runID, l.plan.RunbookName(), h.PlanHash)
		if err != nil {
			var held *lock.HeldError
			if errors.As(err, &held) {
				return &exitError{code: ExitLocked, err: err}
			}
			return &exitError{code: ExitError, err: err}
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := lk.Release(rctx); err != nil {
				fmt.Fprintf(stdio.Err, "warning: %v\n", err)
			}
		}()
	}

	j, err := journal.Open(jdir, runID)
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	defer j.Close()
	if err := cj.attach(j, env, runID, h.PlanHash); err != nil {
		return &exitError{code: ExitError, err: err}
	}
	if err := j.Append(journal.Record{Type: journal.RunStarted, RunID: runID, Runbook: l.plan.RunbookName(), PlanHash: h.PlanHash, VarsHash: h.VarsHash, Files: l.plan.Filenames}); err != nil {
		return &exitError{code: ExitError, err: err}
	}
	if err := cj.start(j); err != nil {
		return &exitError{code: ExitError, err: err}
	}
	before, err := snapshotNodes(ctx, kc, prog)
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	for _, n := range sortedNodeNames(before) {
		if st, ok := priorNodes[n]; ok {
			// Resuming: the state before the run's first change is the one
			// the first attempt recorded.
			before[n] = stateFromMap(st)
			continue
		}
		_ = j.Append(journal.Record{Type: journal.NodeState, Node: n, State: before[n].asMap()})
	}

	// Interrupts: the first lets running steps finish, the second cancels.
	stop := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cancelled atomic.Bool // by a second interrupt
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(stdio.Err, "\nInterrupt: letting running steps finish, then stopping. Press Ctrl-C again to cancel them.")
				close(stop)
			} else {
				fmt.Fprintln(stdio.Err, "\nSecond interrupt: cancelling running steps.")
				cancelled.Store(true)
				cancel()
				return
			}
		}
	}()

	prog2 := progress{out: stdio.Out, json: o.output == "json", j: j}
	ns, _ := l.vals.Notifiers() // validated above
	var hooks []notify.Hook
	for _, n := range ns {
		hooks = append(hooks, notify.Hook{Name: n.Name, URL: n.URL, Events: n.Events, Headers: n.Headers, Timeout: n.Timeout})
	}
	notifier := notify.New(l.plan.RunbookName(), hooks, func(err error) {
		prog2.emit(engine.Event{Time: time.Now(), Type: "notify_error", Message: err.Error()})
	})
	defer notifier.Close()
	env.Emit = func(e engine.Event) {
		prog2.emit(e)
		notifier.Emit(e)
	}
	env.Emit(engine.Event{Time: time.Now(), Type: "run_started", RunID: runID, Message: fmt.Sprintf("%s: %d steps", l.plan.RunbookName(), prog.Instances())})
	ap := &engine.Applier{Kinds: l.kinds, Env: env, Recorder: journal.Recorder{J: j}, Prior: prior, Stop: stop,
		Confirm: func(ctx context.Context, s *engine.AppliedStep) (bool, error) {
			if o.autoApprove {
				return true, nil
			}
			return confirm(stdio, fmt.Sprintf("Run %s?", s.Address))
		}}
	started := time.Now()
	res := ap.Apply(runCtx, prog)
	status := "succeeded"
	switch {
	case cancelled.Load():
		// The steps the second interrupt cut are journaled as failed or in
		// doubt; the run is interrupted, not failed, and resumes as such.
		status = "interrupted"
	case res.Failed:
		status = "failed"
	case res.Stopped:
		status = "interrupted"
	}
	_ = j.Append(journal.Record{Type: journal.RunFinished, RunID: runID, Status: status})
	env.Emit(engine.Event{Time: time.Now(), Type: "run_finished", RunID: runID, Message: status})
	afterCtx, cancelAfter := context.WithTimeout(context.Background(), 10*time.Second)
	after, _ := snapshotNodes(afterCtx, kc, prog)
	cancelAfter()
	if o.output == "text" {
		summary(stdio.Out, res, before, after, time.Since(started))
	}
	if lk != nil && lk.Lost() != nil {
		fmt.Fprintf(stdio.Err, "warning: %v\n", lk.Lost())
	}
	resumeHint := fmt.Sprintf("Resume with: runbook apply --resume%s %s (run %s, journal %s)", resumeFlags(o), shellquote.Quote(arg), runID, j.Path())
	if o.drill != nil {
		resumeHint = fmt.Sprintf("Resume with: runbook drill --resume%s %s (run %s, journal %s)", resumeFlags(o), shellquote.Quote(arg), runID, j.Path())
		// The drill's checks are read-only: the first interrupt ends them.
		dctx, dcancel := context.WithCancel(runCtx)
		go func() {
			select {
			case <-stop:
				dcancel()
			case <-dctx.Done():
			}
		}()
		o.drill.json = o.output == "json"
		err := o.drill.finish(dctx, env.Emit, stdio, cfg, j, status)
		dcancel()
		cj.finish(j) // after the drill's record, so that the copy has it
		if err != nil {
			if status == "succeeded" {
				return err
			}
			fmt.Fprintln(stdio.Err, err)
		}
	} else {
		cj.finish(j)
	}
	switch status {
	case "failed":
		fmt.Fprintln(stdio.Err, resumeHint)
		return errQuiet(ExitError, "apply failed")
	case "interrupted":
		fmt.Fprintln(stdio.Err, resumeHint)
		return errQuiet(ExitInterrupted, "interrupted")
	}
	return nil
}

// resumeFlags are the flags a resume must repeat to find the same journal
// and variables. -var values are not repeated (they may be secrets): the
// hint says to give them again.
func resumeFlags(o applyOptions) string {
	var b strings.Builder
	for _, f := range o.vf.varFiles {
		b.WriteString(" -var-file " + shellquote.Quote(f))
	}
	if o.journalDir != "" {
		b.WriteString(" --journal-dir " + shellquote.Quote(o.journalDir))
	}
	if o.kubeconfig != "" {
		b.WriteString(" --kubeconfig " + shellquote.Quote(o.kubeconfig))
	}
	if o.context != "" {
		b.WriteString(" --context " + shellquote.Quote(o.context))
	}
	if len(o.vf.vars) > 0 {
		b.WriteString(" [your -var flags again]")
	}
	return b.String()
}

func schemaByAddress(p *plans.Plan) func(string) *plans.KindSchema {
	return func(addr string) *plans.KindSchema {
		for _, s := range p.Steps() {
			if addr == s.Address() || strings.HasPrefix(addr, s.Address()+"[") {
				return s.Schema
			}
		}
		return nil
	}
}

func confirm(stdio *IO, q string) (bool, error) {
	f, ok := stdio.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, errors.New("no terminal to confirm on: run with --auto-approve")
	}
	fmt.Fprintf(stdio.Err, "%s Only 'yes' is accepted: ", q)
	s, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && s == "" {
		return false, err
	}
	return strings.TrimSpace(s) == "yes", nil
}

// nodeState is what the summary and the journal keep of a node.
type nodeState struct {
	Unschedulable bool   `json:"unschedulable"`
	CordonedBy    string `json:"cordoned_by,omitempty"`
	Kubelet       string `json:"kubelet"`
	Ready         bool   `json:"ready"`
}

func (n nodeState) asMap() map[string]any {
	return map[string]any{"unschedulable": n.Unschedulable, "cordoned_by": n.CordonedBy, "kubelet": n.Kubelet, "ready": n.Ready}
}

func stateFromMap(m map[string]any) nodeState {
	var n nodeState
	n.Unschedulable, _ = m["unschedulable"].(bool)
	n.CordonedBy, _ = m["cordoned_by"].(string)
	n.Kubelet, _ = m["kubelet"].(string)
	n.Ready, _ = m["ready"].(bool)
	return n
}

func (n nodeState) String() string {
	s := "schedulable"
	if n.Unschedulable {
		s = "cordoned"
		if n.CordonedBy != "" {
			s += " (by run " + n.CordonedBy + ")"
		}
	}
	r := "NotReady"
	if n.Ready {
		r = "Ready"
	}
	return fmt.Sprintf("%s, %s, kubelet %s", r, s, n.Kubelet)
}

// snapshotNodes records every plan node's state with one LIST.
func snapshotNodes(ctx context.Context, kc kubernetes.Interface, prog *engine.Program) (map[string]nodeState, error) {
	want := map[string]bool{}
	for _, u := range prog.Units {
		for _, n := range u.Nodes {
			want[n.Name] = true
		}
		// Top-level cluster steps name their node in an argument.
		if u.Step != nil {
			if _, ok := u.Step.Schema.Arg("node"); ok {
				if cfg, d := prog.Decode(u.Step, nil); !d.HasErrors() {
					if a := (engine.Args{V: cfg.Args}); a.Set("node") {
						want[a.String("node")] = true
					}
				}
			}
		}
	}
	out := map[string]nodeState{}
	if len(want) == 0 {
		return out, nil
	}
	l, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("recording node state: %w", err)
	}
	for _, n := range l.Items {
		if !want[n.Name] {
			continue
		}
		st := nodeState{Unschedulable: n.Spec.Unschedulable, CordonedBy: n.Annotations["runbook.dev/cordoned-by"], Kubelet: n.Status.NodeInfo.KubeletVersion}
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				st.Ready = true
			}
		}
		out[n.Name] = st
	}
	return out, nil
}

func sortedNodeNames(m map[string]nodeState) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return plans.NaturalLess(out[i], out[j]) })
	return out
}

// progress prints events as they come: plain lines, or JSON lines.
type progress struct {
	mu   sync.Mutex
	out  io.Writer
	json bool
	j    *journal.Journal
}

func (p *progress) emit(e engine.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		b, _ := json.Marshal(e)
		fmt.Fprintf(p.out, "%s\n", b)
		return
	}
	where := e.Node
	if where == "" {
		where = "-"
	}
	what := e.Step
	if what == "" {
		what = e.Type
	}
	msg := e.Message
	switch e.Type {
	case engine.EventStepStarted:
		msg = "started"
	case engine.EventStepFinished:
		msg = "done: " + msg
	case engine.EventStepFailed:
		msg = "FAILED: " + msg
	}
	fmt.Fprintf(p.out, "%s  %-12s %-18s %s\n", e.Time.Format("15:04:05"), where, what, msg)
}

func summary(w io.Writer, res *engine.ApplyResult, before, after map[string]nodeState, took time.Duration) {
	type tally struct{ done, skipped, failed, pending int }
	per := map[string]*tally{}
	var order []string
	for _, s := range res.Steps {
		n := "(cluster)"
		if s.Node != nil {
			n = s.Node.Name
		}
		t := per[n]
		if t == nil {
			t = &tally{}
			per[n] = t
			order = append(order, n)
		}
		switch s.Status {
		case engine.StatusDone:
			t.done++
		case engine.StatusSkipped:
			t.skipped++
		case engine.StatusFailed:
			t.failed++
		default:
			t.pending++
		}
	}
	fmt.Fprintf(w, "\nSummary (%s):\n", took.Round(time.Second))
	for _, n := range order {
		t := per[n]
		line := fmt.Sprintf("  %-14s %d done, %d skipped, %d failed, %d not run", n, t.done, t.skipped, t.failed, t.pending)
		if b, ok := before[n]; ok {
			a := after[n]
			if b != a {
				line += fmt.Sprintf("; was %s, now %s", b, a)
			} else {
				line += "; unchanged: " + a.String()
			}
		}
		fmt.Fprintln(w, line)
	}
	for _, s := range res.Steps {
		if s.Status == engine.StatusFailed {
			fmt.Fprintf(w, "  failed: %s: %v\n", s.Address, s.Err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readSavedPlan returns the saved plan in path, or nil when path is a plan
// source (HCL) rather than a file written by plan --out.
func readSavedPlan(path string) (*savedPlan, error) {
	if !strings.HasSuffix(path, ".json") {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sp savedPlan
	if json.Unmarshal(b, &sp) != nil || sp.FormatVersion == "" || sp.Sources == nil {
		return nil, nil // an HCL plan in JSON syntax
	}
	if sp.FormatVersion != "1" {
		return nil, fmt.Errorf("%s: saved plan format %s is not supported by this runbook", path, sp.FormatVersion)
	}
	return &sp, nil
}

// savedDiffs lists what changed since a plan was saved: its files, its
// variables, the node set, and the versions and schedulability of the nodes
// it touches.
func savedDiffs(sp *savedPlan, l *loaded, h view.Header, now *engine.PlanResult, nodes map[string]nodeState) []string {
	var d []string
	for f, src := range sp.Sources {
		hf := l.plan.Files[f]
		if hf == nil || string(hf.Bytes) != src {
			d = append(d, fmt.Sprintf("file %s changed since the plan was saved", f))
		}
	}
	if h.PlanHash != sp.Plan.PlanHash {
		d = append(d, fmt.Sprintf("plan hash %s, saved %s", h.PlanHash, sp.Plan.PlanHash))
	}
	if h.VarsHash != sp.Plan.VarsHash {
		d = append(d, fmt.Sprintf("variables differ from the saved plan's (hash %s, saved %s): give the same sensitive values", h.VarsHash, sp.Plan.VarsHash))
	}
	was := map[string]bool{}
	for _, s := range sp.Plan.Steps {
		was[s.Address] = true
	}
	is := map[string]bool{}
	for _, s := range now.Steps {
		is[s.Address] = true
		if !was[s.Address] {
			d = append(d, "new step instance "+s.Address+" (the node set changed)")
		}
	}
	for a := range was {
		if !is[a] {
			d = append(d, "step instance "+a+" is gone (the node set changed)")
		}
	}
	for _, n := range sortedKeys(sp.Nodes) {
		old, cur := sp.Nodes[n], nodes[n]
		if old.Kubelet != cur.Kubelet || old.Unschedulable != cur.Unschedulable {
			d = append(d, fmt.Sprintf("node %s was %s, now %s", n, old, cur))
		}
	}
	sort.Strings(d)
	return d
}
