package drain

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func ctrl(kind, name string) []metav1.OwnerReference {
	t := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, Controller: &t}}
}

func pod(ns, name string, mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: "worker-1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if mut != nil {
		mut(p)
	}
	return p
}

// f02Objects is field case F02's node: every kind of pod a drain must classify.
func f02Objects() []runtime.Object {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-rs"}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "proxy"}}
	return []runtime.Object{rs, ds,
		pod("app", "web-0", func(p *corev1.Pod) { p.OwnerReferences = ctrl("ReplicaSet", "web-rs") }),
		pod("app", "bare", nil),
		pod("app", "scratch", func(p *corev1.Pod) {
			p.OwnerReferences = ctrl("ReplicaSet", "web-rs")
			p.Spec.Volumes = []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}),
		pod("kube-system", "proxy-x", func(p *corev1.Pod) { p.OwnerReferences = ctrl("DaemonSet", "proxy") }),
		pod("app", "noctl", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm"}}
		}),
		pod("app", "orphan", func(p *corev1.Pod) { p.OwnerReferences = ctrl("ReplicationController", "gone") }),
		pod("app", "done", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("kube-system", "etcd-worker-1", func(p *corev1.Pod) {
			p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "hash"}
		}),
		pod("app", "elsewhere", func(p *corev1.Pod) { p.Spec.NodeName = "worker-2" }),
	}
}

func TestClassifyF02(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want map[string]Decision
	}{
		{"defaults", Options{}, map[string]Decision{
			"app/web-0": Evict, "app/bare": Blocks, "app/scratch": Blocks, "kube-system/proxy-x": Blocks,
			"app/noctl": Blocks, "app/orphan": Blocks, "app/done": Evict, "kube-system/etcd-worker-1": Skip,
		}},
		{"every override", Options{IgnoreDaemonSets: true, DeleteEmptyDirData: true, Force: true}, map[string]Decision{
			"app/web-0": Evict, "app/bare": Delete, "app/scratch": Evict, "kube-system/proxy-x": Skip,
			"app/noctl": Delete, "app/orphan": Delete, "app/done": Evict, "kube-system/etcd-worker-1": Skip,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(f02Objects()...)
			pods, err := listPods(context.Background(), kc, "worker-1", "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := Classify(pods, tt.opts, ownerLookup(context.Background(), kc))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("classified %d pods, want %d: %+v", len(got), len(tt.want), got)
			}
			for _, p := range got {
				if p.Decision != tt.want[p.ID()] {
					t.Errorf("%s: %s (%s), want %s", p.ID(), p.Decision, p.Reason, tt.want[p.ID()])
				}
			}
			for _, p := range got {
				if p.ID() == "app/orphan" && !strings.Contains(p.Warning+p.Reason, "gone") && !strings.Contains(p.Warning, "no longer exists") {
					t.Errorf("orphan pod: no word of its missing owner: %+v", p)
				}
			}
		})
	}
}

func request(t *testing.T, kc kubernetes.Interface, args map[string]cty.Value) *engine.Request {
	t.Helper()
	obj := map[string]cty.Value{}
	for _, a := range schema.Args {
		if v, ok := args[a.Name]; ok {
			obj[a.Name] = v
		} else if a.Default != cty.NilVal {
			obj[a.Name] = a.Default
		} else {
			obj[a.Name] = cty.NullVal(a.Type)
		}
	}
	node := &plans.Node{Name: "worker-1"}
	return &engine.Request{Address: `phase.p.step.drain["worker-1"]`, Step: &plans.Step{Kind: "drain", Name: "drain", Schema: schema},
		Node: node, Args: engine.Args{V: cty.ObjectVal(obj)}, Config: &plans.StepConfig{},
		Env: &engine.Env{Kube: func(context.Context) (kubernetes.Interface, error) { return kc, nil }}}
}

// TestPlanF01 is field case F01's dry-run: a PDB allowing no disruption is
// named with its counts and the pod, before anything happens; and the plan
// lists the node's pods with one pod LIST.
func TestPlanF01(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}
	web := pod("app", "web-0", func(p *corev1.Pod) { p.OwnerReferences = ctrl("ReplicaSet", "web-rs") })
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-rs"}}
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-pdb"},
		Spec:   policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web-0"}}},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0, CurrentHealthy: 1, DesiredHealthy: 1}}
	kc := fake.NewClientset(node, web, rs, pdb)
	ch, err := Kind{}.Plan(context.Background(), request(t, kc, nil))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(ch.Warnings, "\n")
	for _, want := range []string{"app/web-pdb", "healthy 1, desired 1", "app/web-0", "would block"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", joined, want)
		}
	}
	if len(ch.Blockers) != 0 {
		t.Errorf("a PDB block is a warning in the plan (it may clear), got blockers %v", ch.Blockers)
	}
	lists := 0
	for _, a := range kc.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "pods" {
			lists++
			if fs := a.(k8stesting.ListAction).GetListRestrictions().Fields.String(); fs != "spec.nodeName=worker-1" {
				t.Errorf("pod LIST field selector %q", fs)
			}
		}
	}
	if lists != 1 {
		t.Errorf("%d pod LISTs, want 1", lists)
	}
	// Naming the PDB in bypass turns the warning into a planned deletion.
	ch, err = Kind{}.Plan(context.Background(), request(t, kc, map[string]cty.Value{
		"disable_eviction": cty.True, "bypass": cty.ListVal([]cty.Value{cty.StringVal("app/web-pdb")})}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(ch.Warnings, "\n"), "would block") || !strings.Contains(strings.Join(ch.Details, "\n"), "bypassed") {
		t.Errorf("bypass: warnings %v details %v", ch.Warnings, ch.Details)
	}
}

