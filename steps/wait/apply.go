package wait

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// nodeReady says whether a node is Ready with a heartbeat at or after since,
// and at the wanted kubelet version ("" for any); why says what is missing.
// The heartbeat is the newer of the Ready condition's and the node Lease's
// (kubelets renew their Lease every 10 s but rewrite the condition only
// every few minutes when nothing changes).
func nodeReady(n *corev1.Node, lease time.Time, since time.Time, want string) (ok bool, why string) {
	var ready *corev1.NodeCondition
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			ready = &n.Status.Conditions[i]
		}
	}
	switch {
	case ready == nil:
		return false, "no Ready condition yet"
	case ready.Status != corev1.ConditionTrue:
		return false, fmt.Sprintf("Ready=%s (%s)", ready.Status, ready.Reason)
	case ready.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)) && lease.Before(since):
		last := ready.LastHeartbeatTime.Time
		if lease.After(last) {
			last = lease
		}
		return false, fmt.Sprintf("no heartbeat since the step started (last %s)", last.Format(time.RFC3339))
	case want != "" && strings.TrimPrefix(n.Status.NodeInfo.KubeletVersion, "v") != want:
		return false, fmt.Sprintf("kubelet %s, waiting for v%s", n.Status.NodeInfo.KubeletVersion, want)
	}
	return true, ""
}

// Apply implements engine.Kind: it watches the node until it is Ready with
// a fresh heartbeat (and the kubelet version), or the step's time runs out,
// then reports the node's conditions.
func (Node) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	name := req.NodeName()
	want := ""
	if v := req.Args.String("kubelet_version"); v != "" {
		pv, err := plans.ParseVersion(v)
		if err != nil {
			return cty.NilVal, err
		}
		want = pv.String()
	}
	since := req.Started
	if since.IsZero() {
		since = time.Now()
	}
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	last := "not seen yet"
	var lastNode *corev1.Node
	renewed := func() time.Time {
		l, err := kc.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			return time.Time{}
		}
		return l.Spec.RenewTime.Time
	}
	for {
		l, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return cty.NilVal, timeoutOr(ctx, name, last, lastNode, fmt.Errorf("reading node %s: %w", name, err))
		}
		if len(l.Items) == 1 {
			lastNode = &l.Items[0]
			ok, why := nodeReady(lastNode, renewed(), since, want)
			if ok {
				return cty.ObjectVal(map[string]cty.Value{"kubelet_version": cty.StringVal(lastNode.Status.NodeInfo.KubeletVersion)}), nil
			}
			if why != last {
				req.Emit("waiting", fmt.Sprintf("waiting for %s: %s", name, why), nil)
				last = why
			}
		}
		w, err := kc.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: l.ResourceVersion})
		if err != nil {
			return cty.NilVal, timeoutOr(ctx, name, last, lastNode, fmt.Errorf("watching node %s: %w", name, err))
		}
		done, out, err := watchNode(ctx, req, w, since, want, &last, &lastNode, renewed)
		w.Stop()
		if err != nil {
			return cty.NilVal, timeoutOr(ctx, name, last, lastNode, err)
		}
		if done {
			return out, nil
		}
	}
}

func watchNode(ctx context.Context, req *engine.Request, w watch.Interface, since time.Time, want string, last *string, lastNode **corev1.Node, renewed func() time.Time) (bool, cty.Value, error) {
	// Lease renewals are not node events: a tick re-checks the heartbeat
	// while the node object itself is quiet.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, cty.NilVal, ctx.Err()
		case <-tick.C:
			if *lastNode == nil {
				continue
			}
			if ok, why := nodeReady(*lastNode, renewed(), since, want); ok {
				return true, cty.ObjectVal(map[string]cty.Value{"kubelet_version": cty.StringVal((*lastNode).Status.NodeInfo.KubeletVersion)}), nil
			} else if why != *last {
				req.Emit("waiting", fmt.Sprintf("waiting for %s: %s", (*lastNode).Name, why), nil)
				*last = why
			}
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, cty.NilVal, nil
			}
			n, isNode := ev.Object.(*corev1.Node)
			if !isNode {
				continue
			}
			*lastNode = n
			ok2, why := nodeReady(n, renewed(), since, want)
			if ok2 {
				return true, cty.ObjectVal(map[string]cty.Value{"kubelet_version": cty.StringVal(n.Status.NodeInfo.KubeletVersion)}), nil
			}
			if why != *last {
				req.Emit("waiting", fmt.Sprintf("waiting for %s: %s", n.Name, why), nil)
				*last = why
			}
		}
	}
}

