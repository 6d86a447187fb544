// Package drill checks what a disaster-recovery drill must show at its end
// (the objects of a resource backup present again, named workloads Ready)
// and measures the drill from its journal: the time to recovery and the age
// of the data it came back with. It does not run steps (`runbook drill`
// runs the plan as apply does) and it never changes the cluster.
package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/internal/report"
	"github.com/runbookhq/runbook/plans"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// RestoreKinds are the step kinds whose start begins the recovery.
var RestoreKinds = []string{"etcd_restore", "restore_resources", "velero_restore"}

// Clients are what the checks read the cluster with.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Mapper  meta.RESTMapper
}

// Measure reads the recovery's start and the restored snapshot's age from
// a run's journal records.
func Measure(recs []journal.Record) (start time.Time, snapshotAge time.Duration, snapshotTime time.Time) {
	snapshotAge = -1
	restore := map[string]bool{}
	for _, k := range RestoreKinds {
		restore[k] = true
	}
	for _, r := range recs {
		switch {
		case r.Type == journal.StepStarted && restore[r.Kind] && start.IsZero():
			start = r.Time
		case r.Type == journal.StepFinished && r.Kind == "etcd_restore":
			if s, ok := number(r.Outputs["snapshot_age_seconds"]); ok {
				snapshotAge = time.Duration(s) * time.Second
			}
			if t, ok := r.Outputs["snapshot_time"].(string); ok {
				snapshotTime, _ = time.Parse(time.RFC3339, t)
			}
		}
	}
	return start, snapshotAge, snapshotTime
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	}
	return 0, false
}

// Verify evaluates the drill's expectations until they all hold or its
// timeout passes, and returns the last evaluation and when they first all
// held (zero when they never did).
func Verify(ctx context.Context, c Clients, s *plans.DrillSettings, progress func(string)) ([]report.Check, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	wanted, err := expectedObjects(s.ExpectObjects)
	if err != nil {
		return nil, time.Time{}, err
	}
	last := ""
	for {
		checks := evaluate(ctx, c, s, wanted)
		failing := 0
		for _, ch := range checks {
			if !ch.OK {
				failing++
			}
		}
		if failing == 0 {
			return checks, time.Now(), nil
		}
		if msg := fmt.Sprintf("waiting for %d of %d drill expectations: %s", failing, len(checks), firstFailing(checks)); msg != last && progress != nil {
			progress(msg)
			last = msg
		}
		select {
		case <-ctx.Done():
			return checks, time.Time{}, nil
		case <-time.After(time.Second):
		}
	}
}

func firstFailing(cs []report.Check) string {
	for _, c := range cs {
		if !c.OK {
			return c.Name + ": " + c.Got
		}
	}
	return ""
}

// objectSet is the objects of one kind in one namespace of a backup.
type objectSet struct {
	backup    string
	namespace string // "" for cluster-scoped
	gvk       schema.GroupVersionKind
	names     []string
}

// expectedObjects reads the backups: <dir>/<namespace|_cluster>/<group>.<Kind>/<name>.yaml.
func expectedObjects(es []plans.ExpectObjectsSettings) ([]objectSet, error) {
	var out []objectSet
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(e.Backup, "index.json")); err != nil {
			return nil, fmt.Errorf("expect_objects: %s is not a complete resource backup (no index.json): %w", e.Backup, err)
		}
		nsDirs, err := os.ReadDir(e.Backup)
		if err != nil {
			return nil, fmt.Errorf("expect_objects: %w", err)
		}
		for _, nd := range nsDirs {
			if !nd.IsDir() || (len(e.Namespaces) > 0 && !contains(e.Namespaces, nd.Name())) {
				continue
			}
			kindDirs, err := os.ReadDir(filepath.Join(e.Backup, nd.Name()))
			if err != nil {
				return nil, fmt.Errorf("expect_objects: %w", err)
			}
			for _, kd := range kindDirs {
				set, err := readSet(e.Backup, nd.Name(), kd.Name())
				if err != nil {
					return nil, err
				}
				if set == nil || !kindWanted(e.Kinds, set.gvk) {
					continue
				}
				out = append(out, *set)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].namespace != out[j].namespace {
			return out[i].namespace < out[j].namespace
		}
		return kindKey(out[i].gvk) < kindKey(out[j].gvk)
	})
	return out, nil
}

