// Package layout describes a lab directory: where every file lives, how
// nodes are named and addressed, and the lab.json and ports.json records
// that `up` writes and every other command reads.
//
// It only computes paths and reads/writes small JSON records; it starts
// nothing and talks to no cluster.
package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Roles of a node.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Node is one simulated host.
type Node struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// IP is the node's own loopback address (127.0.1.N); it is the Node's
	// InternalIP and, in part 2, where its sshd listens.
	IP string `json:"ip"`
}

// Ports are the TCP ports the lab picked for its processes. All listen on
// the first control plane's IP unless noted.
type Ports struct {
	APIServer         int `json:"apiserver"`
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	ControllerManager int `json:"controllerManager"` // on 127.0.0.1, like kubeadm
	Scheduler         int `json:"scheduler"`         // on 127.0.0.1, like kubeadm
	// SSH is each node's sshd port on the node's own IP (22 when it was
	// free when the lab was created or last started).
	SSH map[string]int `json:"ssh,omitempty"`
}

// Config is what `up` decided when it created the lab (lab.json). The
// cluster's current version is not here: it lives in the static pod
// manifests and kubelet.json files, which change over the lab's life.
type Config struct {
	InitialVersion string `json:"initialVersion"`
	Scenario       string `json:"scenario"`
	Nodes          []Node `json:"nodes"`
	ServiceCIDR    string `json:"serviceCIDR"`
	PodCIDR        string `json:"podCIDR"`
}

// Lab is a lab directory.
type Lab struct{ Dir string }

// New returns the Lab at dir, made absolute so that paths survive a chdir
// and can be handed to child processes.
func New(dir string) (Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Lab{}, fmt.Errorf("lab dir %q: %w", dir, err)
	}
	return Lab{Dir: abs}, nil
}

func (l Lab) path(p ...string) string { return filepath.Join(append([]string{l.Dir}, p...)...) }

// ConfigFile is lab.json.
func (l Lab) ConfigFile() string { return l.path("lab.json") }

// PortsFile is ports.json.
func (l Lab) PortsFile() string { return l.path("ports.json") }

// Kubeconfig is the admin kubeconfig for users and tests.
func (l Lab) Kubeconfig() string { return l.path("kubeconfig") }

// KubeletSimKubeconfig is the credential of the simulated kubelets.
func (l Lab) KubeletSimKubeconfig() string { return l.path("run", "kubelet-sim.conf") }

// PIDFile holds the supervisor's pid; it is also its process group id.
func (l Lab) PIDFile() string { return l.path("supervisor.pid") }

// LogDir holds one log file per process.
func (l Lab) LogDir() string { return l.path("logs") }

// LogFile is the log of one process, e.g. "kube-apiserver".
func (l Lab) LogFile(name string) string { return l.path("logs", name+".log") }

// RunDir holds the supervisor's runtime records.
func (l Lab) RunDir() string { return l.path("run") }

// SeededFile exists once the scenario has been applied.
func (l Lab) SeededFile() string { return l.path("run", "seeded") }

// SeedErrorFile holds the last seeding error, if any.
func (l Lab) SeedErrorFile() string { return l.path("run", "seed-error") }

// NodeDir is the root of a node's simulated filesystem.
func (l Lab) NodeDir(node string) string { return l.path("nodes", node) }

// NodePath maps an absolute path on the node (e.g. /etc/kubernetes) to
// the lab directory.
func (l Lab) NodePath(node, p string) string {
	return filepath.Join(l.NodeDir(node), filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// SSHDir holds the lab's SSH keys and per-node sshd files.
func (l Lab) SSHDir() string { return l.path("ssh") }

// ClientKey is the private key that logs in to every node as root.
func (l Lab) ClientKey() string { return l.path("ssh", "id_ed25519") }

// AuthorizedKeys is the nodes' authorized_keys (the client key).
func (l Lab) AuthorizedKeys() string { return l.path("ssh", "authorized_keys") }

// NodeSSHDir holds a node's sshd_config and host key.
func (l Lab) NodeSSHDir(node string) string { return l.path("ssh", "nodes", node) }

// SSHConfig is the ssh_config with a Host entry per node.
func (l Lab) SSHConfig() string { return l.path("ssh_config") }

// KnownHosts holds every node's host key.
func (l Lab) KnownHosts() string { return l.path("known_hosts") }

// TFVars is the variables file for runbook's example plans.
func (l Lab) TFVars() string { return l.path("runbook.tfvars") }

// FaultDir holds a node's active faults, one file per fault.
func (l Lab) FaultDir(node string) string { return l.path("faults", node) }

// FaultFile is the marker of one fault on a node.
func (l Lab) FaultFile(node, fault string) string { return l.path("faults", node, fault) }

// HasFault tells whether a fault is set on a node.
func (l Lab) HasFault(node, fault string) bool {
	_, err := os.Stat(l.FaultFile(node, fault))
	return err == nil
}

// ManifestDir is the node's static pod directory.
func (l Lab) ManifestDir(node string) string {
	return l.NodePath(node, "/etc/kubernetes/manifests")
}

// PKIDir is the node's /etc/kubernetes/pki.
func (l Lab) PKIDir(node string) string { return l.NodePath(node, "/etc/kubernetes/pki") }

// KubeletStateFile is the node's run/kubelet.json (see package nodestate).
func (l Lab) KubeletStateFile(node string) string { return l.NodePath(node, "/run/kubelet.json") }

// NodeNames lays out cp-1..cp-C then worker-1..worker-W.
func NodeNames(controlPlanes, workers int) []Node {
	var nodes []Node
	for i := 1; i <= controlPlanes; i++ {
		nodes = append(nodes, Node{Name: fmt.Sprintf("cp-%d", i), Role: RoleControlPlane})
	}
	for i := 1; i <= workers; i++ {
		nodes = append(nodes, Node{Name: fmt.Sprintf("worker-%d", i), Role: RoleWorker})
	}
	for i := range nodes {
		nodes[i].IP = NodeIP(i)
	}
	return nodes
}

// NodeIP is the loopback address of the i-th node (0-based): 127.0.1.1,
// 127.0.1.2, ... 127.0.1.254, then 127.0.2.1 and so on. Linux routes all
// of 127.0.0.0/8 to lo, so no interface set-up is needed.
func NodeIP(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
}

// FirstControlPlane returns the node that runs the real control plane.
func (c Config) FirstControlPlane() (Node, error) {
	for _, n := range c.Nodes {
		if n.Role == RoleControlPlane {
			return n, nil
		}
	}
	return Node{}, errors.New("lab has no control-plane node")
}

// WriteJSON writes v as indented JSON through a temp file and rename, so
// readers never see a half-written file.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// WriteFileAtomic writes data to path via a temp file in the same dir.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadJSON decodes path into v.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// ReadConfig reads lab.json.
func (l Lab) ReadConfig() (Config, error) {
	var c Config
	if err := ReadJSON(l.ConfigFile(), &c); err != nil {
		return c, fmt.Errorf("read lab config: %w", err)
	}
	return c, nil
}

// ReadPorts reads ports.json.
func (l Lab) ReadPorts() (Ports, error) {
	var p Ports
	if err := ReadJSON(l.PortsFile(), &p); err != nil {
		return p, fmt.Errorf("read lab ports: %w", err)
	}
	return p, nil
}
