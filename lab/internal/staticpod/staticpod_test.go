package staticpod

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func params() Params {
	return Params{Version: "v1.27.6", NodeName: "cp-1", NodeIP: "127.0.1.1", APIPort: 1001, EtcdClient: 1002,
		EtcdPeer: 1003, CMPort: 1004, SchedPort: 1005, ServiceCIDR: "10.96.0.0/12", PodCIDR: "10.244.0.0/16"}
}

func TestManifestsRoundTrip(t *testing.T) {
	pods := Manifests(params())
	want := map[string]string{
		Etcd:              "3.5.7-0",
		APIServer:         "v1.27.6",
		ControllerManager: "v1.27.6",
		Scheduler:         "v1.27.6",
	}
	for name, tag := range want {
		b, err := Marshal(pods[name])
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Name != name || p.Namespace != "kube-system" || p.Labels["component"] != name || p.Labels["tier"] != "control-plane" {
			t.Errorf("%s: metadata %+v", name, p.ObjectMeta)
		}
		got, err := ImageVersion(p)
		if err != nil || got != tag {
			t.Errorf("%s: ImageVersion = %q, %v; want %q", name, got, err, tag)
		}
		if !p.Spec.HostNetwork || p.Spec.PriorityClassName != "system-node-critical" {
			t.Errorf("%s: not a hostNetwork system-node-critical pod", name)
		}
	}
}

func TestKubeVersion(t *testing.T) {
	p := Manifests(params())[APIServer]
	for img, want := range map[string]string{
		"registry.k8s.io/kube-apiserver:v1.28.0":             "v1.28.0",
		"localhost:5000/kube-apiserver:v1.29.1":              "v1.29.1",
		"registry.k8s.io/kube-apiserver:v1.30.0@sha256:abcd": "v1.30.0",
		"registry.k8s.io/kube-apiserver":                     "",
		"localhost:5000/kube-apiserver":                      "",
		"registry.k8s.io/kube-apiserver:latest":              "",
	} {
		p.Spec.Containers[0].Image = img
		got, err := KubeVersion(p)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("KubeVersion(%s) = %q, %v; want %q", img, got, err, want)
		}
	}
}

func arg(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func TestToCommandMapsPathsThroughVolumes(t *testing.T) {
	root := "/lab/nodes/cp-1"
	pods := Manifests(params())
	c, err := ToCommand(pods[Etcd], root)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subcommand != "etcd" {
		t.Errorf("subcommand %q", c.Subcommand)
	}
	if got, want := arg(c.Args, "--data-dir"), filepath.Join(root, "var/lib/etcd"); got != want {
		t.Errorf("--data-dir = %s, want %s", got, want)
	}
	if got, want := arg(c.Args, "--cert-file"), filepath.Join(root, "etc/kubernetes/pki/etcd/server.crt"); got != want {
		t.Errorf("--cert-file = %s, want %s", got, want)
	}
	if got := arg(c.Args, "--listen-client-urls"); got != "https://127.0.1.1:1002" {
		t.Errorf("URLs must not be mapped: %s", got)
	}

	// The etcd restore procedure points the etcd-data volume elsewhere.
	for i, v := range pods[Etcd].Spec.Volumes {
		if v.Name == "etcd-data" {
			pods[Etcd].Spec.Volumes[i].HostPath.Path = "/var/lib/etcd-from-backup"
		}
	}
	c, err = ToCommand(pods[Etcd], root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := arg(c.Args, "--data-dir"), filepath.Join(root, "var/lib/etcd-from-backup"); got != want {
		t.Errorf("after volume change --data-dir = %s, want %s", got, want)
	}

	c, err = ToCommand(pods[ControllerManager], root)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subcommand != "controller-manager" || !slices.Contains(c.Args, "--kubeconfig="+filepath.Join(root, "etc/kubernetes/controller-manager.conf")) {
		t.Errorf("controller-manager command %+v", c)
	}

	p := pods[Scheduler]
	p.Spec.Containers[0].Command = []string{"nginx"}
	if _, err := ToCommand(p, root); err == nil {
		t.Error("ToCommand of an unknown program: no error")
	}
}

func TestHostPathOf(t *testing.T) {
	p := Manifests(params())[APIServer]
	for in, want := range map[string]string{
		"/etc/kubernetes/pki/ca.crt": "/etc/kubernetes/pki/ca.crt",
		"/etc/kubernetes/pkiX":       "/etc/kubernetes/pkiX",
		"/etc/ssl/certs/x.pem":       "/etc/ssl/certs/x.pem",
	} {
		if got := HostPathOf(p, in); got != want {
			t.Errorf("HostPathOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestEtcdImageTag(t *testing.T) {
	for v, want := range map[string]string{"v1.27.6": "3.5.7-0", "v1.28.0": "3.5.9-0", "v1.40.0": "3.6.6-0", "bad": "3.5.9-0"} {
		if got := EtcdImageTag(v); got != want {
			t.Errorf("EtcdImageTag(%s) = %s, want %s", v, got, want)
		}
	}
}

func TestHashChangesWithContent(t *testing.T) {
	if Hash([]byte("a")) == Hash([]byte("b")) || Hash([]byte("a")) != Hash([]byte("a")) {
		t.Error("Hash is not a content hash")
	}
}
