package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Kind is a step kind. Plan must be read-only: it inspects the world and
// says what Apply would do. Apply carries the change out and returns the
// step's outputs. Both are called with every argument known except in the
// offline dry-run, where Plan sees unknowns and must say so rather than
// guess.
//
// Kinds are written check-then-act: Apply re-checks what Plan saw, and a
// Plan run after a successful Apply reports NoOp, which is what makes resume
// safe.
type Kind interface {
	Schema() *plans.KindSchema
	Plan(ctx context.Context, req *Request) (*Change, error)
	Apply(ctx context.Context, req *Request, planned *Change) (cty.Value, error)
}

// Request is one step instance as a kind sees it.
type Request struct {
	Address string      // e.g. phase.workers.step.drain["worker-1"]
	Step    *plans.Step // the declaration
	Node    *plans.Node // nil for steps outside phases
	Args    Args        // the kind's arguments
	Config  *plans.StepConfig
	Env     *Env
	Program *Program // the whole expanded plan, read-only (for preflights)
	Started time.Time
}

// Emit sends an event about this step.
func (r *Request) Emit(typ, msg string, fields map[string]any) {
	if r.Env == nil || r.Env.Emit == nil {
		return
	}
	e := Event{Time: time.Now(), Type: typ, Address: r.Address, Kind: r.Step.Kind, Step: r.Step.Name, Message: plans.Mask(msg, r.Config.Secrets), Fields: fields}
	if r.Node != nil {
		e.Node = r.Node.Name
	}
	r.Env.Emit(e)
}

// Action is what a step would do.
type Action string

const (
	ActionNoOp   Action = "no-op"  // the world is already as the step wants it
	ActionChange Action = "change" // the step would change something
	ActionRead   Action = "read"   // the step only reads (checks, waits, backups off-cluster)
)

// Change is a kind's answer to Plan.
type Change struct {
	Action  Action
	Summary string // one line: "cordon worker-1"
	// Commands are the exact commands the step would run on its node, in
	// order, as they would be sent.
	Commands []string
	// Details are further lines for the dry-run: pods a drain would evict,
	// resolved package versions, paths.
	Details []string
	// Warnings are shown but do not stop the run.
	Warnings []string
	// Blockers are reasons the step would fail if applied now (a PDB that
	// allows no disruption); the dry-run reports them.
	Blockers []string
	// Outputs are the step's outputs as far as they are known before Apply;
	// unknown ones print as (known after apply).
	Outputs cty.Value
	// State is private to the kind, carried from Plan to Apply.
	State any `json:"-"`
}

// ErrOffline is returned by Env accessors in an offline dry-run.
var ErrOffline = errors.New("not available in an offline plan")

// ErrNotImplemented marks a kind whose Apply side is not built yet; the
// message says so rather than pretending.
type ErrNotImplemented struct{ Kind, What string }

func (e *ErrNotImplemented) Error() string {
	return fmt.Sprintf("%s: %s is not implemented yet in this version of runbook", e.Kind, e.What)
}

// Env is what kinds may reach. Nil functions behave as offline.
type Env struct {
	Offline bool
	RunID   string
	// Kube returns a client for the plan's cluster.
	Kube func(ctx context.Context) (kubernetes.Interface, error)
	// REST returns the cluster's REST configuration, for kinds that need a
	// dynamic or discovery client.
	REST func(ctx context.Context) (*rest.Config, error)
	// Node returns a command runner for a node.
	Node func(ctx context.Context, n *plans.Node) (Runner, error)
	Emit func(Event)
}

// KubeClient returns the cluster client or ErrOffline.
func (e *Env) KubeClient(ctx context.Context) (kubernetes.Interface, error) {
	if e == nil || e.Offline || e.Kube == nil {
		return nil, ErrOffline
	}
	return e.Kube(ctx)
}

// NodeRunner returns a runner for the node or ErrOffline.
func (e *Env) NodeRunner(ctx context.Context, n *plans.Node) (Runner, error) {
	if e == nil || e.Offline || e.Node == nil {
		return nil, ErrOffline
	}
	if n == nil {
		return nil, errors.New("this step has no node: node steps run inside phases")
	}
	return e.Node(ctx, n)
}

// Registry holds the step kinds a plan may use.
type Registry struct{ kinds map[string]Kind }

// NewRegistry builds a registry; a duplicate name panics, since it is a
// programming error.
func NewRegistry(kinds ...Kind) *Registry {
	r := &Registry{kinds: map[string]Kind{}}
	for _, k := range kinds {
		name := k.Schema().Name
		if _, dup := r.kinds[name]; dup {
			panic("engine: duplicate step kind " + name)
		}
		r.kinds[name] = k
	}
	return r
}

// Kind returns the named kind.
func (r *Registry) Kind(name string) (Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Schema implements plans.Kinds.
func (r *Registry) Schema(name string) (*plans.KindSchema, bool) {
	k, ok := r.kinds[name]
	if !ok {
		return nil, false
	}
	return k.Schema(), true
}

// Names implements plans.Kinds, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// NodeName is the node a step acts on: its `node` argument when it has one,
// otherwise the phase's node.
func (r *Request) NodeName() string {
	if r.Args.Set("node") {
		return r.Args.String("node")
	}
	if !r.Args.Known("node") {
		return UnknownText
	}
	if r.Node != nil {
		return r.Node.Name
	}
	return ""
}

// Cmd builds a command for the step's node, through sudo when the node's
// ssh settings ask for it.
func (r *Request) Cmd(argv ...string) Command {
	sudo := true
	if r.Node != nil {
		sudo = r.Node.SSH.Sudo
	}
	return Command{Argv: argv, Sudo: sudo}
}

// Script builds a shell-script command for the step's node.
func (r *Request) Script(script string) Command {
	c := r.Cmd()
	c.Argv, c.Script = nil, script
	return c
}

// Shells renders commands for a Change.
func Shells(cmds ...Command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Shell()
	}
	return out
}
