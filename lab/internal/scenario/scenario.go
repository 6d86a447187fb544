// Package scenario loads the lab's workload scenarios (YAML manifests,
// with embedded defaults) and creates their objects in a cluster.
//
// Creation is create-if-absent, never update: a scenario seeds a fresh
// lab once; it does not reconcile. One lab-specific annotation is
// understood: lab.runbook.dev/owner: "<Kind>/<name>" on an object adds a
// non-controller ownerReference to that object in the same namespace
// (with its real uid, which a static file cannot know); Kind may carry a
// group, kubectl style: "ReplicaSet.apps/name".
package scenario

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// OwnerAnnotation asks Apply to add a non-controller ownerReference.
const OwnerAnnotation = "lab.runbook.dev/owner"

// Built-in scenario names.
const (
	Default    = "default"
	FieldCases = "field-cases"
	None       = "none"
)

//go:embed scenarios
var embedded embed.FS

// Load returns the objects of a scenario: "default", "field-cases"
// (default plus the drain edge cases), "none", or a path to a YAML file
// or a directory of *.yaml files.
func Load(name string) ([]*unstructured.Unstructured, error) {
	switch name {
	case None:
		return nil, nil
	case Default:
		return loadEmbedded(Default)
	case FieldCases:
		objs, err := loadEmbedded(Default)
		if err != nil {
			return nil, err
		}
		more, err := loadEmbedded(FieldCases)
		if err != nil {
			return nil, err
		}
		return append(objs, more...), nil
	}
	st, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("scenario %q is neither %s, %s, %s nor a readable file: %w", name, Default, FieldCases, None, err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read scenario: %w", err)
		}
		return Decode(b, name)
	}
	return loadDir(os.DirFS(name), ".", name)
}

func loadEmbedded(name string) ([]*unstructured.Unstructured, error) {
	return loadDir(embedded, path.Join("scenarios", name), name)
}

func loadDir(fsys fs.FS, dir, label string) ([]*unstructured.Unstructured, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read scenario %s: %w", label, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, n := range names {
		b, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("read scenario %s: %w", label, err)
		}
		objs, err := Decode(b, filepath.Join(label, n))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Decode splits multi-document YAML (or JSON) into objects; source names
// the input in errors.
func Decode(data []byte, source string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d: apiVersion, kind and metadata.name are required", source, i)
		}
		out = append(out, u)
	}
}

// kindRank orders creation so that what others refer to exists first.
func kindRank(kind string) int {
	switch kind {
	case "Namespace":
		return 0
	case "PriorityClass", "ServiceAccount", "ConfigMap", "Secret", "ClusterRole", "Role":
		return 1
	case "ClusterRoleBinding", "RoleBinding", "Service", "PodDisruptionBudget":
		return 2
	}
	return 3
}

// ParseOwnerRef parses "<Kind>[.<group>]/<name>", e.g. "ConfigMap/x" or
// "ReplicaSet.apps/y".
func ParseOwnerRef(ref string) (schema.GroupKind, string, error) {
	kg, name, ok := strings.Cut(ref, "/")
	if !ok || kg == "" || name == "" || strings.Contains(name, "/") {
		return schema.GroupKind{}, "", fmt.Errorf("annotation %s=%q is not <Kind>[.<group>]/<name>", OwnerAnnotation, ref)
	}
	kind, group, _ := strings.Cut(kg, ".")
	return schema.GroupKind{Group: group, Kind: kind}, name, nil
}

// Apply creates every object that does not exist yet.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		return fmt.Errorf("discover API resources: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	sorted := append([]*unstructured.Unstructured{}, objs...)
	sort.SliceStable(sorted, func(i, j int) bool { return kindRank(sorted[i].GetKind()) < kindRank(sorted[j].GetKind()) })
	for _, o := range sorted {
		if err := applyOne(ctx, mapper, dyn, o.DeepCopy()); err != nil {
			return err
		}
	}
	return nil
}

func resourceFor(mapper meta.RESTMapper, dyn dynamic.Interface, gvk schema.GroupVersionKind, ns string) (dynamic.ResourceInterface, error) {
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return dyn.Resource(m.Resource), nil
}

func applyOne(ctx context.Context, mapper meta.RESTMapper, dyn dynamic.Interface, o *unstructured.Unstructured) error {
	ns := o.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	ri, err := resourceFor(mapper, dyn, o.GroupVersionKind(), ns)
	if err != nil {
		return err
	}
	// Look first: some creates fail on a second try for reasons other than
	// AlreadyExists (a Service's fixed clusterIP is "already allocated").
	if _, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get %s %s/%s: %w", o.GetKind(), ns, o.GetName(), err)
	}
	if ref := o.GetAnnotations()[OwnerAnnotation]; ref != "" {
		if err := setOwner(ctx, mapper, dyn, o, ns, ref); err != nil {
			return err
		}
	}
	// A pod in a namespace created a moment ago is refused until the
	// service account controller has made its "default" ServiceAccount.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = ri.Create(ctx, o, metav1.CreateOptions{FieldManager: "runbook-lab"})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "service account") || time.Now().After(deadline) {
			return fmt.Errorf("create %s %s/%s: %w", o.GetKind(), ns, o.GetName(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func setOwner(ctx context.Context, mapper meta.RESTMapper, dyn dynamic.Interface, o *unstructured.Unstructured, ns, ref string) error {
	gk, name, err := ParseOwnerRef(ref)
	if err != nil {
		return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
	}
	m, err := mapper.RESTMapping(gk)
	if err != nil {
		return fmt.Errorf("%s %s: owner %s: %w", o.GetKind(), o.GetName(), ref, err)
	}
	owner, err := dyn.Resource(m.Resource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s %s: get owner %s: %w", o.GetKind(), o.GetName(), ref, err)
	}
	o.SetOwnerReferences(append(o.GetOwnerReferences(), metav1.OwnerReference{
		APIVersion: m.GroupVersionKind.GroupVersion().String(),
		Kind:       m.GroupVersionKind.Kind,
		Name:       owner.GetName(),
		UID:        owner.GetUID(),
	}))
	return nil
}
