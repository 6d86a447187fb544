// Package nodetools are the simulated host tools of a lab node: apt-get,
// apt-mark, apt-cache, dpkg-query/dpkg, kubeadm, systemctl, etcdctl,
// etcdutl (and kubectl, which is the real one). They run inside a node (see
// package nodeshell), as symlinks to runbook-lab dispatched by argv[0], and
// work on the node's real paths: /var/lib/dpkg/status,
// /etc/apt/sources.list.d, /var/lib/apt/lists, /etc/kubernetes, and the
// kubelet state /run/kubelet.json. Flags, output formats, exit codes and
// error messages follow the real tools for what the seed procedures and
// runbook use.
package nodetools

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

// Env is where a tool runs: the node's root ("/" inside a node), the lab
// directory as seen from there, and the node's name.
type Env struct {
	Root   string
	Lab    layout.Lab
	Node   string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Now    func() time.Time
}

// FromEnviron reads RUNBOOK_LAB_DIR, RUNBOOK_LAB_NODE (set by the node
// shell) and RUNBOOK_LAB_ROOT (tests: a node directory used from outside).
func FromEnviron() (Env, error) {
	e := Env{Root: os.Getenv("RUNBOOK_LAB_ROOT"), Node: os.Getenv("RUNBOOK_LAB_NODE"),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Now: time.Now}
	if e.Root == "" {
		e.Root = "/"
	}
	dir := os.Getenv("RUNBOOK_LAB_DIR")
	if dir == "" || e.Node == "" {
		return e, fmt.Errorf("not on a lab node (RUNBOOK_LAB_DIR and RUNBOOK_LAB_NODE are unset): run it over ssh -F <lab>/ssh_config <node>")
	}
	e.Lab = layout.Lab{Dir: dir}
	return e, nil
}

// Path maps a node path to where it is from here.
func (e Env) Path(p string) string {
	return filepath.Join(e.Root, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// Fault tells whether a fault is set on this node.
func (e Env) Fault(name string) bool { return e.Lab.HasFault(e.Node, name) }

// Role returns the node's role from lab.json.
func (e Env) Role() string {
	cfg, err := e.Lab.ReadConfig()
	if err != nil {
		return ""
	}
	for _, n := range cfg.Nodes {
		if n.Name == e.Node {
			return n.Role
		}
	}
	return ""
}

// Tools dispatched by argv[0].
var tools = map[string]func(Env, []string) int{
	"apt-get":    AptGet,
	"apt-mark":   AptMark,
	"apt-cache":  AptCache,
	"dpkg-query": DpkgQuery,
	"dpkg":       Dpkg,
	"kubeadm":    Kubeadm,
	"systemctl":  Systemctl,
	"journalctl": Journalctl,
	"etcdctl":    Etcdctl,
	"etcdutl":    Etcdutl,
}

// IsTool tells whether name (argv[0]'s base name) is a node tool.
func IsTool(name string) bool { _, ok := tools[name]; return ok }

// Main runs the tool name with args in the environment of the process.
func Main(name string, args []string) int {
	e, err := FromEnviron()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return Run(e, name, args)
}

// Run runs a tool in e.
func Run(e Env, name string, args []string) int {
	if e.Now == nil {
		e.Now = time.Now
	}
	if name == "kubeadm" {
		if _, ok := installedVersion(e, "kubeadm"); !ok {
			fmt.Fprintln(e.Stderr, "bash: kubeadm: command not found")
			return 127
		}
	}
	return tools[name](e, args)
}
