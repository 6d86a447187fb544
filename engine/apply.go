package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// Recorder persists the run's progress (the journal). Every call must be
// durable before it returns: the run goes on only once a record is safe.
type Recorder interface {
	StepStarted(s *AppliedStep, attempt int) error
	StepFinished(s *AppliedStep, outputs cty.Value) error
	StepFailed(s *AppliedStep, err error, inDoubt bool) error
	StepSkipped(s *AppliedStep, reason string) error
}

// Prior is what an earlier attempt of this run recorded about a step.
type Prior struct {
	// Status is "finished", "failed", "started" (in doubt) or "skipped".
	Status  string
	Outputs cty.Value
}

// Prior statuses.
const (
	PriorFinished = "finished"
	PriorFailed   = "failed"
	PriorStarted  = "started"
	PriorSkipped  = "skipped"
)

// Step statuses in an ApplyResult.
const (
	StatusDone    = "done"    // applied, or found already done
	StatusSkipped = "skipped" // when = false, or finished in an earlier attempt
	StatusFailed  = "failed"
	StatusPending = "pending" // not reached: an earlier failure or a stop
)

// Reverter is implemented by kinds that can undo themselves, for
// on_failure = "revert".
type Reverter interface {
	Revert(ctx context.Context, req *Request) error
}

// AppliedStep is the outcome of one step instance.
type AppliedStep struct {
	Address  string
	Step     *plans.Step
	Node     *plans.Node
	Status   string
	Action   Action
	Summary  string
	Err      error
	InDoubt  bool
	Started  time.Time
	Duration time.Duration
	Attempts int
	Resumed  bool // skipped because an earlier attempt of the run finished it
	// OnFailure is the step's policy, once its arguments are decoded.
	OnFailure string
	// Secrets are the strings to mask in anything recorded about the step.
	Secrets []string
	timeout time.Duration
}

// ApplyResult is what a run did.
type ApplyResult struct {
	Steps   []*AppliedStep // in plan order
	Stopped bool           // a graceful stop was asked for and honoured
	Failed  bool
}

// FailedNodes lists the nodes with a failed step, sorted.
func (r *ApplyResult) FailedNodes() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range r.Steps {
		if s.Status == StatusFailed && s.Node != nil && !seen[s.Node.Name] {
			seen[s.Node.Name] = true
			out = append(out, s.Node.Name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return plans.NaturalLess(out[i], out[j]) })
	return out
}

// Applier carries out a program.
type Applier struct {
	Kinds    *Registry
	Env      *Env
	Recorder Recorder
	// Prior is the journal of an interrupted or failed attempt of this run.
	Prior map[string]Prior
	// Stop, when closed, lets running steps finish and starts no new one.
	Stop <-chan struct{}
	// Confirm asks before a step with confirm = true; nil refuses them.
	Confirm func(ctx context.Context, s *AppliedStep) (bool, error)
}

func (a *Applier) stopped() bool {
	if a.Stop == nil {
		return false
	}
	select {
	case <-a.Stop:
		return true
	default:
		return false
	}
}

func (a *Applier) emit(e Event) {
	if a.Env != nil && a.Env.Emit != nil {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		e.RunID = a.Env.RunID
		a.Env.Emit(e)
	}
}

// Apply runs the program: units in order; in a phase, batch after batch,
// the nodes of a batch in parallel, each node through the phase's steps in
// order. A failed step stops its node's later steps; more failed nodes than
// the phase's max_failed stop the run after the batch. ctx cancels running
// steps (recorded as failed or in doubt); Stop ends the run between steps.
func (a *Applier) Apply(ctx context.Context, prog *Program) *ApplyResult {
	res := &ApplyResult{}
	top := map[string]cty.Value{}
	halt := false
	for _, u := range prog.Units {
		unitFailed := 0
		if u.Step != nil {
			as := &AppliedStep{Address: Address(u.Step, nil), Step: u.Step, Status: StatusPending}
			res.Steps = append(res.Steps, as)
			if halt || a.stopped() || ctx.Err() != nil {
				continue
			}
			out := a.runStep(ctx, prog, as, cty.NilVal, top)
			top[u.Step.Name] = out
			if as.Status == StatusFailed && onFailure(as) != plans.OnFailureContinue {
				halt = true
			}
			continue
		}
		for _, batch := range u.Batches {
			per := make([][]*AppliedStep, len(batch))
			for i := range batch {
				for _, s := range u.Phase.Steps {
					per[i] = append(per[i], &AppliedStep{Address: Address(s, &batch[i]), Step: s, Node: &batch[i], Status: StatusPending})
				}
			}
			if !halt && !a.stopped() && ctx.Err() == nil {
				var wg sync.WaitGroup
				for i := range batch {
					wg.Add(1)
					go func() {
						defer wg.Done()
						a.runNode(ctx, prog, u, &batch[i], per[i], top)
					}()
				}
				wg.Wait()
			}
			failed := 0
			for _, steps := range per {
				res.Steps = append(res.Steps, steps...)
				for _, s := range steps {
					if s.Status == StatusFailed && onFailure(s) != plans.OnFailureContinue {
						failed++
						break
					}
				}
			}
			unitFailed += failed
			if unitFailed > u.MaxFailed {
				halt = true
			}
		}
	}
	for _, s := range res.Steps {
		if s.Status == StatusFailed {
			res.Failed = true
		}
	}
	res.Stopped = a.stopped() || ctx.Err() != nil
	return res
}

