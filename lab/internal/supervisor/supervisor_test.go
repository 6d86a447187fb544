package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/lab/internal/components"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

func TestDesiredProcs(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "etc/kubernetes/manifests")
	pods := staticpod.Manifests(staticpod.Params{Version: "v1.27.6", NodeName: "cp-1", NodeIP: "127.0.1.1",
		APIPort: 1, EtcdClient: 2, EtcdPeer: 3, CMPort: 4, SchedPort: 5, ServiceCIDR: "10.96.0.0/12", PodCIDR: "10.244.0.0/16"})
	if err := staticpod.Write(dir, pods); err != nil {
		t.Fatal(err)
	}
	// Editors' and kubeadm's leftovers are not manifests.
	for name, data := range map[string]string{".kube-apiserver.yaml.swp": "x", "README": "x", "bad.yaml": "kind: ["} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, bad, err := DesiredProcs(dir, root)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 4 || len(bad) != 1 || bad["bad.yaml"] == nil {
		t.Fatalf("want %d procs, bad %v", len(want), bad)
	}
	api := want[staticpod.APIServer]
	if api.Args[0] != "apiserver" || !slices.Contains(api.Env, components.ReportedVersionEnv+"=v1.27.6") || api.Version != "v1.27.6" {
		t.Errorf("apiserver spec %+v", api)
	}
	// hostPath volumes of type DirectoryOrCreate / FileOrCreate exist now.
	for _, p := range []string{"var/lib/etcd", "etc/kubernetes/pki/etcd", "etc/kubernetes/scheduler.conf"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("host path %s not prepared: %v", p, err)
		}
	}
	// A new image tag is a new hash (restart) and a new reported version.
	b, _ := os.ReadFile(filepath.Join(dir, "kube-apiserver.yaml"))
	nb := strings.ReplaceAll(string(b), "kube-apiserver:v1.27.6", "kube-apiserver:v1.28.0")
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver.yaml"), []byte(nb), 0o600); err != nil {
		t.Fatal(err)
	}
	want2, _, _ := DesiredProcs(dir, root)
	if want2[staticpod.APIServer].Hash == api.Hash || !slices.Contains(want2[staticpod.APIServer].Env, components.ReportedVersionEnv+"=v1.28.0") {
		t.Errorf("after upgrade: %+v", want2[staticpod.APIServer])
	}
	if want2[staticpod.Etcd].Hash != want[staticpod.Etcd].Hash {
		t.Error("etcd hash changed though its manifest did not")
	}
	// Moving a manifest away stops its pod.
	if err := os.Rename(filepath.Join(dir, "kube-apiserver.yaml"), filepath.Join(root, "kube-apiserver.yaml")); err != nil {
		t.Fatal(err)
	}
	want3, _, _ := DesiredProcs(dir, root)
	if _, ok := want3[staticpod.APIServer]; ok || len(want3) != 3 {
		t.Errorf("after moving the manifest away: %v", want3)
	}
	if none, _, err := DesiredProcs(filepath.Join(root, "missing"), root); err != nil || len(none) != 0 {
		t.Errorf("missing dir: %v %v", none, err)
	}
}

func TestSortComponents(t *testing.T) {
	names := []string{"zz", "kube-scheduler", "etcd", "aa", "kube-apiserver", "kube-controller-manager"}
	sortComponents(names)
	want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "aa", "zz"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted %v, want %v", names, want)
	}
}