func readSet(backup, ns, kindDir string) (*objectSet, error) {
	files, err := filepath.Glob(filepath.Join(backup, ns, kindDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, err
	}
	sort.Strings(files)
	b, err := os.ReadFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("expect_objects: %w", err)
	}
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		return nil, fmt.Errorf("expect_objects: %s: %w", files[0], err)
	}
	set := &objectSet{backup: backup, gvk: u.GroupVersionKind()}
	if ns != "_cluster" {
		set.namespace = ns
	}
	for _, f := range files {
		set.names = append(set.names, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	return set, nil
}

func kindKey(gvk schema.GroupVersionKind) string {
	if gvk.Group == "" {
		return gvk.Kind
	}
	return gvk.Group + "/" + gvk.Kind
}

func kindWanted(kinds []string, gvk schema.GroupVersionKind) bool {
	return len(kinds) == 0 || contains(kinds, gvk.Kind) || contains(kinds, kindKey(gvk))
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func evaluate(ctx context.Context, c Clients, s *plans.DrillSettings, wanted []objectSet) []report.Check {
	var out []report.Check
	for _, set := range wanted {
		out = append(out, checkObjects(ctx, c, set))
	}
	for _, w := range s.ExpectReady {
		out = append(out, checkReady(ctx, c.Kube, w))
	}
	return out
}

// checkObjects compares one kind in one namespace with the backup: the
// same objects by name (controller-owned ones are not in backups, so they
// are not counted here either).
func checkObjects(ctx context.Context, c Clients, set objectSet) report.Check {
	where := set.namespace
	if where == "" {
		where = "(cluster)"
	}
	ch := report.Check{Name: fmt.Sprintf("objects %s %s as in %s", where, kindKey(set.gvk), set.backup), Want: fmt.Sprintf("%d", len(set.names))}
	m, err := c.Mapper.RESTMapping(set.gvk.GroupKind(), set.gvk.Version)
	if err != nil {
		ch.Got = "kind not served: " + err.Error()
		return ch
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := c.Dynamic.Resource(m.Resource).Namespace(set.namespace).List(lctx, metav1.ListOptions{})
	if err != nil {
		ch.Got = "cannot list: " + err.Error()
		return ch
	}
	live := map[string]bool{}
	for i := range l.Items {
		if metav1.GetControllerOf(&l.Items[i]) == nil {
			live[l.Items[i].GetName()] = true
		}
	}
	var missing []string
	for _, n := range set.names {
		if !live[n] {
			missing = append(missing, n)
		}
	}
	ch.Got = fmt.Sprintf("%d", len(live))
	if len(missing) > 0 {
		ch.Detail = "missing: " + strings.Join(first(missing, 5), ", ")
		ch.Got += " (" + ch.Detail + ")"
		return ch
	}
	ch.OK = true
	return ch
}

func first(l []string, n int) []string {
	if len(l) <= n {
		return l
	}
	return append(l[:n:n], fmt.Sprintf("and %d more", len(l)-n))
}

// checkReady says whether a namespace/kind/name workload is Ready: every
// replica updated and available (Deployment), ready (StatefulSet), or
// ready on every node it should run on (DaemonSet).
func checkReady(ctx context.Context, kc kubernetes.Interface, w string) report.Check {
	ch := report.Check{Name: "ready " + w, Want: "all replicas ready"}
	p := strings.SplitN(w, "/", 3)
	ns, kind, name := p[0], strings.ToLower(p[1]), p[2]
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var ready, want int32
	var err error
	switch kind {
	case "deployment":
		d, e := kc.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			want, ready = replicas(d.Spec.Replicas), d.Status.AvailableReplicas
			if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas < want {
				ready = min(ready, d.Status.UpdatedReplicas)
			}
		}
	case "statefulset":
		s, e := kc.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			want, ready = replicas(s.Spec.Replicas), s.Status.ReadyReplicas
		}
	case "daemonset":
		d, e := kc.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			want, ready = d.Status.DesiredNumberScheduled, d.Status.NumberReady
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		ch.Got = "not found"
	case err != nil:
		ch.Got = err.Error()
	default:
		ch.Got = fmt.Sprintf("%d/%d ready", ready, want)
		ch.OK = ready >= want
	}
	return ch
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}
