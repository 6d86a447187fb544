package drain

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/steps/cordon"
	"github.com/zclconf/go-cty/cty"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	kubectldrain "k8s.io/kubectl/pkg/drain"
)

// EvictRetryDelay is the pause between refused evictions of one pod (HTTP
// 429 from a PodDisruptionBudget). kubectl waits 5 s; 2 s notices a PDB that
// allows a disruption again sooner, at one request per blocked pod.
var EvictRetryDelay = 2 * time.Second

// evicted remembers, per run and step instance, whether a drain removed any
// pod: a failed drain may only be reverted (uncordoned) when it changed
// nothing but the cordon.
var evicted sync.Map // key runID + address -> int

// Apply implements engine.Kind: classify (the plan did, just now), cordon,
// evict or delete, and wait by watching until every pod it removed is gone,
// tracked by UID.
func (Kind) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	node := req.NodeName()
	// Classify before anything changes; blockers fail the step here with
	// the node still schedulable (field case F02).
	pods, err := listPods(ctx, kc, node, req.Args.String("pod_selector"))
	if err != nil {
		return cty.NilVal, err
	}
	pp, err := Classify(pods, options(req.Args), ownerLookup(ctx, kc))
	if err != nil {
		return cty.NilVal, err
	}
	var blockers []string
	for _, p := range pp {
		if p.Decision == Blocks {
			blockers = append(blockers, p.ID()+": "+p.Reason)
		}
	}
	if len(blockers) > 0 {
		return cty.NilVal, fmt.Errorf("drain of %s refused before any change (the node is still schedulable):\n  - %s", node, strings.Join(blockers, "\n  - "))
	}
	was, err := cordon.Set(ctx, kc, node, true, req.Env.RunID)
	if err != nil {
		return cty.NilVal, err
	}
	if was {
		req.Emit("already_cordoned", node+" is already cordoned", nil)
	} else {
		req.Emit("cordoned", "cordoned "+node, nil)
	}

	byID := map[string]corev1.Pod{}
	for _, p := range pods {
		byID[p.Namespace+"/"+p.Name] = p
	}
	var targets []target
	var skipped []cty.Value
	bypass := req.Args.Strings("bypass")
	pl, err := kc.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return cty.NilVal, fmt.Errorf("listing PodDisruptionBudgets: %w", err)
	}
	pdbs := pl.Items
	// Healthy counts before the drain, for the PDBs it touches: the gate
	// after the node (wait_workloads) waits until they are back.
	healthy := map[string]cty.Value{}
	for _, p := range pp {
		if p.Decision != Evict && p.Decision != Delete {
			continue
		}
		pod := byIDPod(pods, p.ID())
		for _, pdb := range pdbs {
			if pdb.Namespace != p.Namespace {
				continue
			}
			if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && !sel.Empty() && pod != nil && sel.Matches(labelsOf(*pod)) {
				healthy[pdb.Namespace+"/"+pdb.Name] = cty.NumberIntVal(int64(pdb.Status.CurrentHealthy))
			}
		}
	}
	for _, p := range pp {
		switch p.Decision {
		case Skip:
			skipped = append(skipped, cty.StringVal(p.ID()))
		case Evict, Delete:
			t := target{pod: byID[p.ID()], delete: p.Decision == Delete}
			if !t.delete && req.Args.Bool("disable_eviction") && bypassed(t.pod, pdbs, bypass) {
				t.delete = true
			}
			targets = append(targets, t)
		}
	}
	gp := req.Args.Int("grace_period")
	key := req.Env.RunID + "\x00" + req.Address
	gv, err := kubectldrain.CheckEvictionSupport(kc)
	if err != nil {
		return cty.NilVal, fmt.Errorf("checking eviction support: %w", err)
	}
	if gv.Empty() && len(targets) > 0 {
		return cty.NilVal, errors.New("the API server does not support pod eviction; set disable_eviction with the PDBs to bypass")
	}

	// Watch first, so that no deletion is missed between the evictions and
	// the wait.
	w, err := kc.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(), ResourceVersion: listRV(pods, kc, ctx, node)})
	if err != nil {
		return cty.NilVal, fmt.Errorf("watching pods on %s: %w", node, err)
	}
	defer w.Stop()

	errs := make(chan error, len(targets))
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := remove(ctx, kc, req, t, gp); err != nil {
				errs <- err
				return
			}
			evicted.Store(key, 1)
		}()
	}
	wg.Wait()
	close(errs)
	var failed []string
	for err := range errs {
		failed = append(failed, err.Error())
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return cty.NilVal, fmt.Errorf("drain of %s did not finish (the node stays cordoned):\n  - %s", node, strings.Join(failed, "\n  - "))
	}
	if err := waitGone(ctx, kc, req, w, targets); err != nil {
		return cty.NilVal, err
	}
	out := make([]cty.Value, 0, len(targets))
	for _, t := range targets {
		out = append(out, cty.StringVal(t.pod.Namespace+"/"+t.pod.Name))
	}
	req.Emit("drained", fmt.Sprintf("%s drained: %d pods removed, %d left on the node (DaemonSet or mirror)", node, len(out), len(skipped)), nil)
	ph := cty.MapValEmpty(cty.Number)
	if len(healthy) > 0 {
		ph = cty.MapVal(healthy)
	}
	return cty.ObjectVal(map[string]cty.Value{"evicted": listOrEmpty(out), "skipped": listOrEmpty(skipped), "pdb_healthy": ph}), nil
}

