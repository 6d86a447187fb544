package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodestate"
	"github.com/runbookhq/runbook/lab/internal/pki"
	"github.com/runbookhq/runbook/lab/internal/scenario"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

// createOptions are up's choices for a new lab.
type createOptions struct {
	ControlPlanes int
	Workers       int
	Version       string
	Scenario      string
}

// NormalizeVersion turns "1.27.6" or "v1.27.6" into "v1.27.6".
func NormalizeVersion(v string) (string, error) {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	pv, err := utilversion.ParseSemantic(v)
	if err != nil {
		return "", fmt.Errorf("version %q: %w", v, err)
	}
	if pv.Major() != 1 {
		return "", fmt.Errorf("version %q: not a Kubernetes 1.x version", v)
	}
	return v, nil
}

// pickPorts reserves free ports by listening on them all at once (so none
// repeats) and then closing them.
func pickPorts(cpIP string) (layout.Ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	pick := func(host string) (int, error) {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("find a free port on %s: %w", host, err)
		}
		ls = append(ls, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var p layout.Ports
	var err error
	for _, f := range []struct {
		dst  *int
		host string
	}{{&p.APIServer, cpIP}, {&p.EtcdClient, cpIP}, {&p.EtcdPeer, cpIP}, {&p.ControllerManager, "127.0.0.1"}, {&p.Scheduler, "127.0.0.1"}} {
		if *f.dst, err = pick(f.host); err != nil {
			return p, err
		}
	}
	return p, nil
}

// checkPortsFree tells whether a stopped lab can start again on its
// recorded ports.
func checkPortsFree(cpIP string, p layout.Ports) error {
	for _, f := range []struct {
		name string
		host string
		port int
	}{{"apiserver", cpIP, p.APIServer}, {"etcd client", cpIP, p.EtcdClient}, {"etcd peer", cpIP, p.EtcdPeer},
		{"controller-manager", "127.0.0.1", p.ControllerManager}, {"scheduler", "127.0.0.1", p.Scheduler}} {
		l, err := net.Listen("tcp", net.JoinHostPort(f.host, fmt.Sprint(f.port)))
		if err != nil {
			return fmt.Errorf("port %d recorded for the %s is in use: %w", f.port, f.name, err)
		}
		l.Close()
	}
	return nil
}

// createLab lays out a new lab: config, ports, PKI, kubeconfigs, static
// pod manifests and kubelet state for every node. It is what `kubeadm
// init`/`join` and installing the packages would have left on the hosts.
func createLab(l layout.Lab, o createOptions, now time.Time) (layout.Config, error) {
	if entries, err := os.ReadDir(l.Dir); err == nil && len(entries) > 0 {
		return layout.Config{}, fmt.Errorf("%s exists, is not empty and holds no lab.json; choose another --dir", l.Dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return layout.Config{}, fmt.Errorf("read %s: %w", l.Dir, err)
	}
	if o.ControlPlanes < 1 {
		return layout.Config{}, errors.New("--control-planes must be at least 1")
	}
	if o.Workers < 0 || o.ControlPlanes+o.Workers > 254*8 {
		return layout.Config{}, errors.New("--workers out of range")
	}
	scen := o.Scenario
	switch scen {
	case scenario.Default, scenario.FieldCases, scenario.None:
	default:
		abs, err := filepath.Abs(scen)
		if err != nil {
			return layout.Config{}, fmt.Errorf("scenario %q: %w", scen, err)
		}
		scen = abs
	}
	if _, err := scenario.Load(scen); err != nil {
		return layout.Config{}, err
	}
	cfg := layout.Config{
		InitialVersion: o.Version,
		Scenario:       scen,
		Nodes:          layout.NodeNames(o.ControlPlanes, o.Workers),
		ServiceCIDR:    "10.96.0.0/12",
		PodCIDR:        "10.244.0.0/16",
	}
	cp := cfg.Nodes[0]
	ports, err := pickPorts(cp.IP)
	if err != nil {
		return cfg, err
	}
	for _, d := range []string{l.Dir, l.LogDir(), l.RunDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return cfg, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := layout.WriteJSON(l.PortsFile(), ports); err != nil {
		return cfg, err
	}
	server := fmt.Sprintf("https://%s:%d", cp.IP, ports.APIServer)
	cpPKI := l.PKIDir(cp.Name)
	if err := pki.Generate(cpPKI, pki.Spec{NodeName: cp.Name, NodeIP: cp.IP, APIServiceIP: "10.96.0.1"}, now); err != nil {
		return cfg, fmt.Errorf("pki: %w", err)
	}
	etcK8s := l.NodePath(cp.Name, "/etc/kubernetes")
	for _, kc := range []struct {
		file, user string
		orgs       []string
	}{
		{"admin.conf", "kubernetes-admin", []string{"system:masters"}},
		{"controller-manager.conf", "system:kube-controller-manager", nil},
		{"scheduler.conf", "system:kube-scheduler", nil},
	} {
		if err := pki.WriteKubeconfig(filepath.Join(etcK8s, kc.file), cpPKI, server, kc.user, kc.orgs, now); err != nil {
			return cfg, err
		}
	}
	if err := copyFile(filepath.Join(etcK8s, "admin.conf"), l.Kubeconfig(), 0o600); err != nil {
		return cfg, err
	}
	if err := pki.WriteKubeconfig(l.KubeletSimKubeconfig(), cpPKI, server, "runbook-lab:kubelet-sim", []string{"system:masters"}, now); err != nil {
		return cfg, err
	}
	for _, n := range cfg.Nodes {
		if n.Role == layout.RoleControlPlane && n.Name != cp.Name {
			// kubeadm join --control-plane copies the shared certificates.
			if err := copyTree(cpPKI, l.PKIDir(n.Name)); err != nil {
				return cfg, err
			}
			for _, f := range []string{"admin.conf", "controller-manager.conf", "scheduler.conf"} {
				if err := copyFile(filepath.Join(etcK8s, f), l.NodePath(n.Name, "/etc/kubernetes/"+f), 0o600); err != nil {
					return cfg, err
				}
			}
		}
		if n.Role == layout.RoleWorker {
			if err := copyFile(filepath.Join(cpPKI, "ca.crt"), filepath.Join(l.PKIDir(n.Name), "ca.crt"), 0o644); err != nil {
				return cfg, err
			}
		}
		if n.Role == layout.RoleControlPlane {
			pods := staticpod.Manifests(staticpod.Params{
				Version: o.Version, NodeName: n.Name, NodeIP: n.IP,
				APIPort: ports.APIServer, EtcdClient: ports.EtcdClient, EtcdPeer: ports.EtcdPeer,
				CMPort: ports.ControllerManager, SchedPort: ports.Scheduler,
				ServiceCIDR: cfg.ServiceCIDR, PodCIDR: cfg.PodCIDR,
			})
			if err := staticpod.Write(l.ManifestDir(n.Name), pods); err != nil {
				return cfg, err
			}
		}
		if err := nodestate.Write(l.KubeletStateFile(n.Name), nodestate.Kubelet{
			Version: o.Version, State: nodestate.Running, RestartedAt: now.UTC().Format(time.RFC3339),
		}); err != nil {
			return cfg, err
		}
	}
	// lab.json last: its presence marks a complete lab.
	if err := layout.WriteJSON(l.ConfigFile(), cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func copyFile(src, dst string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return layout.WriteFileAtomic(dst, b, perm)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(p, filepath.Join(dst, rel), info.Mode().Perm())
	})
}