func onFailure(s *AppliedStep) string {
	if s.OnFailure == "" {
		return plans.OnFailureAbort
	}
	return s.OnFailure
}

// runNode takes one node through a phase's steps.
func (a *Applier) runNode(ctx context.Context, prog *Program, u *Unit, node *plans.Node, steps []*AppliedStep, top map[string]cty.Value) {
	outs := make(map[string]cty.Value, len(top)+len(steps))
	for k, v := range top {
		outs[k] = v
	}
	each := cty.ObjectVal(map[string]cty.Value{"node": node.Value()})
	for _, as := range steps {
		if a.stopped() || ctx.Err() != nil {
			return
		}
		outs[as.Step.Name] = a.runStep(ctx, prog, as, each, outs)
		if as.Status == StatusFailed && onFailure(as) != plans.OnFailureContinue {
			a.emit(Event{Type: "node_failed", Node: node.Name, Address: as.Address, Message: fmt.Sprintf("%s failed; the node's later steps will not run", as.Address)})
			return
		}
	}
	a.emit(Event{Type: "node_done", Node: node.Name, Message: node.Name + " done"})
}

// runStep applies one step instance and returns its outputs.
func (a *Applier) runStep(ctx context.Context, prog *Program, as *AppliedStep, each cty.Value, outs map[string]cty.Value) cty.Value {
	s := as.Step
	unknown := s.Schema.UnknownOutputs()
	as.Started = time.Now()
	defer func() { as.Duration = time.Since(as.Started) }()
	if !s.UsesEach {
		each = cty.NilVal
	}
	vis := outs
	if !s.UsesSteps {
		vis = nil
	}
	cfg, diags := s.Decode(stepContextWith(prog.Values.Ctx, each, vis))
	if diags.HasErrors() {
		return a.fail(as, fmt.Errorf("%s: %s", as.Address, diags.Error()), false, unknown)
	}
	as.OnFailure, as.Secrets = cfg.OnFailure, cfg.Secrets
	if !cfg.Args.IsWhollyKnown() {
		return a.fail(as, fmt.Errorf("%s: an argument depends on a value that is still unknown (an output of a step that did not run, or that had nothing to do and could not tell it)", as.Address), false, unknown)
	}
	if !cfg.When.IsKnown() {
		return a.fail(as, fmt.Errorf("%s: when depends on a value that is still unknown", as.Address), false, unknown)
	}
	if cfg.When.False() {
		as.Status = StatusSkipped
		a.record(as, a.Recorder.StepSkipped(as, "when is false"))
		a.emit(Event{Type: EventStepSkipped, Address: as.Address, Node: nodeName(as), Kind: s.Kind, Step: s.Name, Message: "when is false"})
		return unknown
	}
	kind, _ := a.Kinds.Kind(s.Kind)
	as.timeout = cfg.Timeout
	req := &Request{Address: as.Address, Step: s, Node: as.Node, Args: Args{V: cfg.Args}, Config: cfg, Env: a.Env, Program: prog, Started: as.Started}
	prior, resumed := a.Prior[as.Address]
	if resumed && (prior.Status == PriorFinished || prior.Status == PriorSkipped) {
		// Done in an earlier attempt of this run: never done twice.
		as.Status, as.Resumed = StatusSkipped, true
		a.emit(Event{Type: EventStepSkipped, Address: as.Address, Node: nodeName(as), Kind: s.Kind, Step: s.Name, Message: "finished in an earlier attempt of this run"})
		if prior.Outputs != cty.NilVal {
			return prior.Outputs
		}
		return unknown
	}
	if cfg.Confirm {
		ok := false
		var err error
		if a.Confirm != nil {
			ok, err = a.Confirm(ctx, as)
		}
		if err != nil || !ok {
			if err == nil {
				err = errors.New("not confirmed")
			}
			return a.fail(as, fmt.Errorf("%s asks for confirmation: %w", as.Address, err), false, unknown)
		}
	}
	a.emit(Event{Type: EventStepStarted, Address: as.Address, Node: nodeName(as), Kind: s.Kind, Step: s.Name})
	failed := func(err error, inDoubt bool) cty.Value {
		v := a.fail(as, err, inDoubt, unknown)
		if as.OnFailure == plans.OnFailureRevert {
			a.revert(kind, req, as)
		}
		return v
	}
	var lastErr error
	attempts := 1 + cfg.Retries
	for attempt := 1; attempt <= attempts; attempt++ {
		as.Attempts = attempt
		if attempt > 1 {
			a.emit(Event{Type: EventRetry, Address: as.Address, Node: nodeName(as), Message: fmt.Sprintf("attempt %d of %d in %s: %v", attempt, attempts, cfg.RetryDelay, lastErr)})
			select {
			case <-ctx.Done():
				return failed(fmt.Errorf("%s: cancelled while waiting to retry: %w", as.Address, lastErr), false)
			case <-time.After(cfg.RetryDelay):
			}
		}
		out, err, inDoubt := a.attempt(ctx, kind, req, as, attempt)
		if err == nil {
			as.Status = StatusDone
			a.record(as, a.Recorder.StepFinished(as, out))
			a.emit(Event{Type: EventStepFinished, Address: as.Address, Node: nodeName(as), Kind: s.Kind, Step: s.Name, Message: as.Summary, Fields: map[string]any{"action": string(as.Action), "duration_ms": time.Since(as.Started).Milliseconds()}})
			return out
		}
		lastErr = err
		if inDoubt || ctx.Err() != nil || isRefusal(err) {
			return failed(err, inDoubt)
		}
	}
	return failed(lastErr, false)
}

