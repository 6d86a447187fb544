package layout

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestNodeIP(t *testing.T) {
	for i, want := range map[int]string{0: "127.0.1.1", 1: "127.0.1.2", 253: "127.0.1.254", 254: "127.0.2.1", 600: "127.0.3.93"} {
		if got := NodeIP(i); got != want {
			t.Errorf("NodeIP(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestNodeNames(t *testing.T) {
	nodes := NodeNames(2, 3)
	want := []Node{
		{"cp-1", RoleControlPlane, "127.0.1.1"},
		{"cp-2", RoleControlPlane, "127.0.1.2"},
		{"worker-1", RoleWorker, "127.0.1.3"},
		{"worker-2", RoleWorker, "127.0.1.4"},
		{"worker-3", RoleWorker, "127.0.1.5"},
	}
	if len(nodes) != len(want) {
		t.Fatalf("got %d nodes, want %d", len(nodes), len(want))
	}
	for i := range want {
		if nodes[i] != want[i] {
			t.Errorf("node %d = %+v, want %+v", i, nodes[i], want[i])
		}
	}
	cp, err := Config{Nodes: nodes}.FirstControlPlane()
	if err != nil || cp.Name != "cp-1" {
		t.Errorf("FirstControlPlane = %v, %v", cp, err)
	}
	if _, err := (Config{Nodes: NodeNames(0, 2)}).FirstControlPlane(); err == nil {
		t.Error("FirstControlPlane of a lab without control planes: no error")
	}
}

func TestPaths(t *testing.T) {
	l, err := New("rel")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(l.Dir) {
		t.Fatalf("lab dir %q is not absolute", l.Dir)
	}
	if got, want := l.NodePath("cp-1", "/etc/kubernetes/pki"), filepath.Join(l.Dir, "nodes/cp-1/etc/kubernetes/pki"); got != want {
		t.Errorf("NodePath = %s, want %s", got, want)
	}
	if got, want := l.KubeletStateFile("worker-1"), filepath.Join(l.Dir, "nodes/worker-1/run/kubelet.json"); got != want {
		t.Errorf("KubeletStateFile = %s, want %s", got, want)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "ports.json")
	in := Ports{APIServer: 1, EtcdClient: 2, EtcdPeer: 3, ControllerManager: 4, Scheduler: 5, SSH: map[string]int{"cp-1": 22, "worker-1": 2222}}
	if err := WriteJSON(p, in); err != nil {
		t.Fatal(err)
	}
	var out Ports
	if err := ReadJSON(p, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: %+v != %+v", out, in)
	}
}
