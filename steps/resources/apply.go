package resources

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/zclconf/go-cty/cty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// clients are what the resource kinds need beyond the typed client.
type clientSet struct {
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
}

func clients(ctx context.Context, req *engine.Request) (*clientSet, error) {
	if req.Env == nil || req.Env.Offline || req.Env.REST == nil {
		return nil, engine.ErrOffline
	}
	cfg, err := req.Env.REST(ctx)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clientSet{Dynamic: dc, Discovery: disc}, nil
}

// Index is index.json of a backup.
type Index struct {
	Created time.Time      `json:"created"`
	Server  string         `json:"server_version"`
	Counts  map[string]int `json:"counts"` // "group/Kind" (core: "Kind") -> objects
	Total   int            `json:"total"`
}

// stripped are fields that describe one object's life in one cluster, not
// its desired state.
func strip(u *unstructured.Unstructured) {
	delete(u.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	if a := u.GetAnnotations(); a != nil {
		delete(a, "kubectl.kubernetes.io/last-applied-configuration")
		delete(a, "deployment.kubernetes.io/revision")
		if len(a) == 0 {
			unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
		} else {
			u.SetAnnotations(a)
		}
	}
}

func groupDir(gvk schema.GroupVersionKind) string {
	g := gvk.Group
	if g == "" {
		g = "core"
	}
	return g + "." + gvk.Kind
}

func countKey(gvk schema.GroupVersionKind) string {
	if gvk.Group == "" {
		return gvk.Kind
	}
	return gvk.Group + "/" + gvk.Kind
}

// Apply implements engine.Kind: every listable resource found by discovery,
// one YAML file per object, written under a temporary name and renamed when
// complete. Objects owned by a controller (pods of a ReplicaSet, ...) are not
// written: their controller recreates them.
func (Backup) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	c, err := clients(ctx, req)
	if err != nil {
		return cty.NilVal, err
	}
	dir := req.Args.String("dir")
	if _, err := os.Stat(dir); err == nil {
		return cty.NilVal, fmt.Errorf("%s exists: a backup goes into a new directory", dir)
	}
	tmp := dir + ".partial"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return cty.NilVal, err
	}
	lists, err := discovery.ServerPreferredResources(c.Discovery)
	if err != nil && len(lists) == 0 {
		return cty.NilVal, fmt.Errorf("discovering API resources: %w", err)
	}
	excluded := map[string]bool{}
	for _, k := range req.Args.Strings("exclude_kinds") {
		excluded[k] = true
	}
	if !req.Args.Bool("include_secrets") {
		excluded["Secret"] = true
	}
	nss := map[string]bool{}
	for _, n := range req.Args.Strings("namespaces") {
		nss[n] = true
	}
	idx := Index{Created: time.Now().UTC(), Counts: map[string]int{}}
	if v, err := c.Discovery.ServerVersion(); err == nil {
		idx.Server = v.GitVersion
	}
	type res struct {
		gvr schema.GroupVersionResource
		gvk schema.GroupVersionKind
		nsd bool
	}
	var all []res
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			// Only what can be listed, read and created again: a backup is for restoring.
			if strings.Contains(r.Name, "/") || !hasVerb(r.Verbs, "list") || !hasVerb(r.Verbs, "get") || !hasVerb(r.Verbs, "create") || excluded[r.Kind] {
				continue
			}
			if !r.Namespaced && (!req.Args.Bool("cluster_scoped") || r.Kind == "Namespace" && len(nss) > 0) {
				continue
			}
			all = append(all, res{gv.WithResource(r.Name), gv.WithKind(r.Kind), r.Namespaced})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].gvr.String() < all[j].gvr.String() })
	for _, r := range all {
		var cont string
		for {
			l, err := c.Dynamic.Resource(r.gvr).List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) || apierrors.IsForbidden(err) {
				break
			}
			if err != nil {
				return cty.NilVal, fmt.Errorf("listing %s: %w", r.gvr, err)
			}
			for i := range l.Items {
				u := &l.Items[i]
				if r.nsd && len(nss) > 0 && !nss[u.GetNamespace()] {
					continue
				}
				if metav1.GetControllerOf(u) != nil {
					continue
				}
				strip(u)
				u.SetAPIVersion(r.gvk.GroupVersion().String())
				u.SetKind(r.gvk.Kind)
				ns := "_cluster"
				if r.nsd {
					ns = u.GetNamespace()
				}
				b, err := yaml.Marshal(u.Object)
				if err != nil {
					return cty.NilVal, fmt.Errorf("encoding %s %s: %w", r.gvk.Kind, u.GetName(), err)
				}
				p := filepath.Join(tmp, ns, groupDir(r.gvk), u.GetName()+".yaml")
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					return cty.NilVal, err
				}
				if err := os.WriteFile(p, b, 0o600); err != nil {
					return cty.NilVal, err
				}
				idx.Counts[countKey(r.gvk)]++
				idx.Total++
			}
			cont = l.GetContinue()
			if cont == "" {
				break
			}
		}
	}
	b, _ := json.MarshalIndent(idx, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "index.json"), append(b, '\n'), 0o600); err != nil {
		return cty.NilVal, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return cty.NilVal, err
	}
	req.Emit("backup_written", fmt.Sprintf("%d objects of %d kinds written to %s", idx.Total, len(idx.Counts), dir), nil)
	return cty.ObjectVal(map[string]cty.Value{"dir": cty.StringVal(dir), "objects": cty.NumberIntVal(int64(idx.Total))}), nil
}