func byIDPod(pods []corev1.Pod, id string) *corev1.Pod {
	for i := range pods {
		if pods[i].Namespace+"/"+pods[i].Name == id {
			return &pods[i]
		}
	}
	return nil
}

// listRV returns a resource version to watch from: a fresh LIST's, so that
// the watch starts after the classification's view.
func listRV(_ []corev1.Pod, kc kubernetes.Interface, ctx context.Context, node string) string {
	l, err := kc.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(), Limit: 1})
	if err != nil {
		return ""
	}
	return l.ResourceVersion
}

type target struct {
	pod    corev1.Pod
	delete bool
}

func bypassed(p corev1.Pod, pdbs []policyv1.PodDisruptionBudget, bypass []string) bool {
	for _, b := range BlockingPDBs([]PodPlan{{Namespace: p.Namespace, Name: p.Name, Decision: Evict}}, []corev1.Pod{p}, pdbs, bypass) {
		if b.Bypassed {
			return true
		}
	}
	for _, pdb := range pdbs {
		if pdb.Namespace == p.Namespace && containsStr(bypass, pdb.Namespace+"/"+pdb.Name) {
			if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && sel.Matches(labelsOf(p)) {
				return true
			}
		}
	}
	return false
}

type podLabels map[string]string

func (l podLabels) Has(k string) bool              { _, ok := l[k]; return ok }
func (l podLabels) Get(k string) string            { return l[k] }
func (l podLabels) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func labelsOf(p corev1.Pod) podLabels { return podLabels(p.Labels) }

// remove evicts (or deletes) one pod, retrying refused evictions until the
// step's deadline. The eviction is conditional on the pod's UID, so a
// replacement with the same name is never touched.
func remove(ctx context.Context, kc kubernetes.Interface, req *engine.Request, t target, gp int) error {
	id := t.pod.Namespace + "/" + t.pod.Name
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &t.pod.UID}}
	if gp >= 0 {
		g := int64(gp)
		opts.GracePeriodSeconds = &g
	}
	if t.delete {
		err := kc.CoreV1().Pods(t.pod.Namespace).Delete(ctx, t.pod.Name, opts)
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting %s: %w", id, err)
		}
		req.Emit("pod_deleted", "deleted "+id, map[string]any{"pod": id, "uid": string(t.pod.UID)})
		return nil
	}
	for attempt := 1; ; attempt++ {
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: t.pod.Namespace, Name: t.pod.Name}, DeleteOptions: &opts}
		err := kc.PolicyV1().Evictions(t.pod.Namespace).Evict(ctx, ev)
		switch {
		case err == nil:
			req.Emit("pod_evicted", "evicted "+id, map[string]any{"pod": id, "uid": string(t.pod.UID), "attempt": attempt})
			return nil
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or the name now belongs to another pod: the
			// pod we meant to evict is not there any more.
			return nil
		case apierrors.IsTooManyRequests(err):
			reason := statusReason(err)
			req.Emit("eviction_refused", fmt.Sprintf("eviction of %s refused (429, attempt %d): %s; retrying in %s", id, attempt, reason, EvictRetryDelay),
				map[string]any{"pod": id, "reason": reason, "attempt": attempt})
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s on %s: eviction still refused when the step's time ran out, %d attempts: %s", id, req.NodeName(), attempt, reason)
			case <-time.After(EvictRetryDelay):
			}
		case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "more than one PodDisruptionBudget"):
			return fmt.Errorf("%s is matched by more than one PodDisruptionBudget: the API server cannot evict it (configuration error, not retried): %v", id, err)
		default:
			return fmt.Errorf("evicting %s: %w", id, err)
		}
	}
}