// revert undoes a failed step whose policy is on_failure = "revert", with
// its own bounded time: the run is failing, the revert must still finish.
func (a *Applier) revert(kind Kind, req *Request, as *AppliedStep) {
	r, ok := kind.(Reverter)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.Revert(ctx, req); err != nil {
		a.emit(Event{Type: "revert_failed", Address: as.Address, Node: nodeName(as), Message: err.Error()})
		return
	}
	a.emit(Event{Type: "reverted", Address: as.Address, Node: nodeName(as), Message: "reverted after the failure"})
}

// refusal is a plan-time refusal: retrying cannot help.
type refusal struct{ error }

func isRefusal(err error) bool {
	var r refusal
	return errors.As(err, &r)
}

// attempt plans the step again (check), then applies it if there is
// something to do.
func (a *Applier) attempt(ctx context.Context, kind Kind, req *Request, as *AppliedStep, attempt int) (cty.Value, error, bool) {
	sctx, cancel := context.WithTimeout(ctx, req.Config.Timeout)
	defer cancel()
	ch, err := kind.Plan(sctx, req)
	if err != nil {
		return cty.NilVal, a.timeoutErr(sctx, as, fmt.Errorf("%s: checking the current state: %w", as.Address, err)), false
	}
	maskChange(ch, req.Config.Secrets)
	as.Action, as.Summary = ch.Action, ch.Summary
	if len(ch.Blockers) > 0 {
		return cty.NilVal, refusal{fmt.Errorf("%s refused before any change: %s", as.Address, joinLines(ch.Blockers))}, false
	}
	if ch.Action == ActionNoOp {
		out := ch.Outputs
		if out == cty.NilVal || !out.IsWhollyKnown() {
			out = req.Step.Schema.UnknownOutputs()
		}
		return out, nil, false
	}
	if err := a.Recorder.StepStarted(as, attempt); err != nil {
		return cty.NilVal, refusal{fmt.Errorf("journal: %w", err)}, false
	}
	out, err := kind.Apply(sctx, req, ch)
	if err != nil {
		var nie *ErrNotImplemented
		if errors.As(err, &nie) {
			return cty.NilVal, refusal{err}, false
		}
		inDoubt := errors.Is(err, ErrInDoubt)
		return cty.NilVal, a.timeoutErr(sctx, as, fmt.Errorf("%s: %w", as.Address, err)), inDoubt
	}
	if out == cty.NilVal {
		out = req.Step.Schema.UnknownOutputs()
	}
	return out, nil, false
}

// ErrInDoubt marks errors after which the step may or may not have taken
// effect (a connection lost mid-command): resume probes before redoing.
var ErrInDoubt = errors.New("the step's outcome is in doubt")

func (a *Applier) timeoutErr(sctx context.Context, as *AppliedStep, err error) error {
	if errors.Is(sctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s timed out after %s: %w", as.Address, as.timeout, err)
	}
	return err
}

func (a *Applier) fail(as *AppliedStep, err error, inDoubt bool, unknown cty.Value) cty.Value {
	as.Status, as.Err, as.InDoubt = StatusFailed, err, inDoubt
	a.record(as, a.Recorder.StepFailed(as, err, inDoubt))
	a.emit(Event{Type: EventStepFailed, Address: as.Address, Node: nodeName(as), Kind: as.Step.Kind, Step: as.Step.Name, Message: err.Error(), Fields: map[string]any{"in_doubt": inDoubt}})
	return unknown
}

// record reports a journal failure; the step's own outcome stands.
func (a *Applier) record(as *AppliedStep, err error) {
	if err != nil {
		a.emit(Event{Type: "journal_error", Address: as.Address, Message: err.Error()})
	}
}

func nodeName(as *AppliedStep) string {
	if as.Node == nil {
		return ""
	}
	return as.Node.Name
}

func joinLines(l []string) string {
	s := ""
	for i, x := range l {
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}
