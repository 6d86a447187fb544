package plans

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"k8s.io/apimachinery/pkg/labels"
)

// Target says where a step kind acts. It decides whether the kind may appear
// outside a phase and what the dry-run groups it under.
type Target int

const (
	// TargetCluster kinds act through the Kubernetes API.
	TargetCluster Target = iota
	// TargetNode kinds act on one node, over SSH; they only make sense in a
	// phase, where each.node names the node.
	TargetNode
	// TargetLocal kinds act on the machine that runs runbook.
	TargetLocal
)

func (t Target) String() string {
	switch t {
	case TargetCluster:
		return "cluster"
	case TargetNode:
		return "node"
	default:
		return "local"
	}
}

// Format is an extra check on a string argument, applied whenever its value
// is known (at validate time for literals, at plan time otherwise).
type Format string

const (
	FormatNone     Format = ""
	FormatDuration Format = "duration" // Go duration: "30s", "5m"
	FormatSelector Format = "selector" // kubectl label selector
	FormatVersion  Format = "version"  // Kubernetes version: "1.28.0" or "v1.28.0"
	FormatAbsPath  Format = "abs_path" // absolute path on the node
)

// ArgSchema describes one argument of a step kind.
type ArgSchema struct {
	Name      string
	Type      cty.Type
	Required  bool
	Default   cty.Value // cty.NilVal when there is none
	Format    Format
	OneOf     []string // allowed values for a string argument
	Sensitive bool     // never printed
	Doc       string
}

// OutputSchema describes one output of a step kind, usable by later steps as
// step.<name>.<output>.
type OutputSchema struct {
	Name string
	Type cty.Type
	Doc  string
}

// ArgError is a kind's complaint about its decoded arguments; Arg names the
// argument so the diagnostic can point at it.
type ArgError struct {
	Arg     string
	Summary string
	Detail  string
}

// KindSchema is everything the language needs to know about a step kind.
type KindSchema struct {
	Name    string
	Summary string
	Target  Target
	Args    []ArgSchema
	Outputs []OutputSchema
	// Check validates known argument values beyond types and formats; it
	// must tolerate unknown values.
	Check func(args cty.Value) []ArgError
	// NoContinue refuses on_failure = "continue" (drain, kubeadm): going on
	// after such a failure leaves a node in a state nobody planned for.
	NoContinue bool
	// Revertible kinds accept on_failure = "revert".
	Revertible bool

	// Built once (steps of one kind are decoded concurrently in apply):
	// the spec, and the unknown outputs every planned instance shares.
	once    sync.Once
	spec    hcldec.Spec
	unknown cty.Value
}

// Spec returns the hcldec spec for the kind's arguments; built once.
func (k *KindSchema) Spec() hcldec.Spec {
	k.once.Do(k.build)
	return k.spec
}

func (k *KindSchema) build() {
	k.unknown = cty.EmptyObjectVal
	if len(k.Outputs) > 0 {
		m := make(map[string]cty.Value, len(k.Outputs))
		for _, o := range k.Outputs {
			m[o.Name] = cty.UnknownVal(o.Type)
		}
		k.unknown = cty.ObjectVal(m)
	}
	obj := hcldec.ObjectSpec{}
	for _, a := range k.Args {
		var s hcldec.Spec = &hcldec.AttrSpec{Name: a.Name, Type: a.Type, Required: a.Required}
		if a.Default != cty.NilVal {
			s = &hcldec.DefaultSpec{Primary: s, Default: &hcldec.LiteralSpec{Value: a.Default}}
		}
		obj[a.Name] = s
	}
	k.spec = obj
}

// Arg returns the schema of the named argument.
func (k *KindSchema) Arg(name string) (ArgSchema, bool) {
	for _, a := range k.Args {
		if a.Name == name {
			return a, true
		}
	}
	return ArgSchema{}, false
}

// Output returns the schema of the named output.
func (k *KindSchema) Output(name string) (OutputSchema, bool) {
	for _, o := range k.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return OutputSchema{}, false
}

// UnknownOutputs is the object of the kind's outputs, every one unknown: what
// later steps see before the step has run.
func (k *KindSchema) UnknownOutputs() cty.Value {
	k.once.Do(k.build)
	return k.unknown
}

// Kinds looks up step kinds by name; the engine's registry implements it.
type Kinds interface {
	Schema(kind string) (*KindSchema, bool)
	Names() []string
}

// CheckFormat validates a known string against a format.
func CheckFormat(f Format, s string) error {
	switch f {
	case FormatDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration: use a number and a unit, such as \"30s\", \"5m\" or \"1h30m\"", s)
		}
		if d < 0 {
			return fmt.Errorf("%q is negative", s)
		}
	case FormatSelector:
		if _, err := labels.Parse(s); err != nil {
			return fmt.Errorf("%q is not a label selector: %v", s, err)
		}
	case FormatVersion:
		if _, err := ParseVersion(s); err != nil {
			return err
		}
	case FormatAbsPath:
		if !strings.HasPrefix(s, "/") {
			return fmt.Errorf("%q is not an absolute path: a relative path would land in whatever directory the command happens to run in", s)
		}
	}
	return nil
}

// SortedNames returns the names of a set of kinds in order.
func SortedNames(m map[string]*KindSchema) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
