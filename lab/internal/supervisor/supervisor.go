// Package supervisor is the lab's long-running process: what systemd and
// the kubelet's static-pod runner are on a real control-plane node. It
// runs the real control-plane processes described by the first control
// plane's static pod manifests (restarting one when its manifest changes,
// stopping it when its manifest goes away), runs the simulated kubelets as
// a child, and once the apiserver is up uploads the kubeadm-like cluster
// objects and seeds the scenario.
//
// It does not simulate nodes itself (package kubelet does) and it never
// signals processes it did not start.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/runbookhq/runbook/lab/internal/bootstrap"
	"github.com/runbookhq/runbook/lab/internal/components"
	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodeshell"
	"github.com/runbookhq/runbook/lab/internal/nodessh"
	"github.com/runbookhq/runbook/lab/internal/nodetools"
	"github.com/runbookhq/runbook/lab/internal/staticpod"
)

// KubeletsProc is the name of the simulated-kubelets child.
const KubeletsProc = "kubelets"

// ProcessesFile is where the supervisor records its children.
func ProcessesFile(l layout.Lab) string { return filepath.Join(l.RunDir(), "processes.json") }

type supervisor struct {
	lab   layout.Lab
	cfg   layout.Config
	node  layout.Node
	exe   string
	log   *slog.Logger
	procs map[string]*proc
	// sshds are the nodes' sshd processes, keyed by node name.
	sshds map[string]*proc
	// noSSHD says why no sshd runs (sshd not installed), logged once.
	noSSHD error
	// badManifests remembers which broken manifest contents were logged.
	badManifests map[string]bool
}

// Run supervises the lab until ctx is cancelled, then stops every child
// and returns.
func Run(ctx context.Context, lab layout.Lab, log *slog.Logger) error {
	cfg, err := lab.ReadConfig()
	if err != nil {
		return err
	}
	node, err := cfg.FirstControlPlane()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if err := os.MkdirAll(lab.RunDir(), 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	if err := os.WriteFile(lab.PIDFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	s := &supervisor{lab: lab, cfg: cfg, node: node, exe: exe, log: log, procs: map[string]*proc{}, sshds: map[string]*proc{}, badManifests: map[string]bool{}}
	log.Info("supervisor starting", "dir", lab.Dir, "pid", os.Getpid(), "nodes", len(cfg.Nodes))

	// Labs share the node addresses (127.0.1.N): choosing ports (22 when
	// free) and starting the sshds happens under a machine-wide lock, so two
	// labs starting at once do not both take port 22 of the same address.
	unlock, err := lockSSHPorts()
	if err != nil {
		return err
	}
	if err := prepareNodes(lab, cfg, exe); err != nil {
		unlock()
		return err
	}
	if s.noSSHD = nodessh.Available(); s.noSSHD != nil {
		log.Error("nodes get no sshd", "err", s.noSSHD)
	} else if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		// sshd running as root needs its privilege-separation directory,
		// which Debian's service unit creates.
		log.Error("creating /run/sshd", "err", err)
	}

	childCtx, stopChildren := context.WithCancel(context.Background())
	defer stopChildren()
	kubelets := startProc(childCtx, exe, lab.LogFile(KubeletsProc),
		procSpec{Name: KubeletsProc, Args: []string{"kubelets", "--dir", lab.Dir}}, log)

	bootCtx, stopBoot := context.WithCancel(ctx)
	defer stopBoot()
	bootDone := make(chan struct{})
	go func() {
		defer close(bootDone)
		s.bootstrapLoop(bootCtx)
	}()

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		// A lab whose directory was deleted under it (rm -rf, a test's temp
		// dir) stops instead of running on without its files.
		if _, err := os.Stat(lab.ConfigFile()); errors.Is(err, os.ErrNotExist) {
			log.Warn("lab.json is gone; stopping")
			break
		}
		s.syncManifests(childCtx)
		s.syncSSHDs(childCtx)
		if unlock != nil {
			s.waitSSHDsListening(10 * time.Second)
			unlock()
			unlock = nil
		}
		s.writeStatus(kubelets)
		select {
		case <-ctx.Done():
			running = false
		case <-tick.C:
		}
	}
	log.Info("supervisor stopping")
	stopBoot()
	<-bootDone
	kubelets.stop()
	s.stopSSHDs()
	s.stopAll()
	_ = os.Remove(ProcessesFile(lab))
	_ = os.Remove(lab.PIDFile())
	log.Info("supervisor stopped")
	return nil
}

// stopAll stops the static-pod processes, etcd last so that the apiserver
// never runs without its storage.
func (s *supervisor) stopAll() {
	var wg sync.WaitGroup
	for _, n := range s.sortedProcNames() {
		if n != staticpod.Etcd {
			wg.Go(s.procs[n].stop)
			delete(s.procs, n)
		}
	}
	wg.Wait()
	if p, ok := s.procs[staticpod.Etcd]; ok {
		p.stop()
		delete(s.procs, staticpod.Etcd)
	}
}

