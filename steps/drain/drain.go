// Package drain implements the drain step kind: it classifies a node's pods
// before touching anything, then evicts them through the eviction API
// (k8s.io/kubectl/pkg/drain underneath), honouring PodDisruptionBudgets,
// within a finite timeout (field cases F01 and F02).
//
// It does not cordon by itself in the dry-run's sense of ownership: the
// cordon it makes is recorded like the cordon kind's.
package drain

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Kind is the drain kind.
type Kind struct{}

var schema = &plans.KindSchema{
	Name:    "drain",
	Summary: "Cordon a node and evict its pods through the eviction API, honouring PodDisruptionBudgets (kubectl drain).",
	Target:  plans.TargetCluster,
	Args: []plans.ArgSchema{
		{Name: "node", Type: cty.String, Doc: "Node name; inside a phase, the phase's node by default."},
		{Name: "ignore_daemonsets", Type: cty.Bool, Default: cty.False, Doc: "Leave DaemonSet pods on the node instead of refusing to drain (kubectl --ignore-daemonsets)."},
		{Name: "delete_emptydir_data", Type: cty.Bool, Default: cty.False, Doc: "Evict pods with emptyDir volumes, losing that data (kubectl --delete-emptydir-data)."},
		{Name: "force", Type: cty.Bool, Default: cty.False, Doc: "Delete pods that no controller manages; they are not recreated (kubectl --force)."},
		{Name: "grace_period", Type: cty.Number, Default: cty.NumberIntVal(-1), Doc: "Seconds each pod gets to terminate; -1 uses the pod's own terminationGracePeriodSeconds."},
		{Name: "pod_selector", Type: cty.String, Format: plans.FormatSelector, Doc: "Only pods matching this label selector."},
		{Name: "skip_wait_for_delete_timeout", Type: cty.Number, Default: cty.NumberIntVal(0), Doc: "Skip pods whose deletion started more than this many seconds ago (0: never)."},
		{Name: "disable_eviction", Type: cty.Bool, Default: cty.False, Doc: "Delete instead of evict, bypassing PDBs; only for the PDBs or workloads named in bypass."},
		{Name: "bypass", Type: cty.List(cty.String), Doc: "PodDisruptionBudgets (\"ns/name\") whose pods may be deleted instead of evicted when disable_eviction is set."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "evicted", Type: cty.List(cty.String), Doc: "Pods evicted or deleted, as ns/name."},
		{Name: "skipped", Type: cty.List(cty.String), Doc: "Pods left on the node (DaemonSet and mirror pods)."},
		{Name: "pdb_healthy", Type: cty.Map(cty.Number), Doc: "Healthy pods of each PodDisruptionBudget the drain touched (\"ns/name\"), counted before the drain: give it to wait_workloads. Empty when the drain had nothing to do (e.g. resumed after its pods were gone): wait_workloads then waits for every PDB to have all its expected pods healthy."},
	},
	NoContinue: true,
	Revertible: true,
	Check: func(args cty.Value) []plans.ArgError {
		de, bp := args.GetAttr("disable_eviction"), args.GetAttr("bypass")
		if de.IsKnown() && !de.IsNull() && de.True() && bp.IsKnown() && (bp.IsNull() || bp.LengthInt() == 0) {
			return []plans.ArgError{{Arg: "disable_eviction", Summary: "disable_eviction needs bypass", Detail: "Deleting pods instead of evicting them ignores PodDisruptionBudgets; name the PDBs that may be bypassed in bypass = [\"ns/name\"]."}}
		}
		if gp := args.GetAttr("grace_period"); gp.IsKnown() && !gp.IsNull() {
			if f, _ := gp.AsBigFloat().Float64(); f < -1 {
				return []plans.ArgError{{Arg: "grace_period", Summary: "Invalid grace_period", Detail: "grace_period is -1 (the pod's own) or a number of seconds."}}
			}
		}
		return nil
	},
}

// Schema implements engine.Kind.
func (Kind) Schema() *plans.KindSchema { return schema }

func options(a engine.Args) Options {
	return Options{
		IgnoreDaemonSets:   a.Bool("ignore_daemonsets"),
		DeleteEmptyDirData: a.Bool("delete_emptydir_data"),
		Force:              a.Bool("force"),
		SkipDeletedAfter:   time.Duration(a.Int("skip_wait_for_delete_timeout")) * time.Second,
		Bypass:             a.Strings("bypass"),
		Now:                time.Now(),
	}
}

// KubectlEquivalent is the kubectl command with the same options, for
// reviewers who know kubectl.
func KubectlEquivalent(node string, a engine.Args, timeout time.Duration) string {
	parts := []string{"kubectl", "drain", engine.Quote(node)}
	if a.Bool("ignore_daemonsets") {
		parts = append(parts, "--ignore-daemonsets")
	}
	if a.Bool("delete_emptydir_data") {
		parts = append(parts, "--delete-emptydir-data")
	}
	if a.Bool("force") {
		parts = append(parts, "--force")
	}
	if gp := a.Int("grace_period"); gp >= 0 && a.Known("grace_period") {
		parts = append(parts, fmt.Sprintf("--grace-period=%d", gp))
	}
	if s := a.String("pod_selector"); s != "" {
		parts = append(parts, "--pod-selector="+engine.Quote(s))
	}
	if a.Bool("disable_eviction") {
		parts = append(parts, "--disable-eviction")
	}
	if timeout > 0 {
		parts = append(parts, "--timeout="+timeout.String())
	}
	return strings.Join(parts, " ")
}

