package scenario

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// decodeStrict checks that every object is a valid typed object, so that a
// typo in an embedded scenario fails here and not in a lab.
func decodeStrict(t *testing.T, name string) {
	t.Helper()
	objs, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	for _, o := range objs {
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := codecs.UniversalDeserializer().Decode(b, nil, nil); err != nil {
			t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

func count(t *testing.T, name string) map[string]int {
	t.Helper()
	objs, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	return kinds
}

func TestEmbeddedScenarios(t *testing.T) {
	decodeStrict(t, Default)
	decodeStrict(t, FieldCases)
	d := count(t, Default)
	if d["Deployment"] < 2 || d["PodDisruptionBudget"] < 2 || d["DaemonSet"] < 1 || d["StatefulSet"] < 1 {
		t.Errorf("default scenario lacks workloads: %v", d)
	}
	f := count(t, FieldCases)
	if f["Pod"] < 5 || f["PodDisruptionBudget"] != d["PodDisruptionBudget"]+1 {
		t.Errorf("field-cases scenario: %v", f)
	}
	if objs, err := Load(None); err != nil || len(objs) != 0 {
		t.Errorf("none: %v %v", objs, err)
	}
}

func TestLoadFileAndDir(t *testing.T) {
	dir := t.TempDir()
	doc := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: a\n"
	if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ignored.txt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "x.yaml")} {
		objs, err := Load(p)
		if err != nil || len(objs) != 2 || objs[1].GetName() != "b" {
			t.Errorf("Load(%s) = %d objects, %v", p, len(objs), err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := Decode([]byte("kind: Pod\n"), "bad"); err == nil {
		t.Error("object without apiVersion/name: no error")
	}
}

func TestParseOwnerRef(t *testing.T) {
	gk, name, err := ParseOwnerRef("ReplicaSet.apps/web-1")
	if err != nil || gk.Kind != "ReplicaSet" || gk.Group != "apps" || name != "web-1" {
		t.Errorf("got %v %s %v", gk, name, err)
	}
	gk, name, err = ParseOwnerRef("ConfigMap/owner")
	if err != nil || gk.Kind != "ConfigMap" || gk.Group != "" || name != "owner" {
		t.Errorf("got %v %s %v", gk, name, err)
	}
	for _, bad := range []string{"", "ConfigMap", "/x", "ConfigMap/", "a/b/c"} {
		if _, _, err := ParseOwnerRef(bad); err == nil {
			t.Errorf("ParseOwnerRef(%q): no error", bad)
		}
	}
}