// statusReason is the server's explanation of a refused eviction, naming
// the disruption budget when it does.
func statusReason(err error) string {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return err.Error()
	}
	st := se.Status()
	parts := []string{st.Message}
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Message != "" {
				parts = append(parts, c.Message)
			}
		}
	}
	return strings.Join(parts, " ")
}

// waitGone watches until every removed pod, by UID, is deleted. A pod with
// the same name but another UID is a replacement and does not count.
func waitGone(ctx context.Context, kc kubernetes.Interface, req *engine.Request, w watch.Interface, targets []target) error {
	left := map[types.UID]string{}
	for _, t := range targets {
		left[t.pod.UID] = t.pod.Namespace + "/" + t.pod.Name
	}
	// Pods deleted before the watch started: one LIST settles them.
	if err := prune(ctx, kc, req, left); err != nil {
		return err
	}
	for len(left) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain of %s: waited until the step's time ran out for %d pod(s) to terminate: %s", req.NodeName(), len(left), strings.Join(sortedValues(left), ", "))
		case ev, ok := <-w.ResultChan():
			if !ok {
				// The watch ended (server timeout): settle by LIST, watch again.
				if err := prune(ctx, kc, req, left); err != nil {
					return err
				}
				nw, err := kc.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", req.NodeName()).String()})
				if err != nil {
					return fmt.Errorf("watching pods on %s: %w", req.NodeName(), err)
				}
				w = nw
				defer nw.Stop()
				continue
			}
			if ev.Type != watch.Deleted {
				continue
			}
			if p, ok := ev.Object.(*corev1.Pod); ok {
				if id, mine := left[p.UID]; mine {
					delete(left, p.UID)
					req.Emit("pod_gone", id+" is gone", map[string]any{"pod": id, "uid": string(p.UID)})
				}
			}
		}
	}
	return nil
}

func prune(ctx context.Context, kc kubernetes.Interface, req *engine.Request, left map[types.UID]string) error {
	if len(left) == 0 {
		return nil
	}
	pods, err := listPods(ctx, kc, req.NodeName(), "")
	if err != nil {
		return err
	}
	present := map[types.UID]bool{}
	for _, p := range pods {
		present[p.UID] = true
	}
	for uid, id := range left {
		if !present[uid] {
			delete(left, uid)
			req.Emit("pod_gone", id+" is gone", map[string]any{"pod": id, "uid": string(uid)})
		}
	}
	return nil
}

func sortedValues(m map[types.UID]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Revert implements engine.Reverter, the documented policy for a failed
// drain with on_failure = "revert": the node is uncordoned only if this run
// cordoned it and the drain removed no pod (nothing else on the node
// changed). Otherwise it stays cordoned, and the failure says so.
func (Kind) Revert(ctx context.Context, req *engine.Request) error {
	if _, changed := evicted.Load(req.Env.RunID + "\x00" + req.Address); changed {
		return fmt.Errorf("%s stays cordoned: the failed drain had already removed pods", req.NodeName())
	}
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return err
	}
	return cordon.RevertOwn(ctx, kc, req.NodeName(), req.Env.RunID)
}
