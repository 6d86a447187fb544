package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

func TestNormalizeVersion(t *testing.T) {
	for in, want := range map[string]string{"1.27.6": "v1.27.6", "v1.28.0": "v1.28.0", " 1.29.1 ": "v1.29.1"} {
		if got, err := NormalizeVersion(in); err != nil || got != want {
			t.Errorf("NormalizeVersion(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "1.27", "2.0.0", "latest"} {
		if _, err := NormalizeVersion(bad); err == nil {
			t.Errorf("NormalizeVersion(%q): no error", bad)
		}
	}
}

func TestSetManifestVersions(t *testing.T) {
	dir := t.TempDir()
	pods := staticpod.Manifests(staticpod.Params{Version: "v1.27.6", NodeName: "cp-1", NodeIP: "127.0.1.1",
		APIPort: 1, EtcdClient: 2, EtcdPeer: 3, CMPort: 4, SchedPort: 5, ServiceCIDR: "10.96.0.0/12", PodCIDR: "10.244.0.0/16"})
	if err := staticpod.Write(dir, pods); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "kube-apiserver.yaml"))
	if err := SetManifestVersions(dir, "v1.28.0"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"kube-apiserver": "v1.28.0", "kube-controller-manager": "v1.28.0", "kube-scheduler": "v1.28.0", "etcd": "3.5.9-0"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := staticpod.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := staticpod.ImageVersion(p); v != want {
			t.Errorf("%s at %s, want %s", name, v, want)
		}
	}
	after, _ := os.ReadFile(filepath.Join(dir, "kube-apiserver.yaml"))
	if strings.Replace(string(before), ":v1.27.6", ":v1.28.0", 1) != string(after) {
		t.Error("rewrite touched more than the image tag")
	}
}

func TestCreateLab(t *testing.T) {
	l, err := layout.New(filepath.Join(t.TempDir(), "lab"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := createLab(l, createOptions{ControlPlanes: 2, Workers: 1, Version: "v1.27.6", Scenario: "default"}, timeNow())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes) != 3 {
		t.Fatalf("nodes %v", cfg.Nodes)
	}
	for _, p := range []string{
		l.Kubeconfig(), l.PortsFile(), l.ConfigFile(), l.KubeletSimKubeconfig(),
		filepath.Join(l.PKIDir("cp-1"), "etcd/ca.crt"), filepath.Join(l.PKIDir("cp-2"), "sa.key"),
		filepath.Join(l.PKIDir("worker-1"), "ca.crt"),
		filepath.Join(l.ManifestDir("cp-2"), "kube-apiserver.yaml"), l.KubeletStateFile("worker-1"),
	} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("missing %s", p)
		}
	}
	if _, err := os.Stat(filepath.Join(l.ManifestDir("worker-1"), "kube-apiserver.yaml")); err == nil {
		t.Error("a worker has control-plane manifests")
	}
	ports, err := l.ReadPorts()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range []int{ports.APIServer, ports.EtcdClient, ports.EtcdPeer, ports.ControllerManager, ports.Scheduler} {
		if p == 0 || seen[p] {
			t.Errorf("ports not distinct: %+v", ports)
		}
		seen[p] = true
	}
	if _, err := createLab(l, createOptions{ControlPlanes: 1, Version: "v1.27.6", Scenario: "default"}, timeNow()); err == nil {
		t.Error("creating a lab over an existing one: no error")
	}
}

func timeNow() time.Time { return time.Now() }

// A stale process group id (the pid file of a lab whose supervisor died)
// can name another lab's supervisor once ids are reused: down may signal
// only processes whose command line names its own lab directory.
func TestIsLabCommand(t *testing.T) {
	l := layout.Lab{Dir: "/tmp/lab1"}
	bin := "/work/bin/runbook-lab"
	tests := []struct {
		name           string
		args           []string
		supervisorOnly bool
		want           bool
	}{
		{"own supervisor", []string{bin, "supervise", "--dir", "/tmp/lab1"}, true, true},
		{"own supervisor as a child", []string{bin, "supervise", "--dir", "/tmp/lab1"}, false, true},
		{"own apiserver", []string{bin, "apiserver", "--client-ca-file=/tmp/lab1/pki/ca.crt"}, false, true},
		{"own kubelets", []string{bin, "kubelets", "--dir", "/tmp/lab1"}, false, true},
		{"own etcd by flag value", []string{bin, "etcd", "--data-dir=/tmp/lab1"}, false, true},
		{"another lab's supervisor", []string{bin, "supervise", "--dir", "/tmp/lab2"}, false, false},
		{"another lab whose dir shares a prefix", []string{bin, "apiserver", "--cert-dir=/tmp/lab10/pki"}, false, false},
		{"another lab's supervisor, supervisor only", []string{bin, "supervise", "--dir", "/tmp/lab2"}, true, false},
		{"not runbook-lab", []string{"/usr/bin/sleep", "/tmp/lab1/x"}, false, false},
		{"own node sshd", []string{"sshd: /usr/sbin/sshd -D -e -f /tmp/lab1/ssh/nodes/w1/sshd_config [listener]"}, false, true},
		{"empty", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isLabCommand(tt.args, l, tt.supervisorOnly); got != tt.want {
				t.Errorf("isLabCommand(%q) = %v, want %v", tt.args, got, tt.want)
			}
		})
	}
}