func hasVerb(vs metav1.Verbs, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Apply implements engine.Kind: the tree is read, ordered (namespaces and
// CRDs first, then other cluster-scoped objects, then namespaced ones),
// server-side dry-run applied as a whole, and only then applied.
func (Restore) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	c, err := clients(ctx, req)
	if err != nil {
		return cty.NilVal, err
	}
	objs, err := ReadTree(req.Args.String("dir"), req.Args.Strings("namespaces"))
	if err != nil {
		return cty.NilVal, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery))
	manager := req.Args.String("field_manager")
	apply := func(u *unstructured.Unstructured, dryRun bool) error {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = c.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = c.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		b, err := json.Marshal(u.Object)
		if err != nil {
			return err
		}
		opts := metav1.PatchOptions{FieldManager: manager, Force: ptrTrue()}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, b, opts)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
		return nil
	}
	// Namespaces must exist for a dry-run of their objects to pass: create
	// the namespaces first (for real), then dry-run everything else.
	var failed []string
	for _, u := range objs {
		if u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition" {
			if err := apply(u, false); err != nil {
				failed = append(failed, err.Error())
			}
		}
	}
	if len(failed) == 0 {
		mapper.Reset()
		for _, u := range objs {
			if u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition" {
				continue
			}
			if err := apply(u, true); err != nil {
				failed = append(failed, err.Error())
			}
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return cty.NilVal, fmt.Errorf("server-side dry-run failed for %d object(s); nothing else was applied:\n  - %s", len(failed), strings.Join(failed, "\n  - "))
	}
	n := 0
	for _, u := range objs {
		if err := apply(u, false); err != nil {
			return cty.NilVal, fmt.Errorf("after %d objects: %w", n, err)
		}
		n++
	}
	req.Emit("restored", fmt.Sprintf("%d objects applied from %s", n, req.Args.String("dir")), nil)
	return cty.ObjectVal(map[string]cty.Value{"objects": cty.NumberIntVal(int64(n))}), nil
}

func ptrTrue() *bool { t := true; return &t }

// ReadTree reads a backup tree in apply order.
func ReadTree(dir string, namespaces []string) ([]*unstructured.Unstructured, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("%s is not a backup_resources tree (no index.json)", dir)
	}
	want := map[string]bool{}
	for _, n := range namespaces {
		want[n] = true
	}
	var objs []*unstructured.Unstructured
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if len(want) > 0 && u.GetNamespace() != "" && !want[u.GetNamespace()] {
			return nil
		}
		if len(want) > 0 && u.GetKind() == "Namespace" && !want[u.GetName()] {
			return nil
		}
		objs = append(objs, u)
		return nil
	})
	if err != nil {
		return nil, err
	}
	rank := func(u *unstructured.Unstructured) int {
		switch {
		case u.GetKind() == "Namespace":
			return 0
		case u.GetKind() == "CustomResourceDefinition":
			return 1
		case u.GetNamespace() == "":
			return 2
		}
		return 3
	}
	sort.SliceStable(objs, func(i, j int) bool {
		ri, rj := rank(objs[i]), rank(objs[j])
		if ri != rj {
			return ri < rj
		}
		return objs[i].GetNamespace()+"/"+objs[i].GetKind()+"/"+objs[i].GetName() < objs[j].GetNamespace()+"/"+objs[j].GetKind()+"/"+objs[j].GetName()
	})
	return objs, nil
}
