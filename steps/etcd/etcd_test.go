package etcd

import (
	"strings"
	"testing"
)

const kubeadmEtcd = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
spec:
  containers:
  - command:
    - etcd
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=https://127.0.0.1:2379
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /var/lib/etcd-backup-tools
      name: tools
  volumes:
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
`

func TestSwitchDataDir(t *testing.T) {
	if got := CurrentDataDir(kubeadmEtcd); got != "/var/lib/etcd" {
		t.Fatalf("CurrentDataDir = %q", got)
	}
	out := SwitchDataDir(kubeadmEtcd, "/var/lib/etcd", "/var/lib/etcd-restored")
	for _, want := range []string{"--data-dir=/var/lib/etcd-restored\n", "mountPath: /var/lib/etcd-restored\n", "path: /var/lib/etcd-restored\n", "mountPath: /var/lib/etcd-backup-tools\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("switched manifest lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "/var/lib/etcd-restored") != 3 {
		t.Errorf("replaced %d places, want 3", strings.Count(out, "/var/lib/etcd-restored"))
	}
	// Switching back is exact: the longer path is not a prefix match.
	if back := SwitchDataDir(out, "/var/lib/etcd-restored", "/var/lib/etcd"); back != kubeadmEtcd {
		t.Errorf("round trip differs:\n%s", back)
	}
}