func timeoutOr(ctx context.Context, name, last string, n *corev1.Node, err error) error {
	if ctx.Err() == nil {
		return err
	}
	conds := "node not seen"
	if n != nil {
		conds = "kubelet " + n.Status.NodeInfo.KubeletVersion + "; " + Conditions(n.Status.Conditions)
	}
	return fmt.Errorf("gave up waiting for %s to be ready (%s); its conditions: %s", name, last, conds)
}

// Apply implements engine.Kind: it polls (every second, bounded by the
// step's timeout) until every PDB in scope has its desired healthy pods and
// every Deployment, StatefulSet and DaemonSet in scope is available.
func (Workloads) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	kc, err := req.Env.KubeClient(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	nss := req.Args.Strings("namespaces")
	if len(nss) == 0 {
		nss = []string{metav1.NamespaceAll}
	}
	sel := req.Args.String("selector")
	want := map[string]int32{}
	for k, v := range req.Args.StringMap("pdb_healthy") {
		var n int32
		fmt.Sscan(v, &n)
		want[k] = n
	}
	last := ""
	for {
		var missing []string
		for _, ns := range nss {
			m, err := unavailable(ctx, kc, ns, sel, want)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				return cty.NilVal, err
			}
			missing = append(missing, m...)
		}
		sort.Strings(missing)
		if len(missing) == 0 && ctx.Err() == nil {
			return cty.EmptyObjectVal, nil
		}
		msg := strings.Join(missing, "; ")
		if msg != last && msg != "" {
			req.Emit("waiting", "waiting for "+msg, nil)
			last = msg
		}
		select {
		case <-ctx.Done():
			return cty.NilVal, fmt.Errorf("gave up waiting for workloads to be available: %s", last)
		case <-time.After(time.Second):
		}
	}
}

func unavailable(ctx context.Context, kc kubernetes.Interface, ns, sel string, want map[string]int32) ([]string, error) {
	opts := metav1.ListOptions{LabelSelector: sel}
	var out []string
	pdbs, err := kc.PolicyV1().PodDisruptionBudgets(ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing PodDisruptionBudgets: %w", err)
	}
	for _, p := range pdbs.Items {
		// Back to the count from before the drain when it is known, else
		// every pod the PDB expects; the PDB's minimum alone would let the
		// next node's drain start while this one's pods are still starting.
		need, ok := want[p.Namespace+"/"+p.Name]
		if !ok {
			need = p.Status.ExpectedPods
		}
		if need < p.Status.DesiredHealthy {
			need = p.Status.DesiredHealthy
		}
		if p.Status.ObservedGeneration < p.Generation || p.Status.CurrentHealthy < need {
			out = append(out, fmt.Sprintf("PDB %s/%s healthy %d of %d", p.Namespace, p.Name, p.Status.CurrentHealthy, need))
		}
	}
	deps, err := kc.AppsV1().Deployments(ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing Deployments: %w", err)
	}
	for _, d := range deps.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas < want || d.Status.UpdatedReplicas < want {
			out = append(out, fmt.Sprintf("Deployment %s/%s available %d of %d", d.Namespace, d.Name, d.Status.AvailableReplicas, want))
		}
	}
	sts, err := kc.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing StatefulSets: %w", err)
	}
	for _, s := range sts.Items {
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		if s.Status.ObservedGeneration < s.Generation || s.Status.AvailableReplicas < want {
			out = append(out, fmt.Sprintf("StatefulSet %s/%s available %d of %d", s.Namespace, s.Name, s.Status.AvailableReplicas, want))
		}
	}
	dss, err := kc.AppsV1().DaemonSets(ns).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	for _, d := range dss.Items {
		if d.Status.ObservedGeneration < d.Generation || d.Status.NumberAvailable < d.Status.DesiredNumberScheduled {
			out = append(out, fmt.Sprintf("DaemonSet %s/%s available %d of %d", d.Namespace, d.Name, d.Status.NumberAvailable, d.Status.DesiredNumberScheduled))
		}
	}
	return out, nil
}