// TestPlanF02Blockers: with default options the plan refuses, listing every
// blocker as ns/name with its reason.
func TestPlanF02Blockers(t *testing.T) {
	objs := append(f02Objects(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}})
	kc := fake.NewClientset(objs...)
	ch, err := Kind{}.Plan(context.Background(), request(t, kc, nil))
	if err != nil {
		t.Fatal(err)
	}
	b := strings.Join(ch.Blockers, "\n")
	for _, want := range []string{"app/bare", "app/scratch", "kube-system/proxy-x", "app/noctl", "app/orphan", "emptyDir", "DaemonSet"} {
		if !strings.Contains(b, want) {
			t.Errorf("blockers lack %q:\n%s", want, b)
		}
	}
	for _, not := range []string{"app/done", "etcd-worker-1", "app/web-0"} {
		if strings.Contains(b, not) {
			t.Errorf("%s must not block:\n%s", not, b)
		}
	}
	for _, a := range kc.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("the dry-run changed something: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

// TestPlanListsOncePerNode: planning drains for 500 nodes makes one pod
// LIST per node (field selector), never one request per pod.
func TestPlanListsOncePerNode(t *testing.T) {
	const nodes, perNode = 500, 6
	var objs []runtime.Object
	objs = append(objs, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-rs"}})
	for n := 0; n < nodes; n++ {
		name := fmt.Sprintf("node-%d", n)
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		for p := 0; p < perNode; p++ {
			objs = append(objs, pod("app", fmt.Sprintf("web-%d-%d", n, p), func(pd *corev1.Pod) {
				pd.Spec.NodeName = name
				pd.OwnerReferences = ctrl("ReplicaSet", "web-rs")
			}))
		}
	}
	kc := fake.NewClientset(objs...)
	for n := 0; n < nodes; n++ {
		req := request(t, kc, map[string]cty.Value{"node": cty.StringVal(fmt.Sprintf("node-%d", n))})
		if _, err := (Kind{}).Plan(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	counts := map[string]int{}
	for _, a := range kc.Actions() {
		counts[a.GetVerb()+" "+a.GetResource().Resource]++
	}
	if counts["list pods"] != nodes {
		t.Errorf("%d pod LISTs for %d nodes, want one per node", counts["list pods"], nodes)
	}
	if counts["get pods"] != 0 {
		t.Errorf("%d pod GETs: the plan must not ask per pod", counts["get pods"])
	}
	// One owner lookup per distinct owner per node, not per pod.
	if counts["get replicasets"] > nodes {
		t.Errorf("%d ReplicaSet GETs for %d nodes", counts["get replicasets"], nodes)
	}
	t.Logf("requests for %d nodes x %d pods: %v", nodes, perNode, counts)
}

// A drain resumed after its pods were gone is a no-op whose pdb_healthy is
// known (empty), so that the wait_workloads after it can run; a drain with
// work to do leaves it unknown until it has counted.
func TestPlanOutputsOnResume(t *testing.T) {
	tests := []struct {
		name      string
		cordoned  bool
		pods      []runtime.Object
		wantNoOp  bool
		wantKnown bool
	}{
		{"cordoned and empty: done before", true, nil, true, true},
		{"pods left", true, []runtime.Object{pod("app", "web-0", func(p *corev1.Pod) { p.OwnerReferences = ctrl("ReplicaSet", "web-rs") }),
			&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-rs"}}}, false, false},
		{"not cordoned yet", false, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}, Spec: corev1.NodeSpec{Unschedulable: tt.cordoned}}
			kc := fake.NewClientset(append([]runtime.Object{node}, tt.pods...)...)
			ch, err := Kind{}.Plan(context.Background(), request(t, kc, nil))
			if err != nil {
				t.Fatal(err)
			}
			if (ch.Action == engine.ActionNoOp) != tt.wantNoOp {
				t.Errorf("action %s", ch.Action)
			}
			ph := ch.Outputs.GetAttr("pdb_healthy")
			if ph.IsKnown() != tt.wantKnown || (tt.wantKnown && ph.LengthInt() != 0) {
				t.Errorf("pdb_healthy %#v", ph)
			}
		})
	}
}