// Plan implements engine.Kind: it lists the node's pods once, classifies
// them and reports the PDBs that would refuse an eviction right now.
func (Kind) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	node := req.NodeName()
	ch := &engine.Change{Action: engine.ActionChange, Summary: "drain " + node,
		Details: []string{"equivalent: " + KubectlEquivalent(node, req.Args, req.Config.Timeout)}}
	kc, err := req.Env.KubeClient(ctx)
	if err == engine.ErrOffline {
		ch.Warnings = append(ch.Warnings, "offline: the node's pods were not listed; the drain will classify them before it cordons")
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	pods, err := listPods(ctx, kc, node, req.Args.String("pod_selector"))
	if err != nil {
		return nil, err
	}
	pp, err := Classify(pods, options(req.Args), ownerLookup(ctx, kc))
	if err != nil {
		return nil, fmt.Errorf("classifying pods on %s: %w", node, err)
	}
	var evict, skipped []cty.Value
	for _, p := range pp {
		owner := p.Owner
		if owner == "" {
			owner = "-"
		}
		line := fmt.Sprintf("%-6s %s (owner %s): %s", p.Decision, p.ID(), owner, p.Reason)
		if p.Warning != "" {
			line += "; warning: " + p.Warning
			ch.Warnings = append(ch.Warnings, p.ID()+": "+p.Warning)
		}
		ch.Details = append(ch.Details, line)
		switch p.Decision {
		case Blocks:
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s blocks the drain: %s", p.ID(), p.Reason))
		case Evict, Delete:
			evict = append(evict, cty.StringVal(p.ID()))
		case Skip:
			skipped = append(skipped, cty.StringVal(p.ID()))
		}
	}
	if len(evict) > 0 {
		pdbs, err := kc.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing PodDisruptionBudgets: %w", err)
		}
		for _, b := range BlockingPDBs(pp, pods, pdbs.Items, req.Args.Strings("bypass")) {
			if !b.Bypassed {
				ch.Warnings = append(ch.Warnings, "would block: "+b.String())
			} else {
				ch.Details = append(ch.Details, b.String())
			}
		}
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading node %s: %w", node, err)
	}
	// The PDBs' healthy counts are taken when the drain runs.
	healthy := cty.UnknownVal(cty.Map(cty.Number))
	if n.Spec.Unschedulable && len(evict) == 0 {
		ch.Action, ch.Summary = engine.ActionNoOp, node+" is cordoned and has no pods to evict"
		// Nothing to drain (a drain resumed after its pods were gone): the
		// counts from before it are lost, and an empty map makes
		// wait_workloads wait for every PDB to have all its expected pods
		// healthy, the safe side of "as healthy as before".
		healthy = cty.MapValEmpty(cty.Number)
	}
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"evicted": listOrEmpty(evict), "skipped": listOrEmpty(skipped), "pdb_healthy": healthy})
	return ch, nil
}

func listOrEmpty(v []cty.Value) cty.Value {
	if len(v) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	return cty.ListVal(v)
}

// listPods is the drain's single pod LIST for a node.
func listPods(ctx context.Context, kc kubernetes.Interface, node, selector string) ([]corev1.Pod, error) {
	opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(), LabelSelector: selector}
	l, err := kc.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing pods on %s: %w", node, err)
	}
	// The server applies the field selector; filtering again costs nothing
	// and keeps a drain from ever touching another node's pod.
	pods := l.Items[:0]
	for _, p := range l.Items {
		if p.Spec.NodeName == node {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// ownerLookup answers OwnerExists with one GET per distinct owner.
func ownerLookup(ctx context.Context, kc kubernetes.Interface) OwnerExists {
	memo := map[string]bool{}
	return func(ns string, ref metav1.OwnerReference) (bool, error) {
		key := ns + "/" + ref.Kind + "/" + ref.Name
		if v, ok := memo[key]; ok {
			return v, nil
		}
		var err error
		switch ref.Kind {
		case "ReplicaSet":
			_, err = kc.AppsV1().ReplicaSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		case "DaemonSet":
			_, err = kc.AppsV1().DaemonSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		case "StatefulSet":
			_, err = kc.AppsV1().StatefulSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		case "ReplicationController":
			_, err = kc.CoreV1().ReplicationControllers(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		case "Job":
			_, err = kc.BatchV1().Jobs(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		default:
			// Custom controllers: trust the reference, as kubectl does.
			memo[key] = true
			return true, nil
		}
		switch {
		case err == nil:
			memo[key] = true
		case apierrors.IsNotFound(err):
			memo[key] = false
		default:
			return false, fmt.Errorf("looking up %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
		}
		return memo[key], nil
	}
}