func (s *supervisor) sortedProcNames() []string {
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	sortComponents(names)
	return names
}

// sortComponents orders etcd, apiserver, controller-manager, scheduler
// first, then anything else by name.
func sortComponents(names []string) {
	rank := func(n string) int {
		if i := slices.Index(staticpod.Components, n); i >= 0 {
			return i
		}
		return len(staticpod.Components)
	}
	sort.SliceStable(names, func(i, j int) bool {
		ri, rj := rank(names[i]), rank(names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
}

// DesiredProcs reads a node's manifest directory and returns what should
// run, keyed by pod name. Unreadable manifests are reported in bad (file
// name -> error) and left out, as a kubelet drops a pod whose file it
// cannot decode.
func DesiredProcs(manifestDir, nodeRoot string) (map[string]procSpec, map[string]error, error) {
	entries, err := os.ReadDir(manifestDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read manifests: %w", err)
	}
	want := map[string]procSpec{}
	bad := map[string]error{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		switch filepath.Ext(name) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		data, err := os.ReadFile(filepath.Join(manifestDir, name))
		if err != nil {
			bad[name] = err
			continue
		}
		pod, err := staticpod.Parse(data)
		if err != nil {
			bad[name] = err
			continue
		}
		cmd, err := staticpod.ToCommand(pod, nodeRoot)
		if err != nil {
			bad[name] = err
			continue
		}
		spec := procSpec{Name: pod.Name, Args: append([]string{cmd.Subcommand}, cmd.Args...), Hash: staticpod.Hash(data)}
		spec.Version, _ = staticpod.ImageVersion(pod)
		if cmd.Subcommand == "apiserver" {
			v, err := staticpod.KubeVersion(pod)
			if err != nil {
				bad[name] = err
				continue
			}
			spec.Env = []string{components.ReportedVersionEnv + "=" + v}
		}
		if err := prepareHostPaths(pod, nodeRoot); err != nil {
			bad[name] = err
			continue
		}
		if _, dup := want[pod.Name]; dup {
			bad[name] = fmt.Errorf("pod %s is defined twice", pod.Name)
			continue
		}
		want[pod.Name] = spec
	}
	return want, bad, nil
}

// prepareHostPaths creates DirectoryOrCreate / FileOrCreate host paths as
// the kubelet would before starting the container.
func prepareHostPaths(pod *corev1.Pod, nodeRoot string) error {
	for _, v := range pod.Spec.Volumes {
		if v.HostPath == nil || v.HostPath.Type == nil {
			continue
		}
		p := filepath.Join(nodeRoot, filepath.FromSlash(strings.TrimPrefix(v.HostPath.Path, "/")))
		switch *v.HostPath.Type {
		case corev1.HostPathDirectoryOrCreate:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("host path %s: %w", v.HostPath.Path, err)
			}
		case corev1.HostPathFileOrCreate:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("host path %s: %w", v.HostPath.Path, err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return fmt.Errorf("host path %s: %w", v.HostPath.Path, err)
			}
			f.Close()
		}
	}
	return nil
}

func (s *supervisor) syncManifests(ctx context.Context) {
	want, bad, err := DesiredProcs(s.lab.ManifestDir(s.node.Name), s.lab.NodeDir(s.node.Name))
	if err != nil {
		s.log.Error("reading static pod manifests", "err", err)
		return
	}
	for f, e := range bad {
		key := f + ":" + e.Error()
		if !s.badManifests[key] {
			s.badManifests[key] = true
			s.log.Error("ignoring static pod manifest", "file", f, "err", e)
		}
	}
	// Stop what went away or changed, in parallel as a kubelet kills pods.
	var wg sync.WaitGroup
	for _, n := range s.sortedProcNames() {
		p := s.procs[n]
		if w, ok := want[n]; !ok || w.Hash != p.spec.Hash {
			s.log.Info("static pod manifest changed or removed; stopping", "pod", n)
			wg.Go(p.stop)
			delete(s.procs, n)
		}
	}
	wg.Wait()
	start := make([]string, 0, len(want))
	for n := range want {
		if _, running := s.procs[n]; !running {
			start = append(start, n)
		}
	}
	sortComponents(start)
	for _, n := range start {
		s.procs[n] = startProc(ctx, s.exe, s.lab.LogFile(n), want[n], s.log)
	}
}

func (s *supervisor) writeStatus(kubelets *proc) {
	var st []ProcStatus
	for _, n := range s.sortedProcNames() {
		st = append(st, s.procs[n].status())
	}
	st = append(st, kubelets.status())
	names := make([]string, 0, len(s.sshds))
	for n := range s.sshds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st = append(st, s.sshds[n].status())
	}
	if err := layout.WriteJSON(ProcessesFile(s.lab), st); err != nil {
		s.log.Warn("writing process status", "err", err)
	}
}

// bootstrapLoop waits for the apiserver, then uploads the cluster objects
// and seeds the scenario, retrying until it succeeds or ctx ends.
func (s *supervisor) bootstrapLoop(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		err := bootstrap.Run(ctx, s.lab, s.cfg, s.log)
		if err == nil {
			_ = os.Remove(s.lab.SeedErrorFile())
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("bootstrap not done yet", "attempt", attempt, "err", err)
		_ = os.WriteFile(s.lab.SeedErrorFile(), []byte(err.Error()+"\n"), 0o644)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// ReadProcesses reads the supervisor's process records.
func ReadProcesses(l layout.Lab) ([]ProcStatus, error) {
	var st []ProcStatus
	if err := layout.ReadJSON(ProcessesFile(l), &st); err != nil {
		return nil, err
	}
	return st, nil
}

// SSHDProc is the process name of a node's sshd.
func SSHDProc(node string) string { return "sshd-" + node }

// prepareNodes gives every node what part 2 adds: the directories of the
// node shell's mounts, dpkg/apt state (the packages at the lab's version),
// a kubelet.conf, and the sshd, ssh_config, known_hosts and tfvars files.
// It changes nothing that exists, except the regenerated SSH configs.
func prepareNodes(lab layout.Lab, cfg layout.Config, exe string) error {
	if _, err := nodessh.Ensure(lab, cfg, exe, true); err != nil {
		return fmt.Errorf("node ssh set-up: %w", err)
	}
	for _, n := range cfg.Nodes {
		if err := nodeshell.PrepareNode(lab, n.Name); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		e := nodetools.Env{Root: lab.NodeDir(n.Name), Lab: lab, Node: n.Name}
		if err := nodetools.InitNode(e, cfg.InitialVersion); err != nil {
			return fmt.Errorf("node %s packages: %w", n.Name, err)
		}
		kc := lab.NodePath(n.Name, nodetools.KubeletConf)
		if _, err := os.Stat(kc); errors.Is(err, os.ErrNotExist) {
			b, err := os.ReadFile(lab.KubeletSimKubeconfig())
			if err != nil {
				return err
			}
			if err := layout.WriteFileAtomic(kc, b, 0o600); err != nil {
				return err
			}
		}
		if n.Role == layout.RoleControlPlane {
			// As kubeadm init tells the admin to do: mkdir -p $HOME/.kube; cp admin.conf.
			kube := lab.NodePath(n.Name, "/root/.kube/config")
			if _, err := os.Stat(kube); errors.Is(err, os.ErrNotExist) {
				if b, err := os.ReadFile(lab.NodePath(n.Name, nodetools.AdminConf)); err == nil {
					if err := layout.WriteFileAtomic(kube, b, 0o600); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// syncSSHDs runs one sshd per node, except where the sshd-down fault is
// set; an sshd whose config or host key changed is restarted.
func (s *supervisor) syncSSHDs(ctx context.Context) {
	if s.noSSHD != nil {
		return
	}
	for _, n := range s.cfg.Nodes {
		want := !s.lab.HasFault(n.Name, "sshd-down")
		hash := nodessh.Hash(s.lab, n.Name)
		p, running := s.sshds[n.Name]
		if running && (!want || p.spec.Hash != hash) {
			s.log.Info("stopping sshd", "node", n.Name, "fault", !want)
			p.stop()
			delete(s.sshds, n.Name)
			running = false
		}
		if want && !running {
			spec := procSpec{Name: SSHDProc(n.Name), Exe: nodessh.SSHD, Hash: hash,
				Args: []string{"-D", "-e", "-f", nodessh.SSHDConfigFile(s.lab, n.Name)}}
			s.sshds[n.Name] = startProc(ctx, s.exe, s.lab.LogFile(SSHDProc(n.Name)), spec, s.log)
		}
	}
}

func (s *supervisor) stopSSHDs() {
	var wg sync.WaitGroup
	for n, p := range s.sshds {
		wg.Go(p.stop)
		delete(s.sshds, n)
	}
	wg.Wait()
}

// SSHPortsLock is the machine-wide lock file of sshd port choices.
const SSHPortsLock = "/tmp/runbook-lab-ssh-ports.lock"

func lockSSHPorts() (func(), error) {
	f, err := os.OpenFile(SSHPortsLock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("ssh port lock: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("ssh port lock %s held by another lab for 60s", SSHPortsLock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// waitSSHDsListening waits (bounded) until every started sshd listens.
func (s *supervisor) waitSSHDsListening(timeout time.Duration) {
	ports, err := s.lab.ReadPorts()
	if err != nil {
		return
	}
	deadline := time.Now().Add(timeout)
	for _, n := range s.cfg.Nodes {
		if _, ok := s.sshds[n.Name]; !ok {
			continue
		}
		addr := net.JoinHostPort(n.IP, strconv.Itoa(ports.SSH[n.Name]))
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				s.log.Warn("sshd not listening yet", "node", n.Name, "addr", addr)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
